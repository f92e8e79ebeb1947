"""Embedding quality of a streamret model against its teacher (all-MiniLM-L6-v2), on held-out sources.

    python bench/quality.py --data .distill --model default                      # full size (GPU)
    python bench/quality.py --data .distill --model default --passages 200 --docs 20 --device cpu  # smoke
    python bench/quality.py --plot-from bench/results/quality_cuda.json          # PNG from a JSON result

(a) Passages: held-out text cut into passages of whole sentences (<= 254 tokens, the teacher's window);
    one sentence of each is its query and is taken out of the passage. Reports the mean cosine of
    student and teacher embeddings of the same passages, and recall@1/@10 of query -> passage for each.
(b) Long documents of 5k..200k tokens: query passages (64..128 tokens from anywhere in a document;
    they stay in it) -> their document among all documents. Document embeddings: the student's
    whole-stream embedding, the teacher on the first 254 tokens (its window), and the teacher's
    chunk embeddings averaged. Recall@10 overall and by document length, and tokens/s of each on the
    same device; the student both called directly (chunkwise, state carried) and through the engine.

The data folder comes from `python -m streamret.train.prepare`; teacher weights live there too.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import re
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from streamret.model.spec import load_model  # noqa: E402
from streamret.train.prepare import read_source  # noqa: E402
from streamret.train.teacher import CONTENT, load_teacher  # noqa: E402

LENGTH_BINS = (5_000, 10_000, 20_000, 50_000, 200_001)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z(\"'])|\n\s*\n")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


# ----------------------------------------------------------------------------------------------
# data


def held_out_docs(data: Path, encode) -> list[tuple[str, str, list[int]]]:
    manifest = json.loads((data / "manifest.json").read_text())
    names = [n for n, s in manifest["sources"].items() if s["split"] == "eval"]
    docs = []
    for name in names:
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
                    candidates = [i for i, r in enumerate(run) if 8 <= len(r) <= 64]
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
    vocab = tokenizer._tok.get_vocab()
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
    windows, owner = [], []
    for d, ids in enumerate(doc_ids):
        for s in range(0, len(ids), CONTENT):
            windows.append(ids[s : s + CONTENT])
            owner.append(d)
    e, secs, tokens = teacher_embed(teacher, windows, device, batch_tokens)
    sums = torch.zeros(len(doc_ids), e.shape[1]).index_add_(0, torch.tensor(owner), e)
    return F.normalize(sums, dim=-1), secs, tokens


@torch.no_grad()
def student_streams(model, seqs: list[list[int]], device, chunk_tokens: int, max_streams: int):
    """Whole-sequence embeddings, read as streams: each step appends the next chunk of every open stream."""
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
            if len(live) < len(group):
                state.copy_into(live, new)
            else:
                state = new
        out[torch.tensor(group)] = model.stream_embedding(state).cpu()
    sync(device)
    return out, time.perf_counter() - t, sum(map(len, seqs))


def engine_docs(loaded, texts: list[str], chunk_bytes: int):
    """Whole-document embeddings through the engine: each document one stream, appended in chunks."""
    from streamret.engine.engine import Engine

    engine = Engine(loaded)
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
        out = torch.tensor(np.stack([engine.embedding(f"doc{d}") for d in range(len(texts))]))
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
    rows = []
    for lo, hi in zip(LENGTH_BINS[:-1], LENGTH_BINS[1:]):
        m = (lengths >= lo) & (lengths < hi)
        if m.any():
            rows.append({"min_tokens": lo, "max_tokens": hi - 1, "queries": int(m.sum()),
                         "recall@10": float(hits[m].mean())})
    return rows


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4))
    for name, label in [("student", "streamret student (whole document)"),
                        ("teacher_chunks", "teacher, chunk embeddings averaged"),
                        ("teacher_truncated", "teacher, first 256 tokens")]:
        rows = result["long_docs"]["methods"][name]["by_length"]
        x = [math.sqrt(r["min_tokens"] * r["max_tokens"]) for r in rows]
        ax.plot(x, [100 * r["recall@10"] for r in rows], marker="o", label=label)
    ax.set_xscale("log")
    ax.set_xlabel("document length (tokens)")
    ax.set_ylabel("recall@10 (%)")
    ax.set_ylim(0, 100)
    n = result["long_docs"]["docs"]
    ax.set_title(f"passage -> source document, {n} held-out documents ({result['device']})")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


# ----------------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT / ".distill"))
    ap.add_argument("--model", default="default", help="MODEL spec (default, a checkpoint folder, ...)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--passages", type=int, default=2000)
    ap.add_argument("--docs", type=int, default=400, help="at most this many long documents (all if fewer qualify)")
    ap.add_argument("--queries-per-doc", type=int, default=3)
    ap.add_argument("--min-doc-tokens", type=int, default=5000)
    ap.add_argument("--max-doc-tokens", type=int, default=200000)
    ap.add_argument("--chunk-tokens", type=int, default=None, help="student stream chunk (default 8192 GPU, 1024 CPU)")
    ap.add_argument("--engine", action=argparse.BooleanOptionalAction, default=True, help="also time the engine")
    ap.add_argument("--engine-chunk-bytes", type=int, default=65536)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="JSON result (default bench/results/quality_<device>.json)")
    ap.add_argument("--plot", default=None, help="PNG of recall vs document length (default beside the JSON)")
    ap.add_argument("--plot-from", default=None, help="only draw the PNG from an existing JSON result")
    args = ap.parse_args()
    if args.plot_from:
        src = Path(args.plot_from)
        plot(json.loads(src.read_text()), Path(args.plot or src.with_suffix(".png")))
        return

    loaded = load_model(args.model, args.device)
    model, tok, device = loaded.model, loaded.tokenizer, loaded.model.device
    cuda = device.type == "cuda"
    teacher = load_teacher(Path(args.data) / "teacher", device, torch.float16 if cuda else torch.float32)
    batch_tokens = 1 << 18 if cuda else 1 << 13
    chunk_tokens = args.chunk_tokens or (8192 if cuda else 1024)
    max_streams = 256 if cuda else 16
    rng = np.random.default_rng(args.seed)
    docs = held_out_docs(Path(args.data), tok.encode)
    result: dict = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"), "model": args.model,
        "device": torch.cuda.get_device_name() if cuda else f"cpu ({platform.processor() or platform.machine()}, "
                                                               f"{torch.get_num_threads()} threads)",
        "torch": torch.__version__, "dtype": str(model.dtype), "teacher_dtype": str(teacher.word.weight.dtype),
        "command": " ".join(sys.argv),
    }

    # (a) passages
    pairs = make_passages(docs, tok.encode, args.passages, rng)
    passages, queries = [p for p, _ in pairs], [q for _, q in pairs]
    gold = torch.arange(len(pairs))
    tp, _, _ = teacher_embed(teacher, passages, device, batch_tokens)
    tq, _, _ = teacher_embed(teacher, queries, device, batch_tokens)
    sp, _, _ = student_streams(model, passages, device, chunk_tokens, 4096 if cuda else 256)
    sq, _, _ = student_streams(model, queries, device, chunk_tokens, 4096 if cuda else 256)
    result["passages"] = {
        "n": len(pairs), "mean_tokens": float(np.mean([len(p) for p in passages])),
        "mean_query_tokens": float(np.mean([len(q) for q in queries])),
        "mean_cosine_student_teacher": float((sp * tp).sum(-1).mean()),
        "teacher": {k: float(v.mean()) for k, v in recall(tq, tp, gold).items()},
        "student": {k: float(v.mean()) for k, v in recall(sq, sp, gold).items()},
    }
    print(json.dumps({"passages": result["passages"]}), flush=True)

    # (b) long documents
    long_docs = [d for d in docs if args.min_doc_tokens <= len(d[2]) <= args.max_doc_tokens]
    if len(long_docs) > args.docs:
        long_docs = [long_docs[i] for i in sorted(rng.choice(len(long_docs), args.docs, replace=False))]
    doc_ids = [d[2] for d in long_docs]
    lengths = np.array([len(x) for x in doc_ids])
    qs = make_doc_queries(doc_ids, args.queries_per_doc, rng, word_start_table(tok))
    q_gold = torch.tensor([d for d, _ in qs])
    q_len = lengths[q_gold.numpy()]
    tq, _, _ = teacher_embed(teacher, [q for _, q in qs], device, batch_tokens)
    sq, _, _ = student_streams(model, [q for _, q in qs], device, chunk_tokens, 4096 if cuda else 256)
    methods = {}
    student_streams(model, [doc_ids[0][:chunk_tokens]], device, chunk_tokens, max_streams)  # warm-up
    teacher_embed(teacher, [doc_ids[0][:CONTENT]], device, batch_tokens)
    runs = {
        "student": (sq, lambda: student_streams(model, doc_ids, device, chunk_tokens, max_streams)),
        "teacher_truncated": (tq, lambda: teacher_docs(teacher, doc_ids, device, batch_tokens, truncate=True)),
        "teacher_chunks": (tq, lambda: teacher_docs(teacher, doc_ids, device, batch_tokens, truncate=False)),
    }
    for name, (q_emb, run) in runs.items():
        emb, secs, tokens = run()
        hits = recall(q_emb, emb, q_gold)
        methods[name] = {"recall@1": float(hits["recall@1"].mean()), "recall@10": float(hits["recall@10"].mean()),
                         "tokens_read": int(tokens), "seconds": secs, "tokens_per_s": tokens / secs,
                         "by_length": by_length(hits["recall@10"], q_len)}
        if name == "student":
            student_docs = emb
    if args.engine:
        try:
            emb, secs, tokens = engine_docs(loaded, [d[1] for d in long_docs], args.engine_chunk_bytes)
        except ImportError as e:
            methods["student_engine"] = {"skipped": f"engine not importable: {e}"}
        else:
            hits = recall(sq, emb, q_gold)
            methods["student_engine"] = {
                "recall@10": float(hits["recall@10"].mean()), "tokens_read": int(tokens), "seconds": secs,
                "tokens_per_s": tokens / secs, "cosine_to_direct": float((emb * student_docs).sum(-1).mean()),
            }
    result["long_docs"] = {"docs": len(long_docs), "queries": len(qs), "tokens": int(lengths.sum()),
                           "min_tokens": int(lengths.min()), "max_tokens": int(lengths.max()),
                           "median_tokens": int(np.median(lengths)), "methods": methods}
    print(json.dumps({"long_docs": {k: v for k, v in result["long_docs"].items() if k != "methods"}}), flush=True)
    for name, m in methods.items():
        print(name, json.dumps({k: v for k, v in m.items() if k != "by_length"}), flush=True)

    out = Path(args.out or ROOT / "bench" / "results" / f"quality_{device.type}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"wrote {out}")
    try:
        plot(result, Path(args.plot or out.with_suffix(".png")))
    except ImportError:
        print("matplotlib is not installed: draw the PNG later with --plot-from", out)


if __name__ == "__main__":
    main()
