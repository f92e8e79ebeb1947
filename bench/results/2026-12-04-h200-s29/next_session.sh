#!/usr/bin/env bash
# For session 30's first call (issue 14), written in session 29 (no machine was lent that session): split bursts.
# At 64 streams a chunk's round trip is ~20 ms p50, of which the tokenize leg is 12 ms (session 28, call 6): the
# streams of an engine move in one wave (a step applies the 4-chunk window of ~4.7 streams, their acks come back
# together, and the ~37 KB of next chunks arrive as one burst, which one tokenize thread cuts whole while the other
# idles: what it would leave is under the 32 KiB join). EngineConfig.tokenize_split_bursts (landed off in session
# 28; in session 29 made to share a burst among every idle thread, and every batch made to take all the waiting
# chunks of each stream it takes) cuts the burst on the idle threads at once and delivers the parts together. On
# the workplace VM, bench/tokenize_join_loop.py with --tok-wait sleep (the stage's threads waiting for tokenizer
# processes, which hold no GIL; 0.25 us a byte; 6 streams of an engine; three runs, bench/results/
# 2026-12-04-vm-s29/tokenize_join_loop/): default 2.42-2.52 MB/s, round trip 19 ms; split 3.6-4.0 MB/s, 12-13 ms;
# split on 4 threads 4.8-5.0 MB/s, 9.3-9.8 ms (that model has cores to spare; the H200 host had 9.6-9.8 of 16 busy at
# 64 streams and 10.9-11.1 at 1,024 in session 28's call 6). Engine parts at 1e8 tokens: default / split / split with 4 tokenize threads
# (4 tokenizer processes an engine), alternated twice, then the engine's GPU tests. Predicted: split 64 streams
# +15-40%, 1,024 streams 0 to +10%; 4 threads split 64 streams +25-60% over the default, 1,024 streams -10 to +15%
# (a busier host, four processes' word caches to fill). Rule: make split_bursts the default if it reads >= 8% more
# at 64 streams in both pairs and not 5% less at 1,024 in either; tokenizer_threads 4 on a GPU only if it reads
# >= 8% more than split on 2 threads at 64 streams in both pairs and not 5% less at 1,024 in either.
set -u
source bench/device_env.sh
export TRITON_CACHE_DIR=$PWD/.tcache
T0=$SECONDS
RUNS="d1 s1 f1 d2 s2 f2"
for r in $RUNS; do d=$OUT/$r; mkdir -p $d; t0=$SECONDS
  pk=; [ $r = d1 ] && pk=packed,  # the packed reference once a call: the A/B reads tokens/s
  case ${r:0:1} in
    d) flags="--no-tokenize-split-bursts";;
    s) flags="--tokenize-split-bursts";;
    f) flags="--tokenize-split-bursts --tokenizer-threads 4";;
  esac
  PYTHONPATH=$PWD:$PYTHONPATH timeout -s KILL 110 python3 bench/e2e.py --text .device/text/man.txt.gz --packed-seconds 0.3 --parts ${pk}engine --engine-procs auto --tokens 1e8 $flags --out $d > $d/log.txt 2>&1
  echo "$r rc $? $((SECONDS-t0)) s"; grep -A12 "FAILED\|Traceback" $d/log.txt | head -12
done
PYTHONPATH=$PWD:$PYTHONPATH timeout -s KILL 150 python3 -m pytest -q -p no:cacheprovider tests/test_engine_gpu.py tests/test_graph_buckets.py 2>&1 | tail -3
PYTHONPATH=$PWD:$PYTHONPATH python3 bench/e2e_brief.py $(for r in $RUNS; do echo $OUT/$r; done)
tar czf $OUT/all.tgz -C $OUT $RUNS && (cd $OUT && rm -rf $RUNS)
echo "total $((SECONDS-T0)) s"
