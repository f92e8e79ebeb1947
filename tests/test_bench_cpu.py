"""The CPU benches of the engine's host work run end to end at tiny sizes (their figures are in bench/RESULTS.md;
here only that they run and print what they promise)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(script: str, *args: str) -> str:
    done = subprocess.run([sys.executable, str(ROOT / "bench" / script), *args], capture_output=True, text=True,
                          timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_keep_segments_bench_runs():
    out = run("keep_segments.py", "--streams", "3", "--new", "2", "--steps", "2", "--repeats", "1")
    assert "keep_segments:" in out and "ms a step (3 streams" in out


def test_piece_columns_bench_checks_both_forms_agree_and_runs():
    out = run("piece_columns.py", "--chunks", "6", "--chunk-bytes", "512", "--repeats", "1")
    assert "columns:" in out and "a tuple per piece:" in out


def test_step_fill_model_runs_and_the_padding_fill_pads_less():
    """bench/step_fill.py at a small size: a row for each step_fill, every step within the budget, and with the
    padding fill a smaller share of the device's work is padding (it moves queued tokens into padding the step
    runs anyway)."""
    sys.path.insert(0, str(ROOT / "bench"))
    import step_fill

    runs = {fill: step_fill.simulate(fill, streams=20, window=4, steps=80, budget=4096, seed=3)
            for fill in ("off", "padding", "budget")}
    assert all(0 < r["tokens_per_step"] <= 4096 for r in runs.values()), runs
    assert runs["padding"]["padding_share"] < runs["off"]["padding_share"], runs
    out = run("step_fill.py", "--streams", "8", "--steps", "40", "--budget", "4096")
    assert all(f"step_fill {fill}" in out for fill in ("off", "padding", "budget")), out
