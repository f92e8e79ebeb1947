#!/usr/bin/env bash
# Session 26 call 5 (issue 14), on this tree: a short document's per-document work in its engine process is
# lighter (its summary from the tracker's kept arrays, no word counts again, only the k picked Segments made;
# a new stream's state zeroed in one foreach launch instead of five). The packed reference and the batch parts
# at the default sizes, twice. Predicted: batch_short's engine-process Python threads 0.76-0.86 -> 0.55-0.65 us a
# token (call 4), batch_short 0.30-0.31 -> 0.32-0.36 of packed; batch_long as in call 4 (0.47-0.56).
set -u
source bench/device_env.sh
export TRITON_CACHE_DIR=$PWD/.tcache
T0=$SECONDS
RUNS="a b"
for r in $RUNS; do d=$OUT/$r; mkdir -p $d; t0=$SECONDS
  PYTHONPATH=$PWD:$PYTHONPATH timeout -s KILL 100 python3 bench/e2e.py --text .device/text/man.txt.gz --packed-seconds 0.3 --parts packed,batch --engine-procs auto --short-docs 8000 --out $d > $d/log.txt 2>&1
  echo "$r rc $? $((SECONDS-t0)) s"; sed -n '/^part /,/^$/p' $d/log.txt | cut -c1-150; grep -A12 "FAILED\|Traceback" $d/log.txt | head -12
done
python3 - $OUT $RUNS <<'PY'
import json, sys
for name in sys.argv[2:]:
    try:
        d = json.load(open(f"{sys.argv[1]}/{name}/e2e.json"))
    except OSError:
        continue
    for k, p in d["parts"].items():
        if isinstance(p, dict) and "engine_cpu_us_per_token_by_thread" in p:
            t = p["engine_cpu_us_per_token_by_thread"]
            print(f"{name:3s} {k:12s} {p['tokens_per_s'] / 1e6:5.2f} M  engine-process us/token: python {t.get('python')} "
                  f"step {t.get('step')} tokenize_procs {t.get('tokenize_procs')}  idle ms/step "
                  f"{p['loop_parts_ms_per_step']['idle']}  secs {p.get('seconds'):.2f}")
PY
tar czf $OUT/all.tgz -C $OUT $RUNS && (cd $OUT && rm -rf $RUNS)
echo "total $((SECONDS-T0)) s"
