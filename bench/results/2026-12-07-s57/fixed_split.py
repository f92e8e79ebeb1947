"""Session 57: each function's us a call in child_warm_prof_S{1,2,4}.txt (cProfile, so inflated) fitted as fixed +
per chunk x S (least squares over S = 1, 2, 4): where a tokenizer process call's fixed part goes. (recv's "fixed"
part is the child waiting for the next request.)

    python3 bench/results/2026-12-07-s57/fixed_split.py
"""
import re
from pathlib import Path

HERE = Path(__file__).resolve().parent


def load(s: int) -> dict[str, float]:
    d = {}
    for line in open(HERE / f"child_warm_prof_S{s}.txt"):
        m = re.match(r"\s*([\d.]+) cum\s+([\d.]+) own\s+([\d.]+)x\s+(.*)", line)
        if m:
            d[m.group(4)] = float(m.group(1))
    return d


runs = {s: load(s) for s in (1, 2, 4)}
xs = [1, 2, 4]
mx = sum(xs) / 3
rows = []
for name in runs[1]:
    if all(name in runs[s] for s in xs):
        ys = [runs[s][name] for s in xs]
        my = sum(ys) / 3
        per = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
        rows.append((my - per * mx, per, name))
for fixed, per, name in sorted(rows, key=lambda r: -r[0])[:30]:
    print(f"fixed {fixed:7.1f}  per chunk {per:7.1f}  {name}")
