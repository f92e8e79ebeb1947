"""The distillation pipeline on a tiny sample: sources, teacher conversion, batches, training, resume, export."""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import time
from dataclasses import replace

import numpy as np
import pytest
import torch
from helpers_train import make_distill_dir, student_config
from safetensors.torch import load_file
from tokenizers import Tokenizer

from streamret.model.checkpoint import save_checkpoint
from streamret.model.retnet import RetNet, RetNetConfig
from streamret.model.spec import load_model
from streamret.model.tokenizer import HFTokenizer
from streamret.train import distill, export, train_pack
from streamret.train.data import QUERY_TOKENS, Corpus, DocBatch, Sampler, draw_query_len, load_corpus, teacher_targets
from streamret.train.distill import (
    PhaseTimes,
    TrainConfig,
    build_student,
    doc_targets,
    load_state,
    student_embeddings,
    train,
)
from streamret.train.distill import main as distill_main
from streamret.train.docs import DocBank, backward_through_blocks, doc_step, pooled_without_graph
from streamret.train.prepare import main as prepare_main
from streamret.train.prepare import read_source, start_manifest, write_source
from streamret.train.sources import MissingTool, each_file, html_to_text, man_pages, subsample
from streamret.train.teacher import CONTENT, convert_teacher, load_teacher


@pytest.fixture(scope="module")
def distill_dir(tmp_path_factory):
    return make_distill_dir(tmp_path_factory.mktemp("distill"))


def test_html_to_text_drops_markup_and_scripts():
    text = html_to_text("<html><head><title>t</title></head><body><script>x=1</script>"
                        "<p>Hello &amp; <b>world</b></p><p>Two</p></body></html>")
    assert text == "Hello & world\n\nTwo"


def test_html_to_text_drops_a_books_navigation():
    assert html_to_text("<nav><ol><li>1. Intro</li><li>2. Types</li></ol></nav><p>Types are</p>") == "Types are"


