#!/usr/bin/env bash
# Session 56, for a later call (any card; carry [".whl", ".device/text", ".device/old"]; about 260 s): a GPU step's
# budget of 65,536 tokens against the default 32,768, bench/e2e_ab.py over --parts packed,engine,batch, a small
# warm-up run, then A / B / B / A. Run it after call1.sh's split A/B has been read (with split_after a step fills
# towards its budget; without it session 54's steps held 23 k of 32.8 k, and a larger budget would mostly go unused).
# Why: a step's host work has a fixed part (launch 2.3, gather 1.2 and part of schedule's 1.9 of the step thread's
# 13.9 ms of CPU a step at 1,024 streams on the H100, session 54), and the engine there is host-bound (each loop's step
# took 25-29 ms: 16.3-17.1 ms of host work, 5.6-5.7 ms waiting for the model); session 28 read 16,384 -> 32,768 as +23-30% at 1,024 streams on the
# H200. At 1,024 streams an engine process holds about 243 k tokens in flight (1,024 x 4 chunks of about 533 tokens
# over 9 engines), enough for steps of 65 k.
# Predicted: engine at 1,024 streams +8-20%; batch long +5-15%; engine at 64 streams (steps of about 9 k tokens) and
# batch short within 5%. The packed forward's shape follows the budget (B x T = the step's tokens), so compare
# tokens/s, not the "x packed" column.
# Rule: a GPU's default budget (EngineConfig default_step_tokens) becomes 65,536 if engine 1,024 and batch long read
# higher in both pairs and no part more than 5% lower in both; then the service's half-load latency is read before
# it lands (a larger step may hold a chunk longer at half load).
set -u
source bench/device_env.sh
python3 bench/e2e_ab.py --pairs 2 --timeout 110 --warmup-timeout 90 --b "--step-tokens 65536" \
  --warmup "--parts batch --long-docs 4 --short-docs 500" --out $OUT -- \
  --text .device/text/man.txt.gz --packed-seconds 0.3 --parts packed,engine,batch --engine-procs auto \
  --short-docs 8000
(cd $OUT && tar czf all.tgz warm a1 b1 b2 a2 && rm -rf warm a1 b1 b2 a2)
