#!/usr/bin/env bash
# Session 49, call 1: session 48's call2.sh (its header has the predictions) at N64 x L512 only and with 75 s for
# the GPU test, to fit what device time is left after failed starts (about 450 s with the machine's start).
SHAPES=N64xL512 TEST_S=75 bash bench/results/2026-12-07-s48/call2.sh
