#!/usr/bin/env bash
# Written in session 52 for a later session (any card; carry [".whl", ".device/text", ".device/old"]; about 430 s).
# The gRPC server's GC threshold alone: bench/e2e.py's whole list with --server-gc-gen0 700 (Python's default, the
# server and front processes only; the engine processes keep 20,000) against the default 20,000 everywhere, two
# alternating pairs after a warm-up run (bench/e2e_ab.py).
# Why: session 52's call 4 read the server's longest GC pause at 14-24 ms with 20,000 against 9-14 with 700, and the
# half-load ack p99 at 50.4-51.2 ms against 48.6-52.5 (target 50), while the server's GC total at saturation fell
# from 157-163 ms to 39-40.
# Predicted: half-load p99 with 700 lower by 0-5 ms; saturation tokens/s within 5%. Rule: the server goes back to 700
# (a serving-process default of its own) if 700 reads the lower half-load p99 in both pairs and saturation tokens/s
# no more than 3% lower in both.
set -u
source bench/device_env.sh
python3 bench/e2e_ab.py --pairs 2 --timeout 150 --warmup "--parts packed,batch --packed-seconds 0.3" \
  --b "--server-gc-gen0 700" --out $OUT -- --text .device/text/man.txt.gz --packed-seconds 1 --engine-procs auto \
  --front-procs 6 --short-docs 8000
for r in a1 b1 b2 a2; do python3 -c "import json,sys; p=json.load(open(sys.argv[1]))['parts']; print(sys.argv[2], [(k, p[k].get('server_gc_pause_ms'), p[k].get('server_gc_pause_max_ms'), p[k].get('ack_p99_ms')) for k in ('service_saturate', 'service_half')])" $OUT/$r/e2e.json $r; done
(cd $OUT && tar czf all.tgz warm a1 b1 b2 a2 && rm -rf warm a1 b1 b2 a2)
