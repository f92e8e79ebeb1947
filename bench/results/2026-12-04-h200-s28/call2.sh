#!/usr/bin/env bash
# For session 28's second call (issue 14), written at the end of session 27 (not run yet): the tokenize join
# against cheaper tokenizing. Session 26 made tokenize_join_bytes 32 KiB the default when a tokenizer process
# took ~1.2-1.4 us a token in the engine parts; session 27 halved a tokenizer process's warm work a token
# (tokenize_cost, call 5), so a batch cuts in about half the time and gathering behind a busy thread may now
# cost more round-trip time than the wider steps save. At 64 streams the engine waits for work 12-20 ms a step
# (window 4: a latency-bound loop) and a chunk's tokenize leg was p50 11-19 ms (sessions 26-27). Engine parts
# at 1e8 tokens, join 32 KiB (default), 8 KiB and 0, alternated twice. Predicted: 1,024 streams within the
# spread at all three; 64 streams: join 0 fewer streams a step (2-3 against 4.6-5) and within -15..+10% of
# 32 KiB; 8 KiB between them. If 8 KiB or 0 reads >= 10% more at 64 streams in both pairs, change the default.
set -u
source bench/device_env.sh
export TRITON_CACHE_DIR=$PWD/.tcache
T0=$SECONDS
RUNS="j32a j8a j0a j32b j8b j0b"
run(){ name=$1; shift; d=$OUT/$name; mkdir -p $d; t0=$SECONDS
  PYTHONPATH=$PWD:$PYTHONPATH timeout -s KILL 90 python3 bench/e2e.py --text .device/text/man.txt.gz --packed-seconds 0.3 --parts packed,engine --engine-procs auto --tokens 1e8 "$@" --out $d > $d/log.txt 2>&1
  echo "$name rc $? $((SECONDS-t0)) s"; grep -A12 "FAILED\|Traceback" $d/log.txt | head -12; }
run j32a
run j8a --tokenize-join-kb 8
run j0a --tokenize-join-kb 0
run j32b
run j8b --tokenize-join-kb 8
run j0b --tokenize-join-kb 0
PYTHONPATH=$PWD:$PYTHONPATH python3 bench/e2e_brief.py $(for r in $RUNS; do echo $OUT/$r; done)
tar czf $OUT/all.tgz -C $OUT $RUNS && (cd $OUT && rm -rf $RUNS)
echo "total $((SECONDS-T0)) s"
