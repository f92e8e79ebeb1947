#!/usr/bin/env bash
# Session 57 (workplace VM): bench/keep_segments.py (69 streams with 64 kept segments, 11 new each a step) on this tree
# (A) and on it with flat_index.patch (B, one flat index for the pool's arrays), alternated, four pairs; run from the
# repository root with .device/text/man.txt.gz in place.
set -eu
T=$(mktemp -d)
mkdir -p $T/a $T/b
for x in a b; do
  git archive HEAD streamret bench/keep_segments.py bench/text_path.py | tar x -C $T/$x
  mkdir -p $T/$x/.device && ln -s "$PWD/.device/text" $T/$x/.device/text
done
(cd $T/b && patch -s -p1 < "$OLDPWD/bench/results/2026-12-07-s57/flat_index.patch")
for i in 1 2 3 4; do
  for x in a b; do echo -n "$x: "; python3 $T/$x/bench/keep_segments.py --streams 69 --new 11 --steps 20 --repeats 10; done
done
rm -rf $T