def test_each_file_reads_every_pattern_skips_and_turns_html_into_text(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.txt").write_text("plain  \n\n\n\ntext")
    (tmp_path / "d" / "b.html").write_text("<p>marked <i>up</i></p>")
    (tmp_path / "d" / "a-delta.txt").write_text("changes")
    with gzip.open(tmp_path / "c.md.gz", "wt") as f:
        f.write("# zipped")
    docs = list(each_file("d/*.txt", "d/*.html", "*.gz", skip=r"delta")(tmp_path))
    assert docs == [("d/a.txt", "plain\n\ntext"), ("d/b.html", "marked up"), ("c.md.gz", "# zipped")]


def test_each_file_reads_a_hard_linked_page_once_and_cleans_away_site_chrome(tmp_path):
    (tmp_path / "one.html").write_text("<p>menu</p><p>NEXT</p><p>body text</p>")
    os.link(tmp_path / "one.html", tmp_path / "same.html")  # one page under two names
    (tmp_path / "index.html").write_text("<p>menu</p><p>a list of pages</p>")  # no marker: not a page of text
    (tmp_path / "link.html").symlink_to(tmp_path / "one.html")
    docs = list(each_file("*.html", clean=lambda t: t.split("NEXT", 1)[1] if "NEXT" in t else "")(tmp_path))
    assert [(d, t) for d, t in docs if t] == [("one.html", "body text")]
    assert len(docs) == 2  # index.html cleaned to nothing; prepare drops empty documents


@pytest.mark.skipif(shutil.which("man") is None or shutil.which("col") is None, reason="needs man and col")
def test_man_pages_renders_roff_without_hyphens_and_skips_so_stubs(tmp_path):
    (tmp_path / "man1").mkdir()
    with gzip.open(tmp_path / "man1" / "frob.1.gz", "wt") as f:
        f.write(".TH FROB 1\n.SH NAME\nfrob \\- turn the knob\n.SH DESCRIPTION\n.B frob\nturns the "
                "extraordinarily well-documented knob.\n")
    with gzip.open(tmp_path / "man1" / "twiddle.1.gz", "wt") as f:
        f.write(".so man1/frob.1\n")
    docs = list(man_pages("man1/*.gz")(tmp_path))
    assert [d for d, _ in docs] == ["man1/frob.1.gz"]
    text = docs[0][1]
    assert "frob - turn the knob" in text and "extraordinarily well-documented knob." in text
    assert "\x08" not in text and not any(line.startswith(" ") for line in text.splitlines())


def test_man_pages_without_man_names_the_packages_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(MissingTool, match="man-db and bsdextrautils"):
        list(man_pages("man1/*.gz")(tmp_path))


def test_prepare_names_an_unknown_source_and_a_partial_build_keeps_the_others(tmp_path, capsys):
    with pytest.raises(SystemExit):
        prepare_main(["--out", str(tmp_path), "--only", "linux-doc", "no-such-doc"])
    assert "no-such-doc: no such source" in capsys.readouterr().err
    (tmp_path / "manifest.json").write_text(json.dumps({"sources": {"old": {"split": "train"}}}))
    assert start_manifest(tmp_path, partial=True)["sources"] == {"old": {"split": "train"}}
    assert start_manifest(tmp_path, partial=False)["sources"] == {}


def test_subsample_keeps_about_the_budget():
    docs = [(str(i), "x" * 1000) for i in range(1000)]  # 1 MB
    kept = subsample(docs, 0.25)
    assert 240 <= len(kept) <= 260 and kept[0] == docs[0]
    assert subsample(docs, None) == docs and subsample(docs, 5) == docs


def test_sources_round_trip(tmp_path):
    docs = [("a", "first\nline"), ("b", "ünïcode ✓")]
    write_source(docs, tmp_path / "s.jsonl.xz")
    assert read_source(tmp_path / "s.jsonl.xz") == docs


def test_teacher_int8_embeddings_match_fp16_and_padding_is_ignored(distill_dir, tmp_path):
    full = convert_teacher(distill_dir / "hf", tmp_path / "fp16", quantize="none")
    ref, q8 = load_teacher(full), load_teacher(distill_dir / "teacher")
    windows = [[5 + i % 40 for i in range(n)] for n in (3, 17, CONTENT)]
    a, b = ref.embed_windows(windows), q8.embed_windows(windows)
    assert torch.allclose(a.norm(dim=-1), torch.ones(3), atol=1e-5)
    assert float((a * b).sum(-1).min()) > 0.999
    alone = torch.cat([ref.embed_windows([w]) for w in windows])  # no padding in a batch of one
    torch.testing.assert_close(a, alone, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="at most"):
        ref.embed_windows([[5] * (CONTENT + 1)])


def test_batches_tile_sequences_and_targets_are_the_teachers(distill_dir):
    tok = Tokenizer.from_file(str(distill_dir / "teacher" / "tokenizer.json"))
    corpus = load_corpus(distill_dir / "data", ["alpha", "beta"], tok)
    batch = Sampler(corpus, seed=0).batch([(3, 1, 40), (5, 1, 8), (2, 3, 20)])
    assert batch.lengths.tolist() == [40] * 3 + [8] * 5 + [60] * 2
    assert len(batch.ids) == batch.lengths.sum() == batch.span_len.sum() == len(batch.span_of_token)
    spans = np.split(batch.ids, np.cumsum(batch.span_len)[:-1])
    assert all((s == w).all() for s, w in zip(spans, batch.windows))
    assert batch.multi_span_seqs.tolist() == [8, 9]
    teacher = load_teacher(distill_dir / "teacher")
    targets = teacher_targets(teacher, batch.windows, "cpu")
    torch.testing.assert_close(targets, teacher.embed_windows([w.tolist() for w in batch.windows]),
                               atol=1e-5, rtol=1e-5)
    docs = doc_targets(batch, targets)
    want = torch.nn.functional.normalize(targets[-6:-3].mean(0), dim=0)
    torch.testing.assert_close(docs[0], want, atol=1e-6, rtol=1e-5)
    # the student's span embeddings are its own pooled embeddings of exactly those tokens
    model = build_student(teacher, 0, student_config(tok.get_vocab_size())).eval()
    with torch.no_grad():
        span_emb, seq_emb = student_embeddings(model, batch, torch.device("cpu"))
        first = batch.windows[0]
        _, state = model(torch.from_numpy(first).long(), mode="chunkwise")
        torch.testing.assert_close(span_emb[0], model.stream_embedding(state)[0], atol=1e-5, rtol=1e-4)
        _, state = model(torch.from_numpy(batch.ids[-60:]).long(), mode="chunkwise")
        torch.testing.assert_close(seq_emb[1], model.stream_embedding(state)[0], atol=1e-5, rtol=1e-4)


def _args(distill_dir, tmp_path, fresh: bool, init=None, phase_times=False, profile_steps=0) -> argparse.Namespace:
    return argparse.Namespace(data=str(distill_dir), out=str(tmp_path / "out"), ckpt=str(tmp_path / "ckpt"),
                              fresh=fresh, device="cpu", log_every=1, eval_n=8, init=init, phase_times=phase_times,
                              profile_steps=profile_steps)


def _cfg(steps: int, doc_tokens: int = 0) -> TrainConfig:
    return TrainConfig(minutes=5, max_steps=steps, lr=3e-3, warmup_frac=0.0, n_passages=8, short_tokens=64,
                       short_lengths=(16,), n_long=2, long_chunks=2, ckpt_minutes=10, relational_spans=64,
                       doc_tokens=doc_tokens, doc_lengths=(192, 320), doc_max=4, doc_group=2, doc_block=64,
                       doc_queries=2)


def test_training_lowers_the_loss_and_resumes_from_its_checkpoint(distill_dir, tmp_path):
    torch.manual_seed(0)
    vocab = Tokenizer.from_file(str(distill_dir / "teacher" / "tokenizer.json")).get_vocab_size()
    result = train(_args(distill_dir, tmp_path, fresh=True, profile_steps=2), _cfg(12), student_config(vocab))
    profile = (tmp_path / "out" / "profile.txt").read_text()  # steps 11 and 12, the last two
    assert profile.startswith("2 training steps after 10, by cpu_time_total") and "aten::" in profile
    losses = [row["total"] for row in result["log"]]
    assert len(losses) == 12
    assert np.mean(losses[-3:]) < 0.8 * np.mean(losses[:3])
    assert set(result["held_out"]) >= {"passage_254_cos", "span_32_cos", "long_8x254_doc_cos"}

    saved = load_file(str(tmp_path / "ckpt" / "state.safetensors"))
    resumed = train(_args(distill_dir, tmp_path, fresh=False), _cfg(14), student_config(vocab))
    assert resumed["step"] == 14 and len(resumed["log"]) == 14
    assert resumed["log"][:12] == result["log"]  # the log carries over

    teacher = load_teacher(distill_dir / "teacher")
    model = build_student(teacher, 1, student_config(vocab))
    opt = torch.optim.AdamW(model.parameters())
    info = load_state(tmp_path / "ckpt", model, opt)
    assert info["step"] == 14
    again = load_file(str(tmp_path / "ckpt" / "state.safetensors"))
    assert not torch.equal(saved["model.embeddings.weight"], again["model.embeddings.weight"])  # it trained on
    torch.testing.assert_close(model.embeddings.weight, again["model.embeddings.weight"])
    assert len(opt.state) == len(list(model.parameters()))


def test_shards_split_big_tensors_and_merge_into_a_loadable_checkpoint(distill_dir, tmp_path, monkeypatch):
    teacher = load_teacher(distill_dir / "teacher")
    tok_json = distill_dir / "teacher" / "tokenizer.json"
    model = build_student(teacher, 0, student_config(teacher.word.num_embeddings))
    monkeypatch.setattr(export, "SHARD_BYTES", 6000)  # the embedding matrix is ~9 KB in fp16
    paths = export.save_shards(model, tok_json, tmp_path / "shards", {"step": 1})
    assert len(paths) > 2 and all(p.stat().st_size <= 6000 + 1024 for p in paths)
    assert any("@" in k for p in paths for k in load_file(str(p)))
    export.merge_shards(tmp_path / "shards", tmp_path / "merged")
    loaded = load_model(str(tmp_path / "merged"), "cpu", "float32")
    for name, t in model.state_dict().items():
        torch.testing.assert_close(loaded.model.state_dict()[name], t.half().float())
    assert loaded.tokenizer.encode("the river") == Tokenizer.from_file(str(tok_json)).encode(
        "the river", add_special_tokens=False).ids
    (tmp_path / "shards" / paths[1].name).unlink()
    with pytest.raises(FileNotFoundError, match="shards"):
        export.merge_shards(tmp_path / "shards", tmp_path / "merged2")


def test_doc_batches_hold_distinct_documents_a_few_per_source_and_queries_from_them(distill_dir):
    tok = Tokenizer.from_file(str(distill_dir / "teacher" / "tokenizer.json"))
    corpus = load_corpus(distill_dir / "data", ["alpha", "beta"], tok)
    batch = Sampler(corpus, seed=0).doc_batch(6, 300, group=3, queries_per_doc=2, query_len=40)
    assert batch.ids.shape == (6, 300) and batch.queries.shape == (12, 40)
    assert len(set(batch.doc.tolist())) == 6
    assert len(set(batch.source[:3].tolist())) == 1 and len(set(batch.source[3:].tolist())) == 1
    for row, d in zip(batch.ids, batch.doc):
        doc = corpus.docs[d]
        assert any((doc[s : s + 300] == row).all() for s in range(len(doc) - 299))
    for q, row in zip(batch.queries, batch.query_doc):
        window = batch.ids[row]
        assert any((window[s : s + 40] == q).all() for s in range(261))
    windows, rows = batch.chunk_windows()  # 300 tokens: one teacher window of CONTENT and the rest
    assert [len(w) for w in windows[:2]] == [CONTENT, 300 - CONTENT]
    assert rows.tolist() == np.repeat(range(6), 2).tolist()
    assert all((np.concatenate([w for w, r in zip(windows, rows) if r == i]) == batch.ids[i]).all() for i in range(6))
    with pytest.raises(ValueError, match="documents have"):
        Sampler(corpus, seed=0).doc_batch(2, 10**6, group=1, queries_per_doc=1, query_len=8)


def test_doc_batches_take_a_group_from_one_folder_and_top_it_up_from_the_source():
    docs = [np.arange(100, 400, dtype=np.int32) + i for i in range(10)]
    folder = np.array([0, 0, 1, 1, 1, 1, 2, 2, 2, 2])  # folders of 2, 4 and 4 documents, all one source
    corpus = Corpus(docs, np.zeros(10, dtype=np.int64), folder, ["one"], np.ones(500, dtype=bool))
    for seed in range(5):
        batch = Sampler(corpus, seed=seed).doc_batch(9, 200, group=3, queries_per_doc=1, query_len=20)
        assert len(set(batch.doc.tolist())) == 9
        left = np.bincount(folder)
        for g in range(3):  # a group: what its first document's folder has left (up to 3), then other folders
            members = folder[batch.doc[3 * g : 3 * g + 3]]
            k = min(3, left[members[0]])
            assert (members[:k] == members[0]).all() and (members[k:] != members[0]).all()
            np.subtract.at(left, members, 1)


def test_doc_bank_keeps_the_last_entries_and_hides_each_querys_own_document():
    bank = DocBank(3, 2, "cpu")
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert torch.isinf(bank.logits(q, torch.tensor([0, 1]), 0.5)).all()  # empty
    bank.add(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([7, 8]))
    bank.add(torch.tensor([[0.6, 0.8], [0.8, 0.6]]), torch.tensor([9, 7]))  # the oldest (doc 7) is replaced
    assert bank.doc.tolist() == [7, 8, 9]
    logits = bank.logits(q, torch.tensor([7, 9]), 0.5)
    assert logits[0, 0] == -float("inf") and logits[0, 1] == 0 and logits[0, 2] == pytest.approx(1.2)
    assert logits[1, 2] == -float("inf") and logits[1, 0] == pytest.approx(1.2) and logits[1, 1] == 2


@pytest.mark.parametrize("forward", ["parallel", "chunkwise"])
def test_document_gradient_through_saved_block_states_equals_the_whole_graph(forward):
    """The blockwise re-run (reverse order, state gradients handed back) differentiates the whole document,
    whichever form computed the saved states."""
    cfg = RetNetConfig(vocab_size=64, d_model=16, n_layers=2, n_heads=2, head_k_dim=8, head_v_dim=8, ffn_dim=32,
                       embed_dim=12)
    model = RetNet(cfg).init_weights(0, std=0.3).double()
    g = torch.Generator().manual_seed(0)
    ids, weights = torch.randint(0, 64, (3, 50), generator=g), torch.randn(3, 12, generator=g, dtype=torch.float64)

    def loss_of(pooled):
        return (model.embed(pooled, torch.full((3,), 50)) * weights).sum()

    hidden, _ = model(ids, mode="parallel")
    loss_of(hidden.sum(1)).backward()
    want = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    pooled, starts = pooled_without_graph(model, ids, block=16, mode=forward)  # blocks of 16, 16, 16 and 2 tokens
    torch.testing.assert_close(pooled, hidden.detach().sum(1))
    pooled = pooled.requires_grad_()
    loss_of(pooled).backward()
    backward_through_blocks(model, ids, 16, starts, pooled.grad)
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.grad, want[name], rtol=1e-6, atol=1e-9, msg=name)
    with pytest.raises(ValueError, match="doc forward mode"):
        pooled_without_graph(model, ids, block=16, mode="recurrent")


