"""bench/model.py's model section without a GPU: its bookkeeping (rows, ratios, saving as it goes) with the
timings and models stubbed. The timings themselves run on the GPU only."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import model as model_bench  # noqa: E402  (bench/model.py)


class _Stub:
    def cuda(self):
        return self

    def to(self, *_):
        return self


def test_the_model_section_saves_each_row_as_it_is_measured(monkeypatch, tmp_path):
    times = iter([1.0, 2.0, 1.2, 2.2, 1.5] * 4)  # per shape: ours, fla, ours, fla (2 rounds), then the plain layers
    monkeypatch.setattr(model_bench, "build_random", lambda cfg: _Stub())
    monkeypatch.setattr(model_bench, "fla_model", lambda cfg: _Stub())
    monkeypatch.setattr(model_bench, "random_ids", lambda B, T, vocab, seed: torch.zeros(B, T, dtype=torch.long))
    monkeypatch.setattr(model_bench, "median_ms", lambda fn, rep=200: next(times))
    report: dict = {"model": []}
    saved: list[int] = []

    def on_row() -> None:
        model_bench.save(report, str(tmp_path))
        saved.append(len(json.loads((tmp_path / "model.json").read_text())["model"]))

    rows = model_bench.section_model(("small",), rounds=2, rows=report["model"], on_row=on_row)
    assert rows is report["model"] and saved == [1, 2]  # one save per row, each with the rows so far
    first = rows[0]
    assert (first["model"], first["B"], first["T"]) == ("small", *model_bench.MODEL_SHAPES[0])
    assert first["runs_ms"] == {"ours": [1.0, 1.2], "fla": [2.0, 2.2]} and first["ours_plain_ms"] == 1.5
    assert first["ours_ms"] == 1.1 and first["fla_ms"] == 2.1 and abs(first["x_fla"] - 2.1 / 1.1) < 1e-12
    assert first["x_fla_by_round"] == [2.0, 2.2 / 1.2]
