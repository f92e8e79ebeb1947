#!/usr/bin/env bash
# Session 39, fourth call (as run, on the machine call 3 left warm): session 38's next_call4.sh twice more, for the
# spread of the whole list on this host (call2.sh ran it once).
bash bench/results/2026-12-05-h200-s38/next_call4.sh; mv $OUT/all.tgz $OUT/whole_run2.tgz
bash bench/results/2026-12-05-h200-s38/next_call4.sh; mv $OUT/all.tgz $OUT/whole_run3.tgz
