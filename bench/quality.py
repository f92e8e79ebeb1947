"""Embedding quality of a streamret model against its teacher (all-MiniLM-L6-v2), on held-out sources.

Two phases, the teacher's and the student's; a device call carries at most 64 MiB, working tree included
(40.0 MiB with the shipped model) and .quality/ takes 20.1 MiB, so both phases fit one call, one after
the other (2026-12-02):

    python -m streamret.train.quality_pack --distill .distill --out .quality      # once, here: data + small teacher
    python bench/quality.py teacher --data .quality/heldout --teacher .quality/teacher --out-dir OUT1
    python bench/quality.py student --data .quality/heldout --teacher-out OUT1 --model default --out-dir OUT2
    python bench/quality.py plot OUT2/quality_cuda.json                            # PNG again from a result
    python bench/quality.py table OUT2/quality_cuda.json                           # the table again

Both phases build the same evaluation sets from the held-out sources (fixed seed; the student phase takes
the set parameters from the teacher phase's JSON and checks a fingerprint of every token id).

(a) Passages: held-out text cut into passages of whole sentences (<= 254 tokens, the teacher's window);
    one sentence of each is its query and is taken out of the passage. Reports the mean cosine of
    student and teacher embeddings of the same passages, and recall@1/@10 of query -> passage for each.
(b) Long documents of 5k..200k tokens: query passages (64..128 tokens from anywhere in a document;
    they stay in it) -> their document among all documents. Document embeddings: the student's
    whole-stream embedding, and each model (student, teacher) on its first 254-token window and with
    its window embeddings averaged. Recall@10 overall and per document-length bucket (< 2k, 2-8k,
    8-32k, >= 32k tokens; issue 18), tokens/s of each on the same kind of device, the student both
    called directly (chunkwise, state carried) and through the engine; then issue 18's acceptance checks.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import re
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from streamret.model.spec import load_model  # noqa: E402
from streamret.model.tokenizer import HFTokenizer  # noqa: E402
from streamret.train.data import QUERY_TOKENS  # noqa: E402
from streamret.train.prepare import read_source, sources_of_split  # noqa: E402
from streamret.train.teacher import CONTENT, load_teacher  # noqa: E402

# issue 18's buckets: < 2k, 2-8k, 8-32k, >= 32k tokens (a bucket with no document says so in the table)
LENGTH_BINS = (0, 2_000, 8_000, 32_000, 1 << 62)
ACCEPT_FROM_TOKENS = 8_000  # the buckets from here up must beat the chunk-averaged teacher, as overall
ACCEPT_MARGIN = 0.02
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z(\"'])|\n\s*\n")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


# ----------------------------------------------------------------------------------------------
# data


def held_out_docs(data: Path, encode) -> list[tuple[str, str, list[int]]]:
    docs = []
    for name in sources_of_split(data, "eval"):
        for doc_id, text in read_source(data / "data" / f"{name}.jsonl.xz"):
            docs.append((doc_id, text, encode(text)))
    return docs


def make_passages(docs, encode, n: int, rng: np.random.Generator):
    """(passage ids, query ids) pairs: runs of whole sentences <= CONTENT tokens, one sentence taken out."""
    pairs = []
    for di in rng.permutation(len(docs)):
        sentences = [s.strip() for s in _SENTENCE_END.split(docs[di][1]) if s and s.strip()]
        run: list[list[int]] = []
        for s in sentences:
            ids = encode(s)
            if sum(map(len, run)) + len(ids) > CONTENT or not ids:
                if len(run) >= 3:
                    candidates = [i for i, r in enumerate(run) if QUERY_TOKENS[0] <= len(r) <= QUERY_TOKENS[1]]
                    if candidates:
                        q = int(rng.choice(candidates))
                        rest = [t for i, r in enumerate(run) if i != q for t in r]
                        if len(rest) >= 32:
                            pairs.append((rest, run[q]))
                run = []
            if 0 < len(ids) <= CONTENT:
                run.append(ids)
        if len(pairs) >= n:
            break
    return pairs[:n]


def word_start_table(tokenizer) -> np.ndarray:
    vocab = tokenizer.get_vocab()
    table = np.ones(max(vocab.values()) + 1, dtype=bool)
    for tok, i in vocab.items():
        table[i] = not tok.startswith("##")
    return table


def make_doc_queries(doc_ids: list[list[int]], per_doc: int, rng, starts_word) -> list[tuple[int, list[int]]]:
    out = []
    for d, ids in enumerate(doc_ids):
        for _ in range(per_doc):
            length = int(rng.integers(64, 129))
            s = int(rng.integers(0, len(ids) - length))
            while s < len(ids) - length and not starts_word[ids[s]]:
                s += 1
            out.append((d, ids[s : s + length]))
    return out


# ----------------------------------------------------------------------------------------------
# embedders: each returns (embeddings [n, e] float32 on cpu, seconds, tokens read)


@torch.no_grad()
def teacher_embed(teacher, windows: list[list[int]], device, batch_tokens: int):
    sync(device)
    t = time.perf_counter()
    e = teacher.embed_windows(windows, batch_tokens=batch_tokens)
    sync(device)
    return e.cpu(), time.perf_counter() - t, sum(len(w) + 2 for w in windows)


def teacher_docs(teacher, doc_ids, device, batch_tokens: int, truncate: bool):
    """Teacher document embeddings: the first window only, or the mean of all its windows."""
    if truncate:
        return teacher_embed(teacher, [ids[:CONTENT] for ids in doc_ids], device, batch_tokens)
    windows, owner = doc_windows(doc_ids)
    e, secs, tokens = teacher_embed(teacher, windows, device, batch_tokens)
    return averaged(e, owner, len(doc_ids)), secs, tokens


def doc_windows(doc_ids: list[list[int]]) -> tuple[list[list[int]], list[int]]:
    """Every document cut into windows of CONTENT tokens (the last may be shorter), and each window's document."""
    windows, owner = [], []
    for d, ids in enumerate(doc_ids):
        for s in range(0, len(ids), CONTENT):
            windows.append(ids[s : s + CONTENT])
            owner.append(d)
    return windows, owner


