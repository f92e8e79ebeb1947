#!/usr/bin/env bash
# old (4b5b8ba, /tmp/old_tree) against new (working tree): the step loop's booking with the model call replaced
for args in "--streams 5 --chunk 8192 --rounds 60" "--streams 85 --chunk 2048 --rounds 30" "--streams 2 --chunk 65536 --rounds 12"; do
  for tree in old new old new; do
    root=/work/main; [ $tree = old ] && root=/tmp/old_tree
    line=$(cd $root && timeout 600 python bench/engine_host.py --model default --man-text --no-model $args 2>&1 | grep -E "loop's own clocks|step-loop thread CPU per step")
    echo "$tree $args :: $(echo "$line" | sed -n 1p | sed 's/.*best of 1: //') :: $(echo "$line" | sed -n 2p | grep -o 'book_spans [0-9.]*.*book_segments [0-9.]*')"
  done
done
