"""bench/quality.py end to end on a tiny held-out set (CPU): both phases, issue 18's length buckets and checks."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from helpers_train import make_distill_dir, student_config

from streamret.model.checkpoint import save_checkpoint
from streamret.model.tokenizer import HFTokenizer
from streamret.train import quality_pack
from streamret.train.distill import build_student
from streamret.train.teacher import load_teacher

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import quality  # noqa: E402  (bench/quality.py)


def test_both_phases_report_every_length_bucket_and_the_acceptance_checks(tmp_path, capsys):
    distill = make_distill_dir(tmp_path / "distill", doc_words=(300, 2500), docs_per_source=6)
    quality_pack.build(distill, tmp_path / "quality")
    sets = {"seed": 0, "passages": 24, "docs": 400, "queries_per_doc": 2, "min_doc_tokens": 300,
            "max_doc_tokens": 10**6}
    quality.teacher_phase(argparse.Namespace(data=str(tmp_path / "quality" / "heldout"), device="cpu",
                                             teacher=str(tmp_path / "quality" / "teacher"),
                                             out_dir=str(tmp_path / "t"), **sets))
    teacher = load_teacher(distill / "teacher")
    model = build_student(teacher, 0, student_config(teacher.word.num_embeddings))
    save_checkpoint(model, HFTokenizer(distill / "teacher" / "tokenizer.json"), tmp_path / "student")
    with torch.no_grad():
        quality.student_phase(argparse.Namespace(
            data=str(tmp_path / "quality" / "heldout"), device="cpu", teacher_out=str(tmp_path / "t"),
            model=str(tmp_path / "student"), out_dir=str(tmp_path / "s"), chunk_tokens=None, engine=False,
            engine_chunk_bytes=65536, engine_step_tokens=None))
    result = json.loads((tmp_path / "s" / "quality_cpu.json").read_text())
    methods = result["long_docs"]["methods"]
    assert set(methods) == {"student", "student_truncated", "student_chunks", "teacher_truncated", "teacher_chunks"}
    queries = result["long_docs"]["queries"]
    for m in methods.values():
        buckets = m["by_length"]
        assert [b["min_tokens"] for b in buckets] == [0, 2000, 8000, 32000]
        assert sum(b["queries"] for b in buckets) == queries == 12
        assert buckets[-1]["queries"] == 0 and buckets[-1]["recall@10"] is None  # no document of 32k tokens
        hits = sum(b["recall@10"] * b["queries"] for b in buckets if b["queries"])
        assert abs(hits / queries - m["recall@10"]) < 1e-9
    out = capsys.readouterr().out
    empty = [quality.bucket_name(b) for b in methods["student"]["by_length"] if not b["queries"]]
    assert "no documents" in out and f"no held-out document falls in {', '.join(empty)}:" in out
    checks = quality.acceptance(result)
    assert checks[0].split()[1:3] == ["recall@10", "overall:"] and any("passage cosine" in c for c in checks)
    assert all(c.startswith(("ok  ", "MISS")) for c in checks)

    # with a document map beside the weights: the documents also in role document, read through the engine too
    from streamret.train import document_map as recipe

    recipe.main(["--distill", str(distill), "--model", str(tmp_path / "student"), "--windows", "40",
                 "--window-tokens", "64"])
    with torch.no_grad():
        quality.student_phase(argparse.Namespace(
            data=str(tmp_path / "quality" / "heldout"), device="cpu", teacher_out=str(tmp_path / "t"),
            model=str(tmp_path / "student"), out_dir=str(tmp_path / "s2"), chunk_tokens=None, engine=True,
            engine_chunk_bytes=65536, engine_step_tokens=None))
    mapped = json.loads((tmp_path / "s2" / "quality_cpu.json").read_text())["long_docs"]["methods"]
    assert {"student_document", "student_engine"} <= set(mapped)
    assert mapped["student"]["recall@10"] == methods["student"]["recall@10"]  # the query role is as it was
    assert mapped["student_engine"]["role"] == "document" and mapped["student_engine"]["cosine_to_direct"] > 0.999
    assert "(documents in role document)" in quality.acceptance({**result, "long_docs": {
        **result["long_docs"], "methods": mapped}})[0]


def test_passage_geometry_tells_a_rotated_head_from_a_lost_geometry():
    import numpy as np
    import passage_geometry  # bench/passage_geometry.py

    g = torch.Generator().manual_seed(0)
    teacher = torch.nn.functional.normalize(torch.randn(400, 16, generator=g), dim=-1)
    lens = np.arange(400) % 255
    same = passage_geometry.geometry(teacher, teacher, lens)
    assert same["cos"] > 0.9999 and same["cos_rotated_heldhalf"] > 0.9999 and same["sim_corr"] > 0.9999
    rot = torch.linalg.qr(torch.randn(16, 16, generator=g, dtype=torch.float64))[0].float()
    rotated = passage_geometry.geometry(teacher @ rot, teacher, lens)  # an output head turned: geometry intact
    assert rotated["cos"] < 0.5 and rotated["cos_rotated_heldhalf"] > 0.999 and rotated["sim_corr"] > 0.999
    noise = torch.nn.functional.normalize(teacher + torch.randn(400, 16, generator=g), dim=-1)
    lost = passage_geometry.geometry(noise, teacher, lens)  # what no head can give back
    assert lost["cos_rotated_heldhalf"] < 0.85 and lost["sim_corr"] < 0.85
    assert set(lost["by_len"]) == {"0-127", "128-199", "200-254"}
