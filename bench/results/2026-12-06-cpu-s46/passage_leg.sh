#!/usr/bin/env bash
# Session 46 (issue 18): session 45's passage leg (bench/results/2026-12-06-h100-s45/passage_leg.sh: the passage
# InfoNCE at weight PNCE from the shipped mean, then the new weights' document map fitted on the GPU and both roles
# evaluated) with the query lengths now drawn log-uniform over 8..64 (data.draw_query_len; uniform before). After
# stage_tf3_two_calls.sh 1 and 2 on the same warm machine; carry [".quality/heldout", ".device/qT"], timeout 600.
# Why: on the validation sources the shipped student finds more passages than the teacher from 8-12-token queries
# (209 against 203 of 428) and fewer from 13-39 (758 against 834 of 1,317): val_query_lengths.txt here; a uniform
# draw spent 44% of its steps on queries of 40-64 tokens, where 13% of the validation queries are.
# Predicted (MINUTES 7.0: ~1,300 steps if a step takes ~0.3 s; tok_per_s near session 44's control, ~600 k): held-out
# passage recall@10 0.583 -> 0.595-0.610 (session 45's 42 uniform steps: 0.593), passage cosine 0.890-0.898, plain
# document 0.875-0.885, document role with its own map 0.905-0.915 (8-32k 0.885-0.895); validation passages (CPU,
# afterwards) 0.5645 -> 0.575-0.590.
set -u
export MINUTES=${MINUTES:-7.0} PNCE=${PNCE:-0.05}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
exec bash bench/device_legs.sh passage