def averaged(window_emb: torch.Tensor, owner: list[int], n_docs: int) -> torch.Tensor:
    """Per document, the normalised mean of its windows' embeddings."""
    sums = torch.zeros(n_docs, window_emb.shape[1]).index_add_(0, torch.tensor(owner), window_emb)
    return F.normalize(sums, dim=-1)


def progress(total_tokens: int, desc: str):
    """A tqdm bar over tokens on stderr (a line every 30 s when stderr is a log file, not a terminal): the CPU
    phases take tens of minutes."""
    from tqdm.auto import tqdm

    return tqdm(total=total_tokens, desc=desc, unit="tok", unit_scale=True, file=sys.stderr,
                mininterval=1.0 if sys.stderr.isatty() else 30.0, dynamic_ncols=True)


@torch.no_grad()  # (its callers outside quality.py's main, which turns grad off for all, kept the chunks' graphs)
def student_streams(model, seqs: list[list[int]], device, chunk_tokens: int, max_streams: int, desc: str = "student"):
    """Whole-sequence embeddings, read as streams: each step appends the next chunk of every open stream."""
    bar = progress(sum(map(len, seqs)), desc)
    sync(device)
    t = time.perf_counter()
    out = torch.empty(len(seqs), model.config.out_embed_dim)
    order = sorted(range(len(seqs)), key=lambda i: -len(seqs[i]))
    for g in range(0, len(order), max_streams):
        group = order[g : g + max_streams]
        state = model.init_state(len(group), device)
        longest = len(seqs[group[0]])
        for off in range(0, longest, chunk_tokens):
            live = [j for j, i in enumerate(group) if len(seqs[i]) > off]
            pieces = [seqs[group[j]][off : off + chunk_tokens] for j in live]
            ids = torch.tensor([t for p in pieces for t in p], device=device)
            cu = torch.tensor(np.concatenate([[0], np.cumsum([len(p) for p in pieces])]), device=device)
            sub = state.select(live) if len(live) < len(group) else state
            _, new = model(ids, mode="chunkwise", state=sub, cu_seqlens=cu)
            bar.update(len(ids))
            if len(live) < len(group):
                state.copy_into(live, new)
            else:
                state = new
        out[torch.tensor(group)] = model.stream_embedding(state).cpu()
    sync(device)
    secs = time.perf_counter() - t
    bar.close()
    return out, secs, sum(map(len, seqs))


