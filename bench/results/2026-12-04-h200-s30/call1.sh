#!/usr/bin/env bash
# Session 30 call1, as it ran (machine: one H200 host, calls 1-4 on one machine start): the script written before it.
exec bash bench/results/2026-12-04-h200-s29/next_session.sh
