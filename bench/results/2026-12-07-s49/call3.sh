#!/usr/bin/env bash
# Session 49, call 3 (for a start with about 250 s of device time left): call2.sh with one run a form, keys first
# (its first check against float64 at the real shape, and its first timing), then scores, 75 s a run.
FORMS="keys scores" LIMIT=75 bash bench/results/2026-12-07-s49/call2.sh