def engine_docs(loaded, texts: list[str], chunk_bytes: int, config, role: str = "query"):
    """Whole-document embeddings through the engine, in `role`: each document one stream, appended in chunks."""
    from streamret.engine.engine import Engine

    engine = Engine(loaded, config=config)
    try:
        t = time.perf_counter()
        futures = []
        for d, text in enumerate(texts):
            raw = text.encode("utf-8")
            pieces = [raw[i : i + chunk_bytes] for i in range(0, len(raw), chunk_bytes)] or [b""]
            for seq, piece in enumerate(pieces, 1):
                futures.append(engine.submit_append(f"doc{d}", seq, piece, flush=seq == len(pieces)))
        for f in futures:
            f.result()
        out = torch.tensor(np.stack([engine.embedding(f"doc{d}", role) for d in range(len(texts))]))
        secs = time.perf_counter() - t
        tokens = sum(engine.info(f"doc{d}").tokens for d in range(len(texts)))
    finally:
        engine.shutdown(checkpoint=False)
    return out, secs, tokens


# ----------------------------------------------------------------------------------------------
# metrics


def recall(queries: torch.Tensor, targets: torch.Tensor, gold: torch.Tensor, ks=(1, 10)) -> dict[str, np.ndarray]:
    """Per query, whether its gold target is among the top k by cosine (both sides L2-normalised)."""
    sims = queries @ targets.T
    gold_sim = sims[torch.arange(len(gold)), gold]
    rank = (sims > gold_sim[:, None]).sum(1)  # 0 = best
    return {f"recall@{k}": (rank < k).numpy() for k in ks}


def by_length(hits: np.ndarray, lengths: np.ndarray) -> list[dict]:
    """Recall@10 per length bucket of the queries' documents; an empty bucket has queries 0 and recall None."""
    rows = []
    for lo, hi in zip(LENGTH_BINS[:-1], LENGTH_BINS[1:]):
        m = (lengths >= lo) & (lengths < hi)
        rows.append({"min_tokens": lo, "max_tokens": hi - 1, "queries": int(m.sum()),
                     "median_tokens": int(np.median(lengths[m])) if m.any() else None,
                     "recall@10": float(hits[m].mean()) if m.any() else None})
    return rows


