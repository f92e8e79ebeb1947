#!/usr/bin/env bash
# Session 58, for a later call (any card; carry [".whl", ".device"]; about 300 s): each engine's tokenize threads
# (EngineConfig.tokenizer_threads, a tokenizer process each) 4 against the default 2, bench/e2e_ab.py over --parts
# packed,engine (64 and 1,024 streams), a small warm-up run, then A / B / B / A.
# Why: at 64 streams the engine is a closed loop (window 4), and session 54's H100 runs (call1_gc_ab a1, read again
# in session 58) had a chunk's round trip at 20.3 ms p50, of which accepted -> queued (the tokenize stage) 10.0 ms,
# while each loop sat idle 6.8 of its 16.4 ms a step; a step held 9.3 k tokens of 4.5 streams, so each stream's
# whole window comes back as one burst of about 18 chunks an engine, which split_bursts cuts in two (two threads); at
# the tokenizer processes' 1.10 us a token there that is about 10 ms of CPU, some 5 ms a half (an estimate). Four threads would cut it in quarters. This
# tree's engine_item_ms now gives stage_wait and cutting apart (session 58), and the ack legs engine_cutting and
# engine_cut: read them in both arms before reading the throughput.
# Predicted: engine at 64 streams +10-20% (the tokenize leg from about 10 to about 7 ms, if the host has cores free
# during a burst: 11.1-11.6 of 16 were busy on average there in session 54's four runs, host_cores_busy); engine at 1,024 streams within 5% (its calls are large
# already, and 36 tokenizer processes contend for the same cores). cutting p50 about halves in B.
# Rule: a GPU engine's default tokenizer_threads becomes 4 if engine 64 reads higher in both pairs and engine 1,024
# is not more than 5% lower in both; otherwise it stays 2, and the stage_wait / cutting split says where the 10 ms go.
set -u
source bench/device_env.sh
python3 bench/e2e_ab.py --pairs 2 --timeout 110 --warmup-timeout 90 --b "--tokenizer-threads 4" \
  --warmup "--parts engine --streams 64 --tokens 3000000" --out $OUT -- \
  --text .device/text/man.txt.gz --packed-seconds 0.3 --parts packed,engine --engine-procs auto
(cd $OUT && tar czf all.tgz warm a1 b1 b2 a2 && rm -rf warm a1 b1 b2 a2)
