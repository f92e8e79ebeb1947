#!/usr/bin/env bash
# Session 26 call 4 (issue 14), on this tree: (1) engine processes import the batch runner without pyarrow,
# at their start (batch_long's engine-process Python threads read 0.84-0.88 us a token at the default sizes and
# 0.17-0.26 at four times the documents: a fixed ~5.5 CPU-s a part, pyarrow's import in each of 12 engines);
# (2) the word cache gathers ids with numpy (encode on warm text 0.19 -> 0.12-0.14 us a token on the workplace
# VM). Runs: tokenize_cost (1 and 16 copies), then the whole list twice at the default sizes and once at four
# times the documents. Predicted: tokenize_cost "again" 0.60 -> 0.50-0.55 (1 copy), 0.79 -> 0.65-0.72 (16)
# (session 24 call 4); batch_long's engine Python threads < 0.1 us a token, batch_long at the default sizes
# 0.29 -> 0.33-0.40 of packed; the engine processes' tokenize_procs us a token -0.1 to -0.2; engine parts
# +0-10% (within the spread); large documents batch long 0.46-0.50 -> 0.48-0.55.
set -u
source bench/device_env.sh
export TRITON_CACHE_DIR=$PWD/.tcache
T0=$SECONDS
mkdir -p $OUT/tc
PYTHONPATH=$PWD:$PYTHONPATH timeout -s KILL 90 python3 bench/tokenize_cost.py --text .device/text/man.txt.gz --copies 1,16 --mb 0.5 --out $OUT/tc > $OUT/tc/log.txt 2>&1
echo "tokenize_cost rc $? $((SECONDS-T0)) s"; tail -6 $OUT/tc/log.txt
RUNS="fulla fullb large"
for r in $RUNS; do d=$OUT/$r; mkdir -p $d; t0=$SECONDS
  extra="--short-docs 8000"; [ $r = large ] && extra="--long-docs 128 --short-docs 32000"
  PYTHONPATH=$PWD:$PYTHONPATH timeout -s KILL 190 python3 bench/e2e.py --text .device/text/man.txt.gz --packed-seconds 1 --engine-procs auto --front-procs 6 $extra --out $d > $d/log.txt 2>&1
  echo "$r rc $? $((SECONDS-t0)) s"; sed -n '/^part /,/^$/p' $d/log.txt | cut -c1-200; grep -B2 -A12 "FAILED\|Traceback" $d/log.txt | head -20
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
            print(f"{name:6s} {k:16s} {p['tokens_per_s'] / 1e6:5.2f} M  engine-process us/token: python {t.get('python')} "
                  f"step {t.get('step')} tokenize_procs {t.get('tokenize_procs')}  secs {p.get('seconds')}")
PY
tar czf $OUT/all.tgz -C $OUT tc $RUNS && (cd $OUT && rm -rf tc $RUNS)
echo "total $((SECONDS-T0)) s"