def bucket_name(row: dict) -> str:
    lo, hi = row["min_tokens"], row["max_tokens"] + 1
    if lo == 0:
        return f"<{hi // 1000}k"
    return f">={lo // 1000}k" if hi == LENGTH_BINS[-1] else f"{lo // 1000}-{hi // 1000}k"


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4))
    for name, label in [("student_document", "streamret student (whole document, role document)"),
                        ("student", "streamret student (whole document)"),
                        ("teacher_chunks", "all-MiniLM-L6-v2, chunk embeddings averaged"),
                        ("teacher_truncated", "all-MiniLM-L6-v2, first 256 tokens")]:
        if name not in result["long_docs"]["methods"]:
            continue
        rows = [r for r in result["long_docs"]["methods"][name]["by_length"] if r["queries"]]
        ax.plot([r["median_tokens"] for r in rows], [100 * r["recall@10"] for r in rows], marker="o", label=label)
    ax.set_xscale("log")
    ax.set_xlabel("document length (tokens, median of each bucket: " + ", ".join(
        bucket_name(r) for r in result["long_docs"]["methods"]["student"]["by_length"]) + ")")
    ax.set_ylabel("recall@10 (%)")
    ax.set_ylim(0, 100)
    n = result["long_docs"]["docs"]
    ax.set_title(f"passage -> source document, {n} held-out documents\n{result['device']}", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


# ----------------------------------------------------------------------------------------------


# evaluation sets: built the same way in both phases


# the sets of every quality figure so far (fingerprint c760643d...): the teacher phase's defaults, which
# bench/teacher_candidates.py and bench/doc_pooling.py build the same way
DEFAULT_SETS = {"seed": 0, "passages": 2000, "docs": 400, "queries_per_doc": 3,
                "min_doc_tokens": 5000, "max_doc_tokens": 200000}
SET_ARGS = tuple(DEFAULT_SETS)


@dataclass
class EvalSets:
    passages: list[list[int]]
    queries: list[list[int]]  # queries[i] was taken out of passages[i]
    doc_texts: list[str]
    doc_ids: list[list[int]]
    doc_queries: list[list[int]]
    doc_gold: list[int]  # doc_queries[i] comes from doc_ids[doc_gold[i]]

    def fingerprint(self) -> str:
        h = hashlib.sha256()
        for seqs in (self.passages, self.queries, self.doc_ids, self.doc_queries, [self.doc_gold]):
            for ids in seqs:
                h.update(np.asarray(ids, dtype=np.int64).tobytes())
                h.update(b"|")
        return h.hexdigest()


def build_eval_sets(data: Path, tok, p: dict) -> EvalSets:
    rng = np.random.default_rng(p["seed"])
    docs = held_out_docs(data, tok.encode)
    pairs = make_passages(docs, tok.encode, p["passages"], rng)
    long_docs = [d for d in docs if p["min_doc_tokens"] <= len(d[2]) <= p["max_doc_tokens"]]
    if len(long_docs) > p["docs"]:
        long_docs = [long_docs[i] for i in sorted(rng.choice(len(long_docs), p["docs"], replace=False))]
    if not pairs or not long_docs:
        raise ValueError(f"{data} gives {len(pairs)} passages and {len(long_docs)} documents of "
                         f"{p['min_doc_tokens']}..{p['max_doc_tokens']} tokens; lower --min-doc-tokens or add data")
    doc_ids = [d[2] for d in long_docs]
    qs = make_doc_queries(doc_ids, p["queries_per_doc"], rng, word_start_table(tok))
    return EvalSets([a for a, _ in pairs], [q for _, q in pairs], [d[1] for d in long_docs], doc_ids,
                    [q for _, q in qs], [d for d, _ in qs])


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def speed(secs: float, tokens: int) -> dict:
    return {"tokens_read": int(tokens), "seconds": secs, "tokens_per_s": tokens / secs}


# ----------------------------------------------------------------------------------------------
# phases


def teacher_phase(args) -> None:
    """Teacher embeddings of every set and the teacher's tokens/s -> OUT/teacher.json + teacher_embeddings.npz."""
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          "cpu" if args.device == "auto" else args.device)
    cuda = device.type == "cuda"
    teacher = load_teacher(args.teacher, device, torch.float16 if cuda else torch.float32)
    batch_tokens = 1 << 18 if cuda else 1 << 13
    params = {k: getattr(args, k) for k in SET_ARGS}
    sets = build_eval_sets(Path(args.data), HFTokenizer(args.teacher), params)
    teacher_embed(teacher, [sets.doc_ids[0][:CONTENT]] * 64, device, batch_tokens)  # warm-up
    emb = {
        "passages": teacher_embed(teacher, sets.passages, device, batch_tokens)[0],
        "queries": teacher_embed(teacher, sets.queries, device, batch_tokens)[0],
        "doc_queries": teacher_embed(teacher, sets.doc_queries, device, batch_tokens)[0],
    }
    timings = {}
    for name, truncate in (("teacher_truncated", True), ("teacher_chunks", False)):
        emb[name], secs, tokens = teacher_docs(teacher, sets.doc_ids, device, batch_tokens, truncate)
        timings[name] = speed(secs, tokens)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out / "teacher_embeddings.npz", **{k: v.numpy().astype(np.float16) for k, v in emb.items()})
    meta = {"date": datetime.now(UTC).strftime("%Y-%m-%d"), "device": device_name(device), "torch": torch.__version__,
            "teacher_dtype": str(teacher.word.weight.dtype), "teacher": str(args.teacher), "sets": params,
            "fingerprint": sets.fingerprint(), "timings": timings, "command": " ".join(sys.argv)}
    pack = Path(args.teacher).parent / "pack.json"
    if pack.is_file():
        meta["teacher_pack"] = json.loads(pack.read_text())
    (out / "teacher.json").write_text(json.dumps(meta, indent=1))
    for name, t in timings.items():
        print(f"{name:18s} {t['tokens_per_s']:12,.0f} tokens/s ({t['tokens_read']} tokens, {t['seconds']:.2f} s)")
    print(f"wrote {out}/teacher.json and teacher_embeddings.npz ({len(sets.passages)} passages, "
          f"{len(sets.doc_ids)} documents, {len(sets.doc_queries)} document queries)")


