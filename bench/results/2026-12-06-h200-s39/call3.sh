#!/usr/bin/env bash
# Session 39, third call (as run, on the machine call 2 left warm): session 37's next_call3.sh as written (the
# step_fill A/Bs, "padding" and "budget" against "off"; predictions and rules in its header).
bash bench/results/2026-12-05-h200-s37/next_call3.sh