def _init_folder(distill_dir, folder, vocab: int):
    teacher = load_teacher(distill_dir / "teacher")
    model = build_student(teacher, 3, student_config(vocab))
    save_checkpoint(model, HFTokenizer(distill_dir / "teacher" / "tokenizer.json"), folder)
    return model


def test_pack_fits_its_budget_and_the_document_objective_trains_from_an_init_model(distill_dir, tmp_path):
    full = train_pack.build(distill_dir, tmp_path / "full", ["alpha", "beta"], budget=10**8)
    assert full["share"] == 1.0 and not (tmp_path / "full" / "teacher" / "tokenizer.json").exists()
    budget = full["teacher_bytes"] + full["data_bytes"] * 2 // 3 + 4096
    small = train_pack.build(distill_dir, tmp_path / "pack", ["alpha", "beta"], budget=budget)
    assert small["share"] < 1 and small["bytes"] <= budget
    assert load_teacher(tmp_path / "pack" / "teacher").known_ids.sum() == small["tokens_kept"] + 3  # + specials
    with pytest.raises(ValueError, match="not training sources"):
        train_pack.build(distill_dir, tmp_path / "bad", ["held"], budget=10**8)

    vocab = Tokenizer.from_file(str(distill_dir / "teacher" / "tokenizer.json")).get_vocab_size()
    init = _init_folder(distill_dir, tmp_path / "init", vocab)
    torch.manual_seed(0)
    args = _args(tmp_path / "pack", tmp_path, fresh=True, init=str(tmp_path / "init"), phase_times=True,
                 profile_steps=2)
    t0 = time.perf_counter()
    result = train(args, _cfg(10, doc_tokens=640), student_config(vocab))
    rows = result["log"]
    assert all({"doc_mean", "doc_nce", "doc_top1"} <= set(r) for r in rows)
    # --phase-times: every phase of every step timed, the model's phases taking time, together less than the run
    assert all(set(r["phase_ms"]) == set(PhaseTimes.PHASES) for r in rows)
    assert all(r["phase_ms"]["student"] > 0 and r["phase_ms"]["doc_student"] > 0 for r in rows)
    assert sum(sum(r["phase_ms"].values()) for r in rows) < (time.perf_counter() - t0) * 1e3
    # --profile-steps 2: steps 11 and 12 would be profiled; this run has 10, so no profile
    assert not (tmp_path / "out" / "profile.txt").exists()
    assert np.mean([r["total"] for r in rows[-3:]]) < 0.8 * np.mean([r["total"] for r in rows[:3]])
    assert np.mean([r["doc_mean"] for r in rows[-3:]]) < np.mean([r["doc_mean"] for r in rows[:3]])
    assert result["init_training"] is None  # the init folder has no training.json
    assert "held_out" not in result and result["doc_tokens_seen"] == sum(
        min(4, 640 // length) * length for length in [192, 320] * 5)

    # the run started from the init model's weights (a step at a vanishing rate leaves them as they were),
    # and its training.json carries the init model's own, so the weights' whole recipe travels with them
    parent = {"step": 7, "init": None, "log": [{"step": 7, "total": 0.5}]}
    (tmp_path / "init" / "training.json").write_text(json.dumps(parent))
    args = _args(tmp_path / "pack", tmp_path / "again", fresh=True, init=str(tmp_path / "init"))
    again = train(args, replace(_cfg(1, doc_tokens=640), lr=1e-12, doc_forward="chunkwise"), student_config(vocab))
    assert again["init_training"] == parent
    assert json.loads((tmp_path / "again" / "out" / "training.json").read_text())["init_training"] == parent
    export.merge_shards(tmp_path / "again" / "out", tmp_path / "again" / "merged")
    started = load_model(str(tmp_path / "again" / "merged"), "cpu", "float32").model.state_dict()
    for name, t in init.state_dict().items():
        torch.testing.assert_close(started[name], t.half().float(), msg=name)


def test_distill_cli_names_the_document_forwards_on_a_bad_one(capsys):
    with pytest.raises(SystemExit):
        distill_main(["--doc-forward", "recurrent"])
    assert "--doc-forward 'recurrent'; use one of parallel, chunkwise" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        distill_main(["--doc-query-grad", "2"])
    assert "--doc-query-grad 2; use 1 (the queries move too) or 0 (documents only)" in capsys.readouterr().err


def _tiny_doc_step_inputs(seed: int):
    """(student config, a batch of 3 documents with 2 query passages each, teacher documents and queries, the
    generator for more) for doc_step at a tiny size."""
    cfg = RetNetConfig(vocab_size=64, d_model=16, n_layers=2, n_heads=2, head_k_dim=8, head_v_dim=8, ffn_dim=32,
                       embed_dim=12)
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 64, (3, 40), generator=g).numpy()
    batch = DocBatch(ids=ids, doc=np.arange(3), source=np.zeros(3, dtype=np.int64),
                     queries=np.concatenate([ids[:, 4:16], ids[:, 20:32]]), query_doc=np.array([0, 1, 2, 0, 1, 2]))
    t_docs = torch.nn.functional.normalize(torch.randn(3, 12, generator=g), dim=-1)
    t_queries = torch.nn.functional.normalize(torch.randn(6, 12, generator=g), dim=-1)
    return cfg, batch, t_docs, t_queries, g


@pytest.mark.parametrize("query_grad", [True, False])
def test_doc_step_moves_the_query_passages_only_when_asked(query_grad, monkeypatch):
    """query_grad off: the student's query passages are fixed targets (their forward builds no graph), so only
    the documents move; the gradient then differs from the default's."""
    cfg, batch, t_docs, t_queries, _ = _tiny_doc_step_inputs(0)

    def grads(flag: bool) -> tuple[dict[str, torch.Tensor], list[bool]]:
        model = RetNet(cfg).init_weights(0, std=0.3)
        seen, forward, embed = [], model.forward, model.embed

        def spy(x, **kw):
            if x.shape == (6, 12):
                seen.append(torch.is_grad_enabled())
            return forward(x, **kw)

        def embed_spy(pool_sum, count):  # the queries' pooled sums through the head: no graph either when off
            if len(pool_sum) == 6:
                seen.append(torch.is_grad_enabled())
            return embed(pool_sum, count)

        monkeypatch.setattr(model, "forward", spy)
        monkeypatch.setattr(model, "embed", embed_spy)
        doc_step(model, batch, t_docs, t_queries, None, block=16, temperature=0.5, mean_weight=0.0, nce_weight=1.0,
                 device=torch.device("cpu"), query_grad=flag)
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}, seen

    got, seen = grads(query_grad)
    assert seen == [query_grad, query_grad]
    default, _ = grads(True)
    same = all(torch.equal(got[n], default[n]) for n in default)
    assert same == query_grad