def teacher_outputs(teacher_out: str) -> tuple[dict, dict[str, torch.Tensor]]:
    """The teacher phase's JSON and its embeddings of every set (float32)."""
    tdir = Path(teacher_out)
    meta = json.loads((tdir / "teacher.json").read_text())
    with np.load(tdir / "teacher_embeddings.npz") as z:
        return meta, {k: torch.from_numpy(z[k].astype(np.float32)) for k in z.files}


def sets_of_teacher_phase(data: str, tok, meta: dict, teacher_out: str) -> EvalSets:
    """The evaluation sets the teacher phase embedded, rebuilt with `tok` and checked token for token."""
    sets = build_eval_sets(Path(data), tok, meta["sets"])
    if sets.fingerprint() != meta["fingerprint"]:
        raise SystemExit(f"the evaluation sets differ from the teacher phase's ({teacher_out}/teacher.json): same "
                         f"--data and the same tokenizer as {meta['teacher']} are needed")
    return sets


def student_phase(args) -> None:
    """Student embeddings (directly and through the engine), all metrics against the teacher phase's outputs."""
    from streamret.engine import EngineConfig

    meta, temb = teacher_outputs(args.teacher_out)
    loaded = load_model(args.model, args.device)
    model, tok, device = loaded.model, loaded.tokenizer, loaded.model.device
    cuda = device.type == "cuda"
    sets = sets_of_teacher_phase(args.data, tok, meta, args.teacher_out)
    chunk_tokens = args.chunk_tokens or (8192 if cuda else 1024)
    max_streams = 256 if cuda else 16
    many = 4096 if cuda else 256
    result: dict = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"), "model": args.model, "device": device_name(device),
        "torch": torch.__version__, "dtype": str(model.dtype), "command": " ".join(sys.argv),
        "teacher_phase": {k: meta[k] for k in ("date", "device", "torch", "teacher_dtype", "command", "sets")
                          if k in meta} | {"teacher_pack": meta.get("teacher_pack")},
    }

    # (a) passages
    gold = torch.arange(len(sets.passages))
    sp = student_streams(model, sets.passages, device, chunk_tokens, many, "passages")[0]
    sq = student_streams(model, sets.queries, device, chunk_tokens, many, "passage queries")[0]
    tp, tq = temb["passages"], temb["queries"]
    result["passages"] = {
        "n": len(sets.passages), "mean_tokens": float(np.mean([len(p) for p in sets.passages])),
        "mean_query_tokens": float(np.mean([len(q) for q in sets.queries])),
        "mean_cosine_student_teacher": float((sp * tp).sum(-1).mean()),
        "teacher": {k: float(v.mean()) for k, v in recall(tq, tp, gold).items()},
        "student": {k: float(v.mean()) for k, v in recall(sq, sp, gold).items()},
    }

    # (b) long documents
    lengths = np.array([len(x) for x in sets.doc_ids])
    q_gold = torch.tensor(sets.doc_gold)
    q_len = lengths[q_gold.numpy()]
    sq = student_streams(model, sets.doc_queries, device, chunk_tokens, many, "document queries")[0]
    student_streams(model, [sets.doc_ids[0][:chunk_tokens]] * 8, device, chunk_tokens, max_streams, "warm-up")
    s_docs, secs, tokens = student_streams(model, sets.doc_ids, device, chunk_tokens, max_streams, "documents")
    docs = {"student": (sq, s_docs, speed(secs, tokens))}
    if "document" in loaded.roles.available:  # the documents as an index asks for them (role document), queries plain
        docs["student_document"] = (sq, torch.from_numpy(loaded.roles.as_role(s_docs.numpy(), "document")),
                                    speed(secs, tokens))
    # the student read like the teacher: its first window only, and its window embeddings averaged
    e, secs, tokens = student_streams(model, [ids[:CONTENT] for ids in sets.doc_ids], device, chunk_tokens, many,
                                     "documents, first window")
    docs["student_truncated"] = (sq, e, speed(secs, tokens))
    windows, owner = doc_windows(sets.doc_ids)
    e, secs, tokens = student_streams(model, windows, device, chunk_tokens, many, "document windows")
    docs["student_chunks"] = (sq, averaged(e, owner, len(sets.doc_ids)), speed(secs, tokens))
    for name in ("teacher_truncated", "teacher_chunks"):
        docs[name] = (temb["doc_queries"], temb[name], meta["timings"][name])
    methods = {}
    for name, (q_emb, d_emb, timing) in docs.items():
        hits = recall(q_emb, d_emb, q_gold)
        methods[name] = {"recall@1": float(hits["recall@1"].mean()), "recall@10": float(hits["recall@10"].mean()),
                         **timing, "by_length": by_length(hits["recall@10"], q_len)}
    if args.engine:
        config = EngineConfig(max_step_tokens=args.engine_step_tokens or (1 << 18 if cuda else 16384),
                              max_step_streams=512 if cuda else 64,
                              max_chunk_bytes=max(1 << 20, args.engine_chunk_bytes))
        role = "document" if "document" in loaded.roles.available else "query"  # as an index would ask
        emb, secs, tokens = engine_docs(loaded, sets.doc_texts, args.engine_chunk_bytes, config, role)
        direct = docs["student_document" if role == "document" else "student"][1]
        hits = recall(sq, emb, q_gold)
        methods["student_engine"] = {"role": role,
            "recall@10": float(hits["recall@10"].mean()), **speed(secs, tokens),
            "cosine_to_direct": float((emb * direct).sum(-1).mean()),
            "engine_config": {"max_step_tokens": config.max_step_tokens, "max_step_streams": config.max_step_streams,
                              "chunk_bytes": args.engine_chunk_bytes},
            "by_length": by_length(hits["recall@10"], q_len),
        }
    result["long_docs"] = {"docs": len(sets.doc_ids), "queries": len(sets.doc_queries), "tokens": int(lengths.sum()),
                           "min_tokens": int(lengths.min()), "max_tokens": int(lengths.max()),
                           "median_tokens": int(np.median(lengths)), "methods": methods}

    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"quality_{device.type}.json"
    path.write_text(json.dumps(result, indent=1))
    print_table(result)
    print(f"wrote {path}")
    try:
        plot(result, path.with_suffix(".png"))
        print(f"wrote {path.with_suffix('.png')}")
    except ImportError:
        print(f"matplotlib is not installed: draw the PNG later with `python bench/quality.py plot {path}`")


