#!/usr/bin/env bash
# Session 32 (workplace VM, 2 cores, no GPU lent): bench/tokenize_join_loop.py with a step's device time and
# --step-chunks (a stream's chunks a step at most), at 6 streams (64 over 12 engine processes) and 85 (1,024),
# slow-host figures (tokenizer 0.22 us a byte = 0.86 us a token, session 31's H200 host) and fast-host ones (0.1
# us a byte, session 30's), alternated. Prediction written before: cap 2 higher MB/s at 6 streams, none at 85.
set -u
OUT=${OUT:-bench/results/2026-12-05-cpu-s32/draining_loop}
COMMON="--tok-wait sleep --step-ms 1.4 --step-us-per-byte 0.062 --device-ms 1.0 --device-us-per-byte 0.1 --configs 2:32:split --seconds 4"
for rep in 1 2; do
  for host in slow fast; do
    tok=0.22; [ $host = fast ] && tok=0.1
    for sc in 0 2 1; do
      python bench/tokenize_join_loop.py --streams 6 --tok-us-per-byte $tok --step-chunks $sc $COMMON --out $OUT/$host-6-c$sc-$rep | grep "^streams" | sed "s/^/$host c$sc rep$rep: /"
    done
  done
  for sc in 0 2; do
    python bench/tokenize_join_loop.py --streams 85 --tok-us-per-byte 0.22 --step-chunks $sc $COMMON --out $OUT/slow-85-c$sc-$rep | grep "^streams" | sed "s/^/slow c$sc rep$rep: /"
  done
done
