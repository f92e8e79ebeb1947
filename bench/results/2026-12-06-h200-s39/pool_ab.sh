#!/usr/bin/env bash
# Session 39: pool_runs (a step's runs pooled in two launches, then the head and norm: about 17 torch calls on the
# step thread where `ModelRunner._pool` made about 37, by reading the code) against the tree before it (d8e14dd, carried as
# .device/old/base_d8e14dd.tgz without streamret/assets, which it takes from this tree). bench/runner_parts.py on
# both trees, alternated twice, two step shapes (median of 30; alone, then with 3 pure-Python spinners at a 0.1 ms
# switch interval, as sessions 13's calls 4-5 timed the runner's GIL handoffs). Correctness: the GPU tests of
# pool_runs and the runner's steps (call1.sh) come first.
# Predicted: pool_ms 0.30-0.40 -> 0.12-0.22 ms; the runner alone -0.1 to -0.2 ms; with spinners at 0.1 ms about 20
# handoffs fewer of about 100, -10 to -20%. Rule: keep pool_runs if the spinners' figure is lower in both pairs at
# both shapes and the runner alone not higher beyond 5%.
set -u
T0=$SECONDS
[ -f .device/old/tcache.tgz ] && [ ! -d .tcache ] && tar xzf .device/old/tcache.tgz
source bench/device_env.sh
export TRITON_CACHE_DIR=$PWD/.tcache
B=/tmp/base_s39; rm -rf $B; mkdir -p $B /tmp/srpath_base && tar xzf .device/old/base_d8e14dd.tgz -C $B
ln -sfn $PWD/streamret/assets $B/streamret/assets && ln -sfn $B/kernels /tmp/srpath_base/streamret_kernels
for pair in 1 2; do
  for shape in "51 226 9" "3 1300 4"; do
    set -- $shape
    for tree in base new; do
      d=$OUT/runner/${tree}_${1}_p$pair; mkdir -p $d
      if [ $tree = base ]; then
        (cd $B && PYTHONPATH=$B:/tmp/srpath_base:/tmp/site timeout -s KILL 60 python3 bench/runner_parts.py \
          --streams $1 --tokens $2 --runs $3 --reps 30 --intervals 1e-4 --out $d > $d/log.txt 2>&1)
      else
        timeout -s KILL 60 python3 bench/runner_parts.py --streams $1 --tokens $2 --runs $3 --reps 30 \
          --intervals 1e-4 --out $d > $d/log.txt 2>&1
      fi
      echo "$tree $shape pair $pair rc $? $((SECONDS-T0)) s"
    done
  done
done
python3 - $OUT/runner <<'PY'
import json, pathlib, sys
rows = []
for p in sorted(pathlib.Path(sys.argv[1]).glob("*/runner_parts.json")):
    r = json.loads(p.read_text())
    rows.append((p.parent.name, r["pool_ms"], r["launch_only_ms"], r["run_and_wait_ms"],
                 r.get("run_and_wait_with_spinners_switch_0.1ms_ms"), r.get("launch_only_with_spinners_switch_0.1ms_ms")))
print(f"{'run':16} {'pool ms':>8} {'launch':>8} {'run+wait':>9} {'spin run+wait':>14} {'spin launch':>12}")
for name, *v in rows:
    print(f"{name:16} " + " ".join(f"{x:>8.3f}" if x is not None else "    -" for x in v))
PY
echo "pool_ab total $((SECONDS-T0)) s"
