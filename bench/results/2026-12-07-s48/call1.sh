#!/usr/bin/env bash
# Session 48, call 1 (asked for an H200): issue 13's kernel lines with the bf16 split off (session 42's default),
# never read on an H200: bench/kernels.py at the streaming shapes of the three layouts, fla beside ours.
# Predicted on an H200 (session 40: K64 / K128 N256 x L128 ours 0.250 / 0.345 ms, 1.70x / 1.76x; the split off
# read -7.4% / -3.6% on the H100): ours 0.228-0.240 / 0.327-0.340 ms, and with fla as in session 40 (0.425 /
# 0.606) 1.77-1.86x / 1.78-1.85x; K256 N64 x L512 0.89-0.93 ms, 34-36% of its floor (still a miss).
# Also returns our kernels' Triton cache (tcache.tgz) for the session's later calls.
set -u
T0=$SECONDS
source bench/device_env.sh
mkdir -p $OUT/model
timeout -s KILL 480 python3 bench/model.py --out $OUT/model --sections kernels \
  --kernel-args "--layouts H8K256V512 H8K128V256 H16K64V128 --shapes N64xL512 N256xL128" \
  > $OUT/model/log.txt 2>&1
echo "model.py rc $? $((SECONDS-T0)) s"
OURS='^(_block_outputs|_chunk_fwd_kernel|_dot_f32_left|_gated_norm_kernel|_pool_runs_kernel|_recurrent_step_kernel|_rms_norm_kernel|_rotary_kernel|_segment_scan_kernel|_segment_sum_kernel|_span_outputs_kernel|_span_states_kernel|_swiglu_kernel|_attn)'
(cd .tcache && for d in */; do ls "$d" | grep -qE "$OURS" && echo "$d"; done) > /tmp/ours.txt
tar czf $OUT/tcache.tgz -C . $(sed 's|^|.tcache/|' /tmp/ours.txt) 2>/dev/null; ls -la $OUT/tcache.tgz
grep -A14 "^case" $OUT/model/log.txt | cut -c1-150 | head -16