def test_doc_step_scores_documents_through_a_fixed_document_map():
    """doc_map: the InfoNCE sees the documents as the `document` role serves them; the identity map (mean 0,
    matrix I) is the plain scoring, another map moves the gradient, and the bank keeps the mapped documents."""
    cfg, batch, t_docs, t_queries, g = _tiny_doc_step_inputs(1)
    skew = (torch.randn(12, generator=g) * 0.2, torch.diag(torch.linspace(0.2, 3.0, 12)))

    def run(doc_map):
        model = RetNet(cfg).init_weights(0, std=0.3)
        bank = DocBank(8, 12, torch.device("cpu"))
        out = doc_step(model, batch, t_docs, t_queries, bank, block=16, temperature=0.5, mean_weight=1.0,
                       nce_weight=1.0, device=torch.device("cpu"), doc_map=doc_map)
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        return out, grads, bank.emb[:3].clone(), model

    plain, plain_grads, plain_bank, _ = run(None)
    ident, ident_grads, _, _ = run((torch.zeros(12), torch.eye(12)))
    assert torch.allclose(ident["doc_nce"], plain["doc_nce"], atol=1e-6)
    assert all(torch.allclose(ident_grads[n], plain_grads[n], atol=1e-6) for n in plain_grads)
    mapped, mapped_grads, mapped_bank, model = run(skew)
    assert torch.allclose(mapped["doc_mean"], plain["doc_mean"], atol=1e-6)  # the mean loss stays on plain docs
    assert not torch.allclose(mapped["doc_nce"], plain["doc_nce"], atol=1e-4)
    assert not all(torch.allclose(mapped_grads[n], plain_grads[n], atol=1e-6) for n in plain_grads)
    want = torch.nn.functional.normalize((plain_bank - skew[0]) @ skew[1], dim=-1)  # the plain docs, mapped
    assert torch.allclose(mapped_bank, want, atol=1e-5)


