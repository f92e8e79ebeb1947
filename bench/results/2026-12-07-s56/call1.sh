#!/usr/bin/env bash
# Session 56, call 1 (no kind named; carry [".whl", ".device/text", ".device/old", ".device/ab_base"]; about 480 s).
# 1. Session 55's call_split.sh: the A/B of WorkItem.split_after against the commit before it (its header has the
#    prediction and the rule), into $OUT/split.
# 2. Where time is left (started before 280 s): three tokenize threads (each with its tokenizer process) an engine
#    against the default two, engine parts only: bench/e2e_ab.py, two pairs, into $OUT/threads.
#    Why: at 64 streams the engine is a closed loop bound by a chunk's round trip (session 54, H100: 20-21 ms p50,
#    of which 10 ms is the tokenize leg, 28% of the loop idle, 11.5 of 16 cores busy); a third process an engine
#    cuts a burst's share each. Session 23 read three threads slower, but those were threads in the engine process
#    (before tokenize_procs), sharing its GIL.
#    Predicted: engine at 64 streams +5-15% (tokenize leg p50 10 -> 7-8 ms); at 1,024 streams -5% to +3% (the
#    host's cores are busy there: more processes contend).
#    Rule: not a default change by itself (the service and the batch job would need reading too); a next call does
#    that if engine 64 reads higher in both pairs and engine 1,024 not lower than 3% in both.
set -u
T0=$SECONDS
nvidia-smi --query-gpu=name --format=csv,noheader
OUT0=$OUT
mkdir -p $OUT0/split && OUT=$OUT0/split bash bench/results/2026-12-07-s55/call_split.sh
echo "split A/B done at $((SECONDS-T0)) s"
if [ $((SECONDS-T0)) -lt 280 ]; then
  source bench/device_env.sh > /dev/null
  mkdir -p $OUT0/threads
  python3 bench/e2e_ab.py --pairs 2 --timeout 75 --b "--tokenizer-threads 3" --out $OUT0/threads -- \
    --text .device/text/man.txt.gz --packed-seconds 0.3 --parts packed,engine --engine-procs auto
  (cd $OUT0/threads && tar czf all.tgz a1 b1 b2 a2 && rm -rf a1 b1 b2 a2)
fi
echo "total $((SECONDS-T0)) s"