TABLE_ROWS = {
    "student_document": "student, whole doc, role document",
    "student": "student, whole document",
    "student_engine": "student, engine (index's role)",
    "student_chunks": "student, windows averaged",
    "student_truncated": "student, first window",
    "teacher_chunks": "MiniLM-L6, windows averaged",
    "teacher_truncated": "MiniLM-L6, first window",
}


def print_table(result: dict) -> None:
    """Issue 18's table: recall@10 overall and per length bucket, tokens/s; then its acceptance checks."""
    p = result["passages"]
    print(f"\npassages (n={p['n']}): mean cosine student-teacher {p['mean_cosine_student_teacher']:.3f}; "
          f"recall@1/@10 student {p['student']['recall@1']:.3f}/{p['student']['recall@10']:.3f}, "
          f"teacher {p['teacher']['recall@1']:.3f}/{p['teacher']['recall@10']:.3f}")
    ld = result["long_docs"]
    methods = ld["methods"]
    print(f"long documents: {ld['docs']} ({ld['min_tokens']}..{ld['max_tokens']} tokens, median {ld['median_tokens']}),"
          f" {ld['queries']} queries (the teacher is all-MiniLM-L6-v2, the model the student was distilled from)")
    buckets = methods["student"]["by_length"]
    heads = [f"{bucket_name(b)} ({b['queries']}q)" for b in buckets]
    print(f"| {'method':30s} | {'R@10':>6s} | " + " | ".join(f"{h:>13s}" for h in heads) + f" | {'tokens/s':>12s} |")
    print("| --- " * (len(heads) + 3) + "|")
    for name, label in TABLE_ROWS.items():
        if name not in methods:
            continue
        m = methods[name]
        cells = [f"{r['recall@10']:13.3f}" if r["queries"] else f"{'no documents':>13s}" for r in m["by_length"]]
        print(f"| {label:30s} | {m['recall@10']:6.3f} | " + " | ".join(cells) + f" | {m['tokens_per_s']:12,.0f} |")
    empty = [bucket_name(b) for b in buckets if not b["queries"]]
    if empty:
        sets = result["teacher_phase"]["sets"]
        print(f"no held-out document falls in {', '.join(empty)}: the set takes documents of "
              f"{sets['min_doc_tokens']}..{sets['max_doc_tokens']} tokens (the teacher phase's --min-doc-tokens, "
              "--max-doc-tokens)")
    for line in acceptance(result):
        print(line)