def test_training_doc_map_reads_a_map_file_or_folder_and_names_a_bad_one(tmp_path):
    from streamret.model.document_map import DocumentMap

    rng = np.random.default_rng(0)
    DocumentMap.fit(rng.standard_normal((100, 12)), "fp").save(tmp_path)
    mean, matrix = distill.training_doc_map(str(tmp_path), 12, torch.device("cpu"))
    assert mean.shape == (12,) and matrix.shape == (12, 12)
    assert distill.training_doc_map("", 12, torch.device("cpu")) is None
    with pytest.raises(SystemExit, match="dim 12, the student's are 16"):
        distill.training_doc_map(str(tmp_path / "document_map.safetensors"), 16, torch.device("cpu"))
    with pytest.raises(SystemExit, match="no document_map.safetensors there"):
        distill.training_doc_map(str(tmp_path / "none"), 12, torch.device("cpu"))


def test_metric_loss_is_the_cosine_loss_in_an_even_metric_and_charges_quiet_directions_more():
    g = torch.Generator().manual_seed(3)
    t = torch.nn.functional.normalize(torch.randn(6, 8, generator=g), dim=-1)
    s = torch.nn.functional.normalize(t + 0.2 * torch.randn(6, 8, generator=g), dim=-1)
    cfg = replace(TrainConfig(), relational_spans=6, doc_weight=0.5)
    rng = np.random.default_rng(0)
    even = distill.distill_loss(s, s[:2], t, t[:2], cfg, rng, torch.eye(8))
    assert torch.allclose(even["metric"], even["span"] + 0.5 * even["doc"], atol=1e-6)  # |s - t|^2 / 2 = 1 - cos
    assert torch.allclose(even["total"], even["span"] + 0.5 * even["doc"] + even["relational"] + even["metric"])
    assert "metric" not in distill.distill_loss(s, s[:2], t, t[:2], cfg, rng)

    quiet = torch.eye(8)
    quiet[0, 0] = 3.0  # the map's gain along a direction of small variance
    along = t.clone()
    along[:, 0] += 0.05
    across = t.clone()
    across[:, 1] += 0.05
    cost = [float(distill.distill_loss(x, x[:0], t, t[:0], cfg, rng, quiet)["metric"]) for x in (along, across)]
    assert cost[0] == pytest.approx(9 * cost[1])


