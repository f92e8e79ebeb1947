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


def test_kernels_bench_smoke_checks_every_variant_against_float64(tmp_path):
    """bench/kernels.py --smoke --sweep on Triton's interpreter (bf16 made to behave as on the GPU): the planned
    config and every sweep variant carry their output's error against the float64 reference, each within the
    kernel tests' bf16 bound (a variant that trades accuracy for time shows it beside its time)."""
    import json
    import os

    env = {**os.environ, "TRITON_INTERPRET": "1"}
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "kernels.py"), "--smoke", "--sweep", "--shapes",
                           "N256xL128", "B4xT16384", "--out", str(tmp_path)], capture_output=True, text=True,
                          timeout=600, cwd=ROOT, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = json.loads((tmp_path / "kernels.json").read_text())["rows"]
    assert {r["kind"] for r in rows} == {"stream", "long"}, rows
    for row in rows:
        assert 0 < row["err_o"] <= 3e-3, row
        assert len(row["sweep"]) >= 5, row
        for variant in row["sweep"]:
            assert 0 < variant["err_o"] <= 3e-3 and variant["ms"] > 0, (row["case"], variant)
