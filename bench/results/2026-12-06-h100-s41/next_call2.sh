#!/usr/bin/env bash
# Written in session 41 for the next session, on an H200 (about 420 s): the service at saturation and half load with
# 9 engine processes against `auto` (12 on an H200), alternated twice. Why: on an H100 (session 41, 16 cores, auto 9)
# 12 engines ran the service at saturation 10% below 9 (3.96 against 4.39 M tokens/s, one pair) with 11.8 streams a
# step against 46 (their queues nearly empty: queued-to-applied p50 21 ms against 181; the tokenize leg p99 187 ms
# against 127), the engine processes' CPU a token 1.56 against 1.23 us, while the engine part at 1,024 streams read
# 10% more with 12; 8 engines ran it 11-13% below 9 (two pairs). The H200's service with 12 ran 13-15 streams a
# step (session 40). Predicted on an H200: the service at saturation with 9 engines +5 to +20% over 12, its steps
# 40-60 streams; the engine at 1,024 streams 5-20% lower with 9. Rule: a service default of 9 engine processes on
# a 16-core host (the engine and batch parts keep auto) only if the service gains >= 10% at saturation in both
# pairs and the half-load ack p99 is no worse by more than 10 ms in either.
# (session 40's next_call1.sh, which ran as session 41's call 1 with 8, given 9: its output is next_call1.tgz)
bash bench/results/2026-12-06-h200-s40/next_call1.sh 9
