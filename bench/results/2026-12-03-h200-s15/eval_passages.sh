source bench/device_env.sh
python3 bench/quality.py student --data .quality/heldout --teacher-out .device/qT --model .device/x_passages --device cuda --no-engine --out-dir $OUT/S_x_passages 2> $OUT/S_err.log | tail -14
