#!/usr/bin/env bash
# Written in session 52 for a later session (any card; carry [".whl", ".device/text", ".device/old"]).
# The gRPC server's GC threshold alone: bench/e2e.py's whole list with --server-gc-gen0 700 (Python's default, the
# server and front processes only; the engine processes keep 20,000) against the default 20,000 everywhere, after a
# warm-up run (a fresh machine's first e2e run reads cold), alternated 700 / default / default / 700.
# Why: session 52's call 4 read the server's longest GC pause at 14-24 ms with 20,000 against 9-14 with 700, and the
# half-load ack p99 at 50.4-51.2 ms against 48.6-52.5 (target 50), while the server's GC total at saturation fell
# from 157-163 ms to 39-40.
# Predicted: half-load p99 with 700 lower by 0-5 ms; saturation tokens/s within 5%. Rule: the server goes back to 700
# (a serving-process default of its own) if 700 reads the lower half-load p99 in both pairs and saturation tokens/s
# no more than 3% lower in both.
set -u
source bench/device_env.sh
T0=$SECONDS; RUNS=""
for r in warm gc700a default1 default2 gc700b; do d=$OUT/$r; mkdir -p $d; t0=$SECONDS
  extra=""; [ ${r:0:5} = gc700 ] && extra="--server-gc-gen0 700"
  if [ $r = warm ]; then parts="--parts packed,batch --packed-seconds 0.3"; lim=90; else parts="--packed-seconds 1 --front-procs 6"; lim=150; fi
  timeout -s KILL $lim python3 bench/e2e.py --text .device/text/man.txt.gz --engine-procs auto --short-docs 8000 \
    $parts $extra --out $d > $d/log.txt 2>&1
  echo "$r rc $? $((SECONDS-t0)) s"; grep -A12 "Traceback" $d/log.txt | head -12
  RUNS="$RUNS $r"
done
python3 bench/e2e_brief.py $(for r in $RUNS; do [ $r = warm ] || echo $OUT/$r; done)
for r in $RUNS; do [ $r = warm ] || python3 -c "import json,sys; p=json.load(open(sys.argv[1]))['parts']; print(sys.argv[2], [(k, p[k].get('server_gc_pause_ms'), p[k].get('server_gc_pause_max_ms'), p[k].get('ack_p99_ms')) for k in ('service_saturate', 'service_half')])" $OUT/$r/e2e.json $r; done
tar czf $OUT/all.tgz -C $OUT $RUNS && (cd $OUT && rm -rf $RUNS)
echo "total $((SECONDS-T0)) s"