def test_teacher_metric_is_fitted_on_the_teachers_windows_and_trains_a_student(distill_dir, tmp_path, capsys):
    from streamret.model.document_map import DocumentMap
    from streamret.train.document_map import main as document_map_main

    with pytest.raises(SystemExit):
        document_map_main(["--distill", str(distill_dir), "--teacher", str(distill_dir / "teacher")])
    assert "--teacher needs --out" in capsys.readouterr().err
    document_map_main(["--distill", str(distill_dir), "--teacher", str(distill_dir / "teacher"), "--windows", "8",
                       "--power", "0.5", "--out", str(tmp_path / "metric")])
    fitted = DocumentMap.read(tmp_path / "metric" / "document_map.safetensors")
    assert fitted.fingerprint.startswith("teacher:") and fitted.power == 0.5
    metric = distill.training_metric(str(tmp_path / "metric"), fitted.dim, torch.device("cpu"))
    assert float((metric @ metric.T).trace()) == pytest.approx(fitted.dim, rel=1e-4)  # mean squared gain 1
    assert distill.training_metric("", fitted.dim, torch.device("cpu")) is None
    with pytest.raises(SystemExit, match="--metric .*: no document_map.safetensors there"):
        distill.training_metric(str(tmp_path / "none"), fitted.dim, torch.device("cpu"))

    vocab = Tokenizer.from_file(str(distill_dir / "teacher" / "tokenizer.json")).get_vocab_size()
    cfg = replace(_cfg(3), metric=str(tmp_path / "metric"), metric_weight=0.5)
    result = train(_args(distill_dir, tmp_path, fresh=True), cfg, student_config(vocab))
    assert all(row["metric"] > 0 for row in result["log"]) and result["train"]["metric_weight"] == 0.5


