#!/usr/bin/env bash
# Session 29: run as call 2 (session 28's next_session_call3.sh, with the GPU tests of the engine appended).
# For session 29 (issue 14), written at the end of session 28 (not run yet): EngineConfig.tokenize_split_bursts
# (landed off in session 28, unmeasured on a GPU). At 64 streams a step's acks come back together and the four
# chunks of each of its ~4.7 streams (~37 KB) arrive as a burst: one tokenize thread takes it all (what it would
# leave is under the 32 KiB join threshold), ~9 ms of a tokenizer process, while the other thread idles; a chunk's
# tokenize leg is p50 10-12 ms of a ~20 ms round trip (session 28, calls 1-6). With split_bursts the idle thread
# takes half at once and the two halves are delivered together (one step). Engine parts at 1e8 tokens, off / on,
# alternated twice. Predicted with it on: 64 streams tokenize leg p50 -30 to -45%, tokens/s +10-25%, streams a
# step within 10% of off's; 1,024 streams within the spread. If on reads >= 8% more at 64 streams in both pairs
# and not less at 1,024, make it the default and run the half load (service parts) against it.
set -u
source bench/device_env.sh
export TRITON_CACHE_DIR=$PWD/.tcache
T0=$SECONDS
RUNS="off1 on1 off2 on2"
for r in $RUNS; do d=$OUT/$r; mkdir -p $d; t0=$SECONDS
  flag=--no-tokenize-split-bursts; [ ${r%?} = on ] && flag=--tokenize-split-bursts
  PYTHONPATH=$PWD:$PYTHONPATH timeout -s KILL 110 python3 bench/e2e.py --text .device/text/man.txt.gz --packed-seconds 0.3 --parts packed,engine --engine-procs auto --tokens 1e8 $flag --out $d > $d/log.txt 2>&1
  echo "$r rc $? $((SECONDS-t0)) s"; grep -A12 "FAILED\|Traceback" $d/log.txt | head -12
done
PYTHONPATH=$PWD:$PYTHONPATH python3 bench/e2e_brief.py $(for r in $RUNS; do echo $OUT/$r; done)
tar czf $OUT/all.tgz -C $OUT $RUNS && (cd $OUT && rm -rf $RUNS)
echo "total $((SECONDS-T0)) s"
# session 29: the GPU tests of the engine (the 32,768-token default's test among them) and of the graph buckets
PYTHONPATH=$PWD:$PYTHONPATH timeout -s KILL 150 python3 -m pytest -q -p no:cacheprovider tests/test_engine_gpu.py tests/test_graph_buckets.py 2>&1 | tail -5
