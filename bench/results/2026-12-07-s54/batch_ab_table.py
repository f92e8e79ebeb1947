"""Session 54: call 4's batch A/B, run by run, from its all.tgz (each run's e2e.json): tokens/s and x packed of the
two batch parts, when the first documents were handed to the engines, when the last results came back, the job's
end and its tail (the end less the last results back), all in ms from the job's start.

    python bench/results/2026-12-07-s54/batch_ab_table.py
"""

import json
import sys
import tarfile
from pathlib import Path

HERE = Path(__file__).resolve().parent

with tarfile.open(HERE / "call4_batch_ab" / "all.tgz") as tar:
    for run in ("warm", "base1", "new1", "new2", "base2"):
        parts = json.load(tar.extractfile(f"{run}/e2e.json"))["parts"]
        packed = parts["packed"]["tokens_per_s"]
        row = [f"{run:6s}"]
        for name in ("batch_long", "batch_short"):
            x, t = parts[name], parts[name]["timeline"]
            end = 1e3 * x["seconds"]
            row.append(f"{name} {x['tokens_per_s'] / 1e6:.2f} M ({x['tokens_per_s'] / packed:.3f}) handed "
                       f"{t['first_handed_ms']:.1f} last returned {t['last_returned_ms']:.1f} end {end:.1f} tail "
                       f"{end - t['last_returned_ms']:.1f}")
        sys.stdout.write(" | ".join(row) + "\n")