def acceptance(result: dict) -> list[str]:
    """Issue 18's acceptance on this result: recall@10 >= the chunk-averaged teacher + 0.02 overall and in each
    bucket from 8k tokens up (the student's documents in the role an index uses: `document` where the model
    ships a document map); passage cosine >= 0.88; passage recall@10 >= the teacher's."""
    methods = result["long_docs"]["methods"]
    row = "student_document" if "student_document" in methods else "student"
    student, teacher = methods[row], methods["teacher_chunks"]
    how = " (documents in role document)" if row == "student_document" else ""
    checks = [(f"recall@10 overall{how}", student["recall@10"], teacher["recall@10"] + ACCEPT_MARGIN)]
    for s, t in zip(student["by_length"], teacher["by_length"], strict=True):
        if s["min_tokens"] >= ACCEPT_FROM_TOKENS and s["queries"]:
            checks.append((f"recall@10 {bucket_name(s)}{how}", s["recall@10"], t["recall@10"] + ACCEPT_MARGIN))
    p = result["passages"]
    checks.append(("passage cosine", p["mean_cosine_student_teacher"], 0.88))
    checks.append(("passage recall@10", p["student"]["recall@10"], p["teacher"]["recall@10"]))
    return [f"{'ok  ' if got >= need else 'MISS'} {what}: {got:.3f} (needs >= {need:.3f})"
            for what, got, need in checks]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="phase", required=True)
    t = sub.add_parser("teacher", help="teacher embeddings and tokens/s (carries the teacher, not the student)")
    s = sub.add_parser("student", help="student embeddings, tokens/s and all metrics (carries the teacher's outputs)")
    for p in (t, s):
        p.add_argument("--data", default=str(ROOT / ".quality" / "heldout"), help="held-out sources (quality_pack)")
        p.add_argument("--device", default="auto")
        p.add_argument("--out-dir", required=True)
    t.add_argument("--teacher", default=str(ROOT / ".quality" / "teacher"))
    t.add_argument("--seed", type=int, default=DEFAULT_SETS["seed"])
    t.add_argument("--passages", type=int, default=DEFAULT_SETS["passages"])
    t.add_argument("--docs", type=int, default=DEFAULT_SETS["docs"],
                   help="at most this many long documents (all if fewer qualify)")
    t.add_argument("--queries-per-doc", type=int, default=DEFAULT_SETS["queries_per_doc"])
    t.add_argument("--min-doc-tokens", type=int, default=DEFAULT_SETS["min_doc_tokens"])
    t.add_argument("--max-doc-tokens", type=int, default=DEFAULT_SETS["max_doc_tokens"])
    s.add_argument("--teacher-out", required=True, help="the teacher phase's --out-dir")
    s.add_argument("--model", default="default", help="MODEL spec (default, a checkpoint folder, ...)")
    s.add_argument("--chunk-tokens", type=int, default=None, help="student stream chunk (default 8192 GPU, 1024 CPU)")
    s.add_argument("--engine", action=argparse.BooleanOptionalAction, default=True, help="also run the engine")
    s.add_argument("--engine-chunk-bytes", type=int, default=65536)
    s.add_argument("--engine-step-tokens", type=int, default=None, help="max_step_tokens (default 2^18 GPU, 16384 CPU)")
    pl = sub.add_parser("plot", help="draw the PNG of recall vs document length from a student-phase JSON")
    pl.add_argument("json")
    pl.add_argument("--png", default=None)
    tb = sub.add_parser("table", help="print the table and acceptance checks of a student-phase JSON")
    tb.add_argument("json")
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    if args.phase == "plot":
        plot(json.loads(Path(args.json).read_text()), Path(args.png or Path(args.json).with_suffix(".png")))
    elif args.phase == "table":
        print_table(json.loads(Path(args.json).read_text()))
    elif args.phase == "teacher":
        teacher_phase(args)
    else:
        student_phase(args)


if __name__ == "__main__":
    main()