def test_passage_pairs_cut_a_word_start_run_out_of_neighbouring_windows_of_one_document():
    n_docs, length = 3, 5 * CONTENT
    starts = np.ones(n_docs * length, dtype=bool)
    starts[1::3] = False  # "##" pieces: a query never starts on one
    corpus = Corpus(docs=[np.arange(d * length, (d + 1) * length, dtype=np.int32) for d in range(n_docs)],
                    source=np.zeros(n_docs, dtype=np.int64), folder=np.arange(n_docs), names=["s"],
                    starts_word=starts)
    pairs = Sampler(corpus, seed=1).passage_pairs(10, group=4, query_len=24)
    n = 10
    assert len(pairs.lengths) == 2 * n and pairs.lengths.sum() == len(pairs.ids) == n * CONTENT
    # one query length a call: the parallel form runs the pairs as two equal-length groups
    assert set(pairs.lengths[:n].tolist()) == {CONTENT - 24} and set(pairs.lengths[n:].tolist()) == {24}
    seqs = np.split(pairs.ids, np.cumsum(pairs.lengths)[:-1])
    firsts = []
    for p, q in zip(seqs[:n], seqs[n:]):
        whole = np.sort(np.concatenate([p, q]))
        assert (np.diff(whole) == 1).all()  # passage + query = one window, nothing lost or repeated
        assert (np.diff(q) == 1).all() and starts[q[0]]  # the query: one run, from a word start
        assert not np.isin(q, p).any()  # cut out of its passage
        firsts.append(whole[0])
    # four windows at a time from one document, consecutive and disjoint: each other's hard negatives
    for g in range(0, 8, 4):
        assert np.diff(firsts[g : g + 4]).tolist() == [CONTENT] * 3
        assert len({int(f) // length for f in firsts[g : g + 4]}) == 1
    with pytest.raises(ValueError, match="query_len"):
        Sampler(corpus).passage_pairs(4, 2, query_len=CONTENT)
    with pytest.raises(ValueError, match="no document has"):
        Sampler(corpus).passage_pairs(4, group=6, query_len=24)


def test_query_lengths_are_drawn_log_uniform_over_the_benchmarks_query_range():
    rng = np.random.default_rng(0)
    lengths = np.array([draw_query_len(rng) for _ in range(20000)])
    assert lengths.min() == QUERY_TOKENS[0] and lengths.max() == QUERY_TOKENS[1]  # both ends reached, no further
    # as many draws an octave: 8-15 and 32-64 about a third each (a uniform draw: 14% and 58%)
    assert abs((lengths < 16).mean() - 1 / 3) < 0.03 and abs((lengths >= 32).mean() - 1 / 3) < 0.03


def test_passage_nce_trains_queries_toward_their_passages():
    n_docs, length = 2, 4 * CONTENT
    corpus = Corpus(docs=[np.arange(d * length, (d + 1) * length, dtype=np.int32) for d in range(n_docs)],
                    source=np.zeros(n_docs, dtype=np.int64), folder=np.arange(n_docs), names=["s"],
                    starts_word=np.ones(n_docs * length, dtype=bool))
    pairs = Sampler(corpus, seed=0).passage_pairs(8, group=4, query_len=16)
    model = RetNet(RetNetConfig(vocab_size=n_docs * length, d_model=16, n_layers=2, n_heads=2, head_k_dim=8,
                                head_v_dim=8, ffn_dim=32, embed_dim=12)).init_weights(0, std=0.3)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    cpu = torch.device("cpu")
    first = distill.passage_nce(model, pairs, cpu, 0.05)
    assert 0 <= float(first["passage_top1"]) <= 1 and first["passage_top1"].grad_fn is None
    for _ in range(10):
        opt.zero_grad()
        distill.passage_nce(model, pairs, cpu, 0.05)["passage_nce"].backward()
        opt.step()
    last = distill.passage_nce(model, pairs, cpu, 0.05)
    assert float(last["passage_nce"].detach()) < 0.5 * float(first["passage_nce"].detach())
    assert float(last["passage_top1"]) >= float(first["passage_top1"])


def test_training_with_the_passage_nce_logs_it(distill_dir, tmp_path):
    torch.manual_seed(0)
    vocab = Tokenizer.from_file(str(distill_dir / "teacher" / "tokenizer.json")).get_vocab_size()
    cfg = replace(_cfg(3), passage_nce_weight=0.5, passage_pairs=8, passage_group=2)
    result = train(_args(distill_dir, tmp_path, fresh=True), cfg, student_config(vocab))
    for row in result["log"]:
        assert 0 <= row["passage_top1"] <= 1 and row["passage_nce"] > 0
        assert row["total"] == pytest.approx(row["span"] + row["doc"] + row["relational"] + 0.5 * row["passage_nce"],
                                             abs=1e-4)
    assert result["train"]["passage_nce_weight"] == 0.5
    off = train(_args(distill_dir, tmp_path / "off", fresh=True), _cfg(2), student_config(vocab))
    assert "passage_nce" not in off["log"][-1]


def test_distill_cli_refuses_a_passage_infonce_it_cannot_run(capsys):
    with pytest.raises(SystemExit):
        distill_main(["--passage-nce-weight", "0.1", "--passage-pairs", "1"])
    assert "--passage-pairs 1" in capsys.readouterr().err
