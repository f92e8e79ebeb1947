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


def test_step_fill_model_runs_and_the_fill_never_pads_more():
    """bench/step_fill.py at a small size: both rows print, and with the fill a step's padding share is no larger
    (it only moves queued tokens into padding the step has anyway)."""
    sys.path.insert(0, str(ROOT / "bench"))
    import step_fill

    off = step_fill.simulate(False, streams=20, window=4, steps=80, budget=4096, seed=3)
    on = step_fill.simulate(True, streams=20, window=4, steps=80, budget=4096, seed=3)
    assert 0 < off["tokens_per_step"] <= 4096 and on["tokens_per_step"] <= 4096
    assert on["padding_share"] <= off["padding_share"] + 1e-9, (on, off)
    out = run("step_fill.py", "--streams", "8", "--steps", "40", "--budget", "4096")
    assert "fill off" in out and "fill on" in out
