"""End to end: the model's packed forward, the engine, the gRPC service and the batch job, in one run,
on the same real English text, each as a ratio to the packed forward (issue 14).

    source bench/device_env.sh; python3 bench/e2e.py --out $OUT      # the GPU machine (a few minutes)
    python bench/e2e.py --smoke                                      # the whole pipeline on the CPU, tiny

Text: English text that is on the machine, never random tokens: --text FILE|DIR if given (only that),
else the manual pages under /usr/share/man (largest first), else Python's help topics (pydoc_data), else this
repository's Markdown (bench/text_path.py's corpus), until --text-mb; the run stops with an error
when less than --min-text-kb is found. The text is tokenized once by the model's tokenizer (token
counts in the JSON); every part below reads it, each stream or document from its own offset (wrapping).

Parts (--parts, in this order; one engine serves all of them):
  packed   the model's forward alone (fresh states, no text handling) on packed batches of the text's
           tokens, B sequences x T tokens with B x T = the engine's step budget (--step-tokens), for
           T in --packed-lens, eager and (on a GPU) replayed from CUDA graphs as the engine runs its
           steps; the best of them is the reference every other part is divided by ("x packed"; "x eager":
           by the best eager one, the reference of session 20 and before, which the host's launches bound
           at this size, so that it moved 2x with the host's load). The shapes of issue 14's figures
           (B64 x T512, B256 x T256) are timed too, eager, for the record.
           It runs in this process before the engine starts.
  The engine: in this process (--engine-procs 1, the default here) or, as `streamret serve` runs on a GPU,
           --engine-procs engine processes (auto, or a count; streamret/engine/shards.py), each with its own
           model; "py us/tok" is then this process's share, and the JSON's cpu_us_per_token.engine_procs
           the engine processes' CPU per token.
  engine   submit_append from this process with --streams streams (e.g. 64 and 1,024), --chunk-bytes
           chunks of the text, --window chunks in flight per stream (bench/service.py's run_engine)
  profile  the first engine part again (a quarter of its chunks) under the torch profiler, CPU and CUDA
           activity: e2e_profile.txt holds the top ops by device and by host time, the JSON the device's
           busy share of the wall time (profiler overhead included; not a throughput figure)
  service  the same workload through the gRPC server on loopback (BackgroundServer in this process, and with
           --front-procs F above 1 F-1 front processes on the same port: streamret/service/fronts.py; their CPU
           is cpu_us_per_token.front_procs), load from --procs client processes (bench/service.py's
           run_service): at saturation, then at --load-fraction of the saturation chunk rate; ack latency
           p50/p99 for both, and the ack's time split into legs between the client's, the server's and the
           engines' stamps of each chunk (the JSON's ack_legs, printed after the table: p50/p99/max ms of each
           leg, and the leg that dominates the slowest 1% of chunks; streamret/service/ack_legs.py; with several
           fronts the legs are front 0's chunks only)
  batch    embed_parquet on two Parquet files cut from the text (bench/batch.py's run_batch; parts of
           --part-bytes): long documents (--long-docs of about --long-tokens) and short ones (--short-docs of
           at most --short-tokens, counted by the tokenizer on each whole document)
Host cores: the host's cores busy on average during an engine or service part, of all its cores (every process:
engines, fronts, the load processes, whose own CPU is cpu_us_per_token.client_procs): near all of them, the part
was bound by the host's CPU, not by the GPU or the service's design.
Sizes: every engine and service part sends about --tokens tokens (chunks per stream follow from it). At the
default, 3e7, the start (every stream's first chunks at once) and the end are still much of an engine part: on
the H200 the 1,024 streams read 5.5-7.3 M tokens/s at 3e7 and 8.1-8.4 M at 1e8, and one configuration read up
to 14-20% apart within one call at 3e7 (bench/RESULTS.md, session 24); compare engine settings at --tokens 1e8.
Streams per step: the streams of the engine's steps during a part, summed, / its steps (engine stats);
model / host ms per step: the step loop's own clocks (launch + wait for results / everything else); after the
table, each part's ms a step by part of the loop, wall / the step thread's CPU (loop_parts_cpu_ms_per_step), and
with --step-samples MS where the step threads and each engine's first tokenize thread were, by line
(STREAMRET_STEP_SAMPLES in every engine).
In the JSON, per part: engine_item_ms (p50/p99 ms of an item from accepted to queued, the tokenize stage, of it from
accepted to its batch's start and that batch's cutting, and from queued to applied), for the engine parts load_legs_ms
(the load's own: an ack to the stream's next chunk sent, and a submit_append call) and ack_legs (a chunk's round trip by
leg: the load's stamps, the pipe's with engine processes, the engine's; printed after the table), the engine processes'
CPU by thread role, and for the service parts the server's and the load processes' garbage-collector pauses: what the
ack latency is made of; for every engine, service and batch part tokenize_calls (the tokenize stage's cutting calls,
each a tokenizer process call with tokenize processes: items and KB a call, and a histogram of items a call);
for the batch parts a timeline (the job's call in 20 bins: chunks applied and documents under way in each, from
the engines' applied stamps, with when the documents were handed to the engine processes and when their last
results came back; printed after the table): a slow start or a tail with few documents shows there;
for the engine and service parts "idle" (the engines' step loops waiting for work with no step in flight, as a
share of their time in 20 bins of the load's span; printed after the table): an engine starved mid-run shows in
every bin, one idle only while the load starts and ends at its ends.

Writes DIR/e2e.json (DIR: --out, else $OUT, else .) after every part, and prints a table last.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import platform
import re
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from streamret.engine import Engine, EngineConfig
    from streamret.model.graphs import GraphedForward
    from streamret.model.retnet import RetNet
    from streamret.model.spec import LoadedModel
    from streamret.model.tokenizer import Tokenizer
    from streamret.service.server import BackgroundServer

# Light imports only up here: the service part's client processes start by importing this file.
BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))  # this checkout's streamret, not an installed one
sys.path.insert(1, str(BENCH))  # bench/service.py, bench/batch.py, bench/engine.py, bench/text_path.py
from text_file import read_text_file  # noqa: E402  (bench/text_file.py)

PARTS = ("packed", "engine", "service", "batch", "profile")
MAN_DIR = Path("/usr/share/man")

# ------------------------------------------------------------------------------------------------
# real text

# roff escapes: fonts and sizes, named characters, strings, number registers, zero-width marks
_ROFF_NAMED = {"em": "\u2014", "en": "\u2013", "hy": "-", "aq": "'", "dq": '"', "lq": '"', "rq": '"', "oq": "'",
               "cq": "'", "bu": "*", "co": "(C)", "rg": "(R)", "tm": "(TM)", "mu": "x", "<=": "<=", ">=": ">=",
               "ga": "`", "ti": "~", "ha": "^", "rs": "\\", "ba": "|", "or": "|", "pl": "+", "mi": "-"}
_ROFF_ESCAPE = re.compile(r"\\(\(..|\[[^\]]*\]|\*\(..|\*\[[^\]]*\]|\*.|f\(..|f\[[^\]]*\]|f.|s[-+]?\d+|"
                          r"n\(..|n\[[^\]]*\]|n.|[-e&c|^/,%0 ~'`\\.]|.)")
_ALTERNATING_MACROS = {"BR", "BI", "IB", "IR", "RB", "RI"}
_FONT_MACROS = {"B", "I", "SB", "SM", "IP", "SH", "SS", *_ALTERNATING_MACROS}
_PARAGRAPH_MACROS = {"PP", "LP", "P", "TP", "IP", "SH", "SS", "sp", "br", "HP", "RS", "RE", "Pp", "Sh", "Ss"}


def _roff_escape(m: re.Match[str]) -> str:
    e = m.group(1)
    if e.startswith("(") or e.startswith("["):
        return _ROFF_NAMED.get(e[1:].rstrip("]"), "")
    if e == "-" or e == "e":
        return "-" if e == "-" else "\\"
    if e == "\\":
        return "\\"
    if e in (" ", "~", "0"):
        return " "
    if e in ("'", "`"):
        return e
    return ""  # fonts, sizes, strings, registers, \& \c \| \^ \/ \, \%


def roff_to_text(source: str) -> str:
    """The prose of a manual page's roff source: text lines and the words of font and heading
    macros, escapes resolved, paragraphs at paragraph macros; tables, comments and macro
    definitions left out."""
    paragraphs: list[list[str]] = [[]]
    skip_until = None
    for line in source.splitlines():
        if skip_until:
            if line.startswith(skip_until):
                skip_until = None
            continue
        if line.startswith((".\\\"", "'\\\"", ".\\#")) or line.strip() in (".", "'"):
            continue
        if line.startswith((".", "'")):
            name, _, rest = line[1:].strip().partition(" ")
            if name in ("TS", "EQ", "PS", "ig", "am") or name.startswith("de"):
                skip_until = {"TS": ".TE", "EQ": ".EN", "PS": ".PE"}.get(name, "..")
                continue
            if name in _PARAGRAPH_MACROS and paragraphs[-1]:
                paragraphs.append([])
            if name in _FONT_MACROS and rest:
                words = [w.strip('"') for w in re.findall(r'"[^"]*"|\S+', rest)]
                # B, I, SH ... set their words in one font; BR, IR ... alternate fonts with no space between
                if name == "IP":
                    words = words[:1]
                joined = "".join(words) if name in _ALTERNATING_MACROS else " ".join(words)
                paragraphs[-1].append(_ROFF_ESCAPE.sub(_roff_escape, joined))
                if name in ("SH", "SS"):
                    paragraphs.append([])
            continue
        text = _ROFF_ESCAPE.sub(_roff_escape, line).strip()
        if text:
            paragraphs[-1].append(text)
        elif paragraphs[-1]:
            paragraphs.append([])
    return "\n\n".join(" ".join(p) for p in paragraphs if p)


def _read(path: Path) -> str:
    raw = read_text_file(path)
    text = raw.decode("utf-8", errors="replace")
    if re.search(r"^\.(TH|SH|Dd|Sh) ", text, re.M):  # roff source (a manual page)
        text = roff_to_text(text)
    return text


def _man_pages() -> list[Path]:
    """English manual pages (sections 1 to 9, not the translations), largest first."""
    pages = [p for d in sorted(MAN_DIR.glob("man[1-9]*")) for p in d.iterdir() if p.is_file()]
    return sorted(pages, key=lambda p: (-p.stat().st_size, str(p)))


def find_text(paths: list[str], target_bytes: int, min_bytes: int) -> tuple[str, list[dict]]:
    """About target_bytes of English text: from `paths` alone if any, else from the sources in the
    module doc, in order; stops with an error when there is less than min_bytes. Returns the text
    and what each source gave."""
    docs: list[str] = []
    used: list[dict] = []
    size = 0

    def take(name: str, named_texts: Iterable[tuple[str, str]]) -> None:  # (document name, text) pairs
        nonlocal size
        names, n_bytes = [], 0
        for doc, text in named_texts:
            if size >= target_bytes:
                break
            text = text.strip()
            if len(text) < 200:  # a redirect (.so) or an empty page
                continue
            data = text.encode()[: target_bytes - size]
            docs.append(data.decode("utf-8", errors="ignore"))
            names.append(doc)
            n_bytes += len(data)
            size += len(data) + 2  # and the blank line between documents
        if names:
            used.append({"source": name, "documents": len(names), "bytes": n_bytes, "names": names[:200]})

    for given in paths:
        p = Path(given)
        if not p.exists():
            raise SystemExit(f"--text {given}: no such file or folder")
        files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
        take(f"--text {given}", ((str(f), _read(f)) for f in files))
    if not paths and MAN_DIR.is_dir():
        take(f"manual pages ({MAN_DIR}/man*, largest first)", ((p.name, _read(p)) for p in _man_pages()))
    if not paths and size < target_bytes:
        try:
            from pydoc_data.topics import topics
        except ImportError:
            topics = {}
        take("Python's help topics (pydoc_data.topics)", ((k, topics[k]) for k in sorted(topics)))
    if not paths and size < target_bytes:
        import text_path  # bench/text_path.py: this repository's Markdown

        markdown = text_path.corpus(target_bytes - size).decode("utf-8", errors="replace")
        again = markdown.find(markdown[:2000], 1)  # corpus() repeats its files up to the size asked: once is enough
        take("this repository's Markdown (bench/text_path.py corpus)",
             [("README.md, docs/*.md, bench/*.md", markdown[:again] if again > 0 else markdown)])
    if size < min_bytes:
        where = f"--text {' '.join(paths)}" if paths else f"{MAN_DIR}, pydoc_data and the repository's Markdown"
        raise SystemExit(f"found only {size:,} bytes of English text (need --min-text-kb {min_bytes // 1024}) in "
                         f"{where}. Pass --text FILE_OR_FOLDER with more English text; this benchmark never falls "
                         "back to random tokens")
    return "\n\n".join(docs)[:target_bytes], used


def tokenize(tokenizer: Tokenizer, text: str, piece_chars: int = 1 << 16) -> list[int]:
    """The text's token ids, tokenized in pieces of about piece_chars cut at paragraph ends."""
    pieces, start = [], 0
    while start < len(text):
        end = text.find("\n\n", start + piece_chars)
        end = len(text) if end < 0 else end + 2
        pieces.append(text[start:end])
        start = end
    return [t for ids in tokenizer.encode_batch(pieces) for t in ids]


def windows(text: str, n: int, n_chars: int) -> list[str]:
    """n stretches of n_chars characters of the text, one after the other, wrapping around."""
    doubled = text * (n_chars // len(text) + 2)
    starts = [i * n_chars % len(text) for i in range(n)]
    return [doubled[s : s + n_chars] for s in starts]


def at_most(tokenizer: Tokenizer, docs: list[str], max_tokens: int) -> tuple[list[str], list[int]]:
    """The documents, each cut (from its end) to at most max_tokens tokens, and their token counts."""
    counts = [len(x) for x in tokenizer.encode_batch(docs)]
    for _ in range(8):
        over = [i for i, n in enumerate(counts) if n > max_tokens]
        if not over:
            break
        for i in over:
            docs[i] = docs[i][: int(len(docs[i]) * max_tokens / counts[i] * 0.97)]
        for i, ids in zip(over, tokenizer.encode_batch([docs[i] for i in over]), strict=True):
            counts[i] = len(ids)
    return docs, counts


# ------------------------------------------------------------------------------------------------
# parts


def sync(device: torch.device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def packed_forward(model: RetNet, ids: torch.Tensor, batch: int, length: int, seconds: float, chunk_size: int,
                   graphed: GraphedForward | None = None) -> dict:
    """The model's forward alone on [batch x length] packed sequences of the text's tokens (fresh
    states), as often as fits in `seconds` (at least 3 calls, after 2 untimed). graphed: replayed from
    that GraphedForward's CUDA graph of the shape (what the engine's steps run), else the eager forward."""
    import torch

    n = batch * length
    reps = -(-4 * n // ids.numel())
    flat = ids.repeat(reps) if reps > 1 else ids
    inputs = [flat[i * n : (i + 1) * n] for i in range(min(4, flat.numel() // n))]
    if graphed is None:
        cu = torch.arange(0, n + 1, length)  # on the host, as the engine passes it

        def forward(x: torch.Tensor) -> None:
            model(x, cu_seqlens=cu, chunk_size=chunk_size)
    else:  # inputs and fresh states on the device; the output state in the graph's alternating buffers
        cu = torch.arange(0, n + 1, length, dtype=torch.int32, device=model.device)
        state = model.init_state(batch, model.device)

        def forward(x: torch.Tensor) -> None:
            graphed(x, cu, state, clone_hidden=False, fresh_state=False)
    with torch.inference_mode():
        for x in inputs[:2]:
            forward(x)
        sync(model.device)
        calls, t0 = 0, time.perf_counter()
        while calls < 3 or time.perf_counter() - t0 < seconds:
            forward(inputs[calls % len(inputs)])
            calls += 1
            if calls % 8 == 0:
                sync(model.device)
        sync(model.device)
        dt = time.perf_counter() - t0
    return {"shape": f"B{batch}xT{length}" + (" graphed" if graphed is not None else ""),
            "graphed": graphed is not None, "tokens": calls * n, "seconds": round(dt, 4),
            "tokens_per_s": round(calls * n / dt, 1)}


def items_between(before: dict, after: dict) -> list[tuple]:
    """The items the engine applied between two stats() snapshots (each engine remembers its last 2,048: its
    recent_items, stamped on the host's monotonic clock, the same in every engine process)."""
    start = max((t for t, *_ in before.get("recent_items") or []), default=float("-inf"))
    return [item for item in after.get("recent_items") or [] if item[0] > start]


def steps_between(before: dict, after: dict) -> dict:
    """The engine's steps between two stats() snapshots: count, tokens and streams per step."""
    from streamret.engine.core import STEP_THREAD
    from streamret.engine.tokenize_stage import THREAD_NAME
    from streamret.stack_sampler import counts_between, summarize

    tokenize_thread = THREAD_NAME.format(0)  # (stats()["tokenize_samples"] samples the stage's first thread)

    steps = after["steps"] - before["steps"]

    def ms_per_step(key: str) -> float:
        return round(1e3 * (after[key] - before[key]) / max(1, steps), 3)

    tokens = after["tokens_processed"] - before["tokens_processed"]
    cpu0, cpu1 = before.get("thread_cpu_seconds") or {}, after.get("thread_cpu_seconds") or {}
    # where the time of the items applied since `before` went inside the engine
    import numpy as np

    # (of the tokenize stage's ms: waiting for a thread's batch to begin, and that batch's cutting; NaN for an item
    # the stage did not cut)
    items = np.array([(a, b, np.nan if w is None else w, np.nan if c is None else c)
                      for _, a, b, _, _, w, c in items_between(before, after)], dtype=np.float64).reshape(-1, 4)
    item_ms = {"items": len(items)} if not len(items) else {
        "items": len(items), **{f"{name}_p{q}": round(float(np.percentile(items[:, k], q)), 2)
                                for k, name in enumerate(("tokenize", "queued_to_applied")) for q in (50, 99)},
        **{f"{name}_p{q}": round(float(np.nanpercentile(items[:, k], q)), 2)
           for k, name in ((2, "stage_wait"), (3, "cutting")) if not np.isnan(items[:, k]).all() for q in (50, 99)}}
    # STREAMRET_LOCK_PROFILE=1: the engine lock's holders in the part (streamret/engine/lock_profile.py), the
    # 10 that held it longest, summed over engines: who the step loop's "lock" wait waited for
    sites0, sites1 = before.get("lock_sites") or {}, after.get("lock_sites") or {}
    held = {site: {k: round(v - sites0.get(site, {}).get(k, 0), 4) if k != "max_held_s" else round(v, 4)
                   for k, v in book.items()} for site, book in sites1.items()}
    lock_sites = dict(sorted(held.items(), key=lambda kv: -kv[1]["held_s"])[:10])
    # the step loop's own clocks: model = launching a step plus waiting for its results; host = the rest
    return {"steps": steps,
            **({"mps": after["mps"]} if "mps" in after else {}),  # engine processes on their own MPS daemon
            **({"lock_sites": lock_sites} if lock_sites else {}),
            # CPU of the engine's threads by role (engine processes: all of theirs, summed) per token it ran
            "engine_cpu_us_per_token_by_thread": {k: round(1e6 * (v - cpu0.get(k, 0.0)) / max(1, tokens), 3)
                                                  for k, v in cpu1.items()},
            "tokens_per_step": round(tokens / max(1, steps), 1),
            # ms from accepted to queued (the tokenize stage, its wait included) and from queued to applied
            # (waiting for a step, the step, booking), p50 / p99 over the part's items
            "engine_item_ms": item_ms,
            "streams_per_step": round((after["step_streams"] - before["step_streams"]) / max(1, steps), 2),
            # the tokenize stage's cutting calls (a tokenizer process call each, all engines): how many chunks a call
            # holds, which says whether a call's fixed cost or the per-chunk cost (the sentence cuts) weighs more
            "tokenize_calls": tokenize_calls_between(before, after),
            # issue 14's ">= 64 streams a step whenever >= 64 have work": of the steps planned while >= 64 streams
            # had work queued (or could be picked: not in the step still running), how many ran fewer than 64
            **{f"wide_steps_{k}": dict(zip(("steps", "narrower"), (a - b for a, b in zip(
                after.get(f"wide_steps_{k}") or [0, 0], before.get(f"wide_steps_{k}") or [0, 0]))))
               for k in ("waiting", "runnable")},
            "loop_model_ms_per_step": ms_per_step("loop_model_seconds"),
            "loop_host_ms_per_step": ms_per_step("loop_host_seconds"),
            "cuda_graph_captures": after.get("cuda_graph_captures", 0) - before.get("cuda_graph_captures", 0),
            # the garbage collector (all engine processes): pauses in the part, and the longest since start
            "gc_collections": after.get("gc_collections", 0) - before.get("gc_collections", 0),
            "gc_pause_ms": round(1e3 * (after.get("gc_pause_seconds", 0) - before.get("gc_pause_seconds", 0)), 1),
            "gc_pause_max_ms_since_start": round(1e3 * after.get("gc_pause_max_seconds", 0), 1),
            **{f"loop_parts{clock}_ms_per_step": {
                k: round(1e3 * (v - before.get(f"loop_parts{clock}_seconds", {}).get(k, 0.0)) / max(1, steps), 3)
                for k, v in after.get(f"loop_parts{clock}_seconds", {}).items()}
               for clock in ("", "_cpu")},  # wall, and the step thread's CPU in the same spans
            # --step-samples: where the step threads and the first tokenize thread of each engine were, sampled
            # (all engines), during the part
            **{key: summarize(between, 25, thread) for key, thread in (("step_samples", STEP_THREAD),
                                                                        ("tokenize_samples", tokenize_thread))
               if (between := counts_between(before.get(key), after.get(key)))}}


def tokenize_calls_between(before: dict, after: dict) -> dict:
    """The tokenize stage's cutting calls between two stats() snapshots: their number, the items (chunks, and a
    stream's flush or close) and KB a call, and the histogram of items a call (1, 2, 3-4, 5-8, ...)."""
    calls = after.get("tokenize_calls", 0) - before.get("tokenize_calls", 0)
    items = after.get("tokenize_call_items", 0) - before.get("tokenize_call_items", 0)
    kb = (after.get("tokenize_call_bytes", 0) - before.get("tokenize_call_bytes", 0)) / 1024
    buckets = [a - b for a, b in itertools.zip_longest(after.get("tokenize_call_items_buckets") or [],
                                                        before.get("tokenize_call_items_buckets") or [], fillvalue=0)]
    return {"calls": calls, "items_per_call": round(items / max(1, calls), 2),
            "kb_per_call": round(kb / max(1, calls), 1), "items_buckets": buckets}


def run_part(results: dict, name: str, fn: Callable[[], Any], save: Callable[[], None], record: bool = True) -> Any:
    """Run one measurement (or a step: record=False keeps its return value out of the results); an
    error is recorded and the run goes on to the next part."""
    print(f"--- {name} {time.strftime('%H:%M:%S')}", flush=True)
    try:
        row = fn()
    except Exception as e:  # noqa: BLE001  (recorded; the other parts still run)
        import traceback

        traceback.print_exc()
        results["errors"][name] = f"{type(e).__name__}: {e}"
        save()
        return None
    if record:
        results["parts"][name] = row
        save()
        print(json.dumps(row), flush=True)
    return row


def part_packed(config: EngineConfig, model: RetNet, ids: torch.Tensor, args: argparse.Namespace) -> dict:
    """The reference: the best tokens/s over the step-budget shapes, eager and (on a GPU, as the engine runs
    its steps) replayed from CUDA graphs; the issue's shapes, eager, for the record."""
    shapes = [(max(1, args.step_tokens // t), t) for t in args.packed_lens]
    rows = [packed_forward(model, ids, b, t, args.packed_seconds, config.chunk_size) for b, t in shapes]
    if model.device.type == "cuda" and config.cuda_graphs:
        import torch

        from streamret.model.graphs import GraphedForward

        graphed = GraphedForward(model, chunk_size=config.chunk_size)
        rows += [packed_forward(model, ids, b, t, args.packed_seconds, config.chunk_size, graphed) for b, t in shapes]
        del graphed
        torch.cuda.empty_cache()  # its graphs' memory back to the device before the engine processes start
    extra = [packed_forward(model, ids, b, t, args.packed_seconds, config.chunk_size)
             for b, t in args.packed_extra if (b, t) not in shapes]
    best = max(rows, key=lambda r: r["tokens_per_s"])
    eager = max((r for r in rows if not r["graphed"]), key=lambda r: r["tokens_per_s"])
    return {"tokens_per_s": best["tokens_per_s"], "shape": best["shape"], "step_tokens": args.step_tokens,
            "eager_tokens_per_s": eager["tokens_per_s"], "eager_shape": eager["shape"],
            "step_budget_shapes": rows, "other_shapes": extra}


def part_engine(engine: Engine, streams: int, chunks: int, args: argparse.Namespace, tag: str = "engine") -> dict:
    """Engine.submit_append from this process, --window chunks in flight per stream."""
    import service as service_bench  # bench/service.py
    from cpu_threads import cpu_between, host_cores_busy, host_cores_stolen, host_cpu_sample, thread_cpu_s, us_per_token

    ns = argparse.Namespace(streams=streams, chunks=chunks, chunk_bytes=args.chunk_bytes, window=args.window)
    before, cpu0, host0 = engine.stats(), thread_cpu_s(engine), host_cpu_sample()
    row = service_bench.run_engine(engine, ns, f"{tag}{streams}", stamps=True)
    after, cpu1, host1 = engine.stats(), thread_cpu_s(engine), host_cpu_sample()
    stamps = row.pop("chunk_stamps")
    # the load's own span (its first chunk sent to its last ack), not the streams' opening and closing around it
    began = min(t for *_, t in stamps["client_sent"])
    ended = max(t for *_, t in stamps["client_received"])
    row["ack_legs"] = chunk_round_trip(engine, stamps, after)
    # the Python threads share the GIL: their CPU us per token, summed, bounds tokens/s (bench/cpu_threads.py)
    cpu_us = us_per_token(cpu_between(cpu0, cpu1), row["tokens"]) if cpu0 else {}
    return {**row, "chunks_per_stream": chunks, "chunk_bytes": args.chunk_bytes, "window": args.window,
            "cpu_us_per_token": cpu_us, "host_cores_busy": host_cores_busy(host0, host1), "host_cores": os.cpu_count(),
            "host_cores_stolen": host_cores_stolen(host0, host1), "idle": idle_timeline(after, began, ended),
            **steps_between(before, after), "recent": service_bench.step_summary(before, after)}


def idle_timeline(stats: dict, start: float, end: float, bins: int = 20) -> dict:
    """The engines' step loops waiting for work with no step in flight (stats' recent_idle: began at, seconds, on
    the host's monotonic clock; each engine keeps its last 4,096), over [start, end] in `bins` equal bins: the
    share of the engines' time idle in each bin, and in all. An engine starved mid-run (its chunks elsewhere: the
    load, the pipes, the tokenize stage) shows in every bin; one idle only while a part starts and ends, at its
    ends. (The waits that run past the stats' reading are not in them.)"""
    import numpy as np

    engines = max(1, int(stats.get("engine_procs") or 1))
    width = max(end - start, 1e-9) / bins
    edges = start + width * np.arange(bins + 1)
    idle = np.zeros(bins)
    for began, seconds in stats.get("recent_idle") or []:
        lo, hi = max(began, start), min(began + seconds, end)
        if hi > lo:  # the wait's overlap with each bin
            idle += np.clip(np.minimum(edges[1:], hi) - np.maximum(edges[:-1], lo), 0, None)
    share = idle / (engines * width)
    return {"bin_ms": round(1e3 * width, 2), "engines": engines, "share": [round(float(x), 3) for x in share],
            "overall": round(float(share.mean()), 3)}


def chunk_round_trip(engine: Engine, load_stamps: dict, stats: dict) -> dict:
    """A chunk's round trip in an engine part, by leg (streamret/service/ack_legs.py): the load's stamps (sent,
    ack arrived), the engine's (accepted, tokenized and queued, applied: the last 2,048 items of each
    engine, so the legs cover the end of the part) and, with engine processes, the pipe's (written to the
    engine process's pipe, its ack read back)."""
    from streamret.service.ack_legs import engine_stages, summarize_legs

    pipe = engine.recent_chunk_times() if hasattr(engine, "recent_chunk_times") else {}
    return summarize_legs({**load_stamps, **pipe, **engine_stages(stats.get("recent_items") or [])})


def part_profile(engine: Engine, streams: int, chunks: int, args: argparse.Namespace, out_dir: str) -> dict:
    """The engine part again under the torch profiler (CPU and CUDA activity, every thread): where a
    step's time goes. Writes e2e_profile.txt (top ops by device and by host time); returns the device's
    busy time as a share of the wall time, and the top rows."""
    from torch.profiler import ProfilerActivity, _ExperimentalConfig, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if engine.model.device.type == "cuda" else [])
    try:  # host ops of the engine's step thread too, not only of this one
        config = {"experimental_config": _ExperimentalConfig(profile_all_threads=True)}
    except TypeError:  # an older torch: this thread's host ops only (device kernels are all seen either way)
        config = {}
    from streamret.stack_sampler import StackSampler

    sampler = StackSampler(engine._thread, every_s=0.001)  # the step loop's thread
    with profile(activities=activities, **config) as prof, sampler:
        row = part_engine(engine, streams, chunks, args, tag="profile")
        sync(engine.model.device)
    events = prof.key_averages()

    def dev(e: Any) -> float:  # torch renamed cuda -> device in 2.4; keep both
        return float(getattr(e, "self_device_time_total", getattr(e, "self_cuda_time_total", 0.0)))

    device_us = sum(dev(e) for e in events)
    by_device = sorted(events, key=dev, reverse=True)[:args.profile_rows]
    by_host = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:args.profile_rows]
    with open(os.path.join(out_dir, "e2e_profile.txt"), "w") as f:
        for key in ("self_cuda_time_total", "self_cpu_time_total"):
            try:
                f.write(events.table(sort_by=key, row_limit=args.profile_rows, max_name_column_width=70) + "\n")
            except Exception as e:  # noqa: BLE001  (a sort key this torch lacks: the other table still helps)
                f.write(f"(no table by {key}: {e})\n")
        f.write(sampler.table(args.profile_rows))
    wall_us = row["seconds"] * 1e6
    return {**row, "device_busy_fraction": round(device_us / wall_us, 3) if device_us else None,
            "step_thread_samples": sampler.summary(args.profile_rows),
            "top_device_ops": [{"name": e.key[:80], "calls": e.count, "self_device_ms": round(dev(e) / 1e3, 2)}
                               for e in by_device],
            "top_host_ops": [{"name": e.key[:80], "calls": e.count,
                              "self_host_ms": round(e.self_cpu_time_total / 1e3, 2)} for e in by_host],
            "note": "profiler overhead included: tokens/s here is not a figure of the engine"}


def start_server(engine: Engine, args: argparse.Namespace) -> BackgroundServer:
    """The gRPC server in this process on a free loopback port, as `streamret serve` runs it; with --front-procs
    F above 1, F-1 front processes too on the same port (streamret/service/fronts.py)."""
    from streamret.gc_pauses import GEN0_ENV, freeze_startup
    from streamret.service.fronts import FrontProcesses
    from streamret.service.limits import ServiceLimits
    from streamret.service.server import BackgroundServer, ServerConfig

    config = ServerConfig(port=0, limits=ServiceLimits(
        max_streams_per_tenant=max(10_000, 4 * args.service_streams), idle_evict_s=0,
        # the load opens one Append call per stream, all as one tenant: above the per-tenant default of 128
        max_calls_per_tenant=2 * args.service_streams + 64))
    # --server-gc-gen0: this process's and the front processes' threshold (the engine processes, started before,
    # keep theirs), through the variable freeze_startup reads
    saved = os.environ.get(GEN0_ENV)
    if args.server_gc_gen0 is not None:
        os.environ[GEN0_ENV] = str(args.server_gc_gen0)
    try:
        fronts = None if args.front_procs == 1 else FrontProcesses(
            engine, config, args.front_procs, log_level="WARNING", switch_interval=args.switch_interval)
        server = BackgroundServer(engine, config, fronts=fronts)
        freeze_startup()  # as `streamret serve` does once its server is up (server.serve)
    finally:
        if saved is None:
            os.environ.pop(GEN0_ENV, None)
        else:
            os.environ[GEN0_ENV] = saved
    return server


def client_channels(args: argparse.Namespace) -> int:
    """gRPC connections per load process: --client-channels, else 1 with one front process and 4 per front with
    more (the kernel spreads connections over the fronts: a few would land unevenly)."""
    return args.client_channels or (1 if args.front_procs == 1 else 4 * args.front_procs)


def part_service(engine: Engine, server: BackgroundServer, chunks: int, rate: float | None, text_file: str,
                 args: argparse.Namespace) -> dict:
    """The engine's workload through gRPC from --procs client processes (rate None: saturation); the other front
    processes' CPU (server.fronts): cpu_us_per_token.front_procs."""
    import service as service_bench

    ns = argparse.Namespace(streams=args.service_streams, chunks=chunks, chunk_bytes=args.chunk_bytes,
                            window=args.window, procs=args.procs, text_file=text_file,
                            channels=client_channels(args))
    from cpu_threads import cpu_between, host_cores_busy, host_cores_stolen, host_cpu_sample, thread_cpu_s, us_per_token

    def sample() -> tuple:
        return host_cpu_sample(), engine.stats(), thread_cpu_s(engine, server.fronts), time.monotonic()

    # (with the server: its collector's pauses in the part, server_gc_*, and the ack legs.) The host's busy cores,
    # the engine's steps and every process's CPU are read when the load processes start their load together and
    # once every one has answered (run_service's samples): read around run_service, they held the processes' start
    # (imports, connections: 3.6 s with 8 of them) and the streams' opening, which the engines spent idle (session
    # 31's loop parts read 71 ms idle a step at saturation, in steps of 17 ms)
    outer = sample()
    row = service_bench.run_service(f"127.0.0.1:{server.port}", ns, "half" if rate else "saturate", rate, server,
                                    host_sampler=sample)
    samples = row.pop("host_samples", None) or (outer, sample())
    (host0, before, cpu0, began), (host1, after, cpu1, ended) = samples
    # this process is the server (gRPC threads: "python"), with the engine in it or in engine processes; the load
    # processes' own CPU from run_service (they share the host's cores with the service)
    cpu_us = us_per_token(cpu_between(cpu0, cpu1), row["tokens"]) if cpu0 else {}
    if cpu_us and row.get("client_cpu_seconds") is not None:
        cpu_us["client_procs"] = round(1e6 * row["client_cpu_seconds"] / max(1, row["tokens"]), 3)
    row["host_cores_busy"], row["host_cores_stolen"] = host_cores_busy(host0, host1), host_cores_stolen(host0, host1)
    row["host_cores"] = os.cpu_count()
    return {**row, "chunks_per_stream": chunks, "chunk_bytes": args.chunk_bytes, "window": args.window,
            "cpu_us_per_token": cpu_us, "idle": idle_timeline(after, began, ended),
            **steps_between(before, after),
            "recent": service_bench.step_summary(before, after)}


def write_corpus(path: str, prefix: str, docs: list[str]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([("id", pa.string()), ("text", pa.large_string())])
    pq.write_table(pa.table({"id": [f"{prefix}{i}" for i in range(len(docs))], "text": docs}, schema=schema), path)


def part_batch(engine: Engine, corpus: str, out: str, args: argparse.Namespace) -> dict:
    """embed_parquet on one Parquet file with the engine above (bench/batch.py's run_batch)."""
    import batch as batch_bench  # bench/batch.py

    from streamret.batch.arrow_table import DEFAULT_CHUNK_BYTES, DEFAULT_IN_FLIGHT

    ns = argparse.Namespace(summary_k=5, chunk_bytes=DEFAULT_CHUNK_BYTES, docs_in_flight=DEFAULT_IN_FLIGHT,
                            parts_in_flight=2, progress=False)
    ns.part_bytes = args.part_bytes or None  # (None: embed_parquet's default_part_size)
    from cpu_threads import cpu_between, thread_cpu_s, us_per_token

    before, cpu0, own0 = engine.stats(), thread_cpu_s(engine), os.times()
    # when the job handed a part's documents to the engine processes (its reading and checks done), and when they
    # all came back (what follows: the part's output table and its write)
    handed, returned = [], []
    hand = getattr(engine, "embed_documents", None)
    if hand is not None:
        def timed_hand(docs: list, **options) -> None:
            handed.append(time.monotonic())
            hand(docs, **options)
            returned.append(time.monotonic())

        engine.embed_documents = timed_hand  # an instance attribute over the method, for this part only
    try:
        row = batch_bench.run_batch(engine, corpus, out, ns)
    finally:
        if hand is not None:
            del engine.embed_documents
    after, cpu1, own1 = engine.stats(), thread_cpu_s(engine), os.times()
    if row["errors"]:
        raise RuntimeError(f"the batch job failed {row['errors']} of {row['documents']} documents")
    # by role as the engine parts have it, the engine processes', and this whole process's ("this_process": also
    # the job's threads that ended within the part, which the roles miss)
    cpu_us = us_per_token(cpu_between(cpu0, cpu1), row["tokens"]) if cpu0 else {}
    own_s = own1.user - own0.user + own1.system - own0.system
    cpu_us["this_process"] = round(1e6 * own_s / max(1, row["tokens"]), 3)
    items = [(t, tokenize_ms, queued_ms, sid) for t, tokenize_ms, queued_ms, sid, *_ in items_between(before, after)]
    # over the span of the part's figure, the job's own clock (BatchReport.seconds: from the model ready to the last
    # part written), not this part's stats and device syncs around it
    job_ended = row.pop("job_ended_at")
    timeline = doc_timeline(items, job_ended - row["seconds"], job_ended)
    if handed:  # (an engine in this process has no embed_documents: its job runs embed_table's own runner)
        timeline["first_handed_ms"] = round(1e3 * (handed[0] - (job_ended - row["seconds"])), 1)
        timeline["last_returned_ms"] = round(1e3 * (returned[-1] - (job_ended - row["seconds"])), 1)
    return {**row, "tokens_per_document": round(row["tokens"] / max(1, row["documents"]), 1),
            "cpu_us_per_token": cpu_us, "timeline": timeline, **steps_between(before, after)}


def doc_timeline(items: list[tuple[float, float, float, str]], start: float, end: float, bins: int = 20) -> dict:
    """Where a batch part's time went, from its chunks' stamps in the engines (recent_items: applied at, ms from
    accepted to queued, ms from queued to applied, stream; the host's monotonic clock): the job's span [start, end]
    (BatchReport.seconds: its Parquet reads and writes too) in `bins` equal bins, with the chunks applied in each
    and the documents under way in each (from their first chunk applied to their last); ms after the start: the
    first chunk accepted by an engine (what came before: reading and cutting the Parquet, sending the sub-batches,
    opening the streams), queued for a step (tokenized), applied (its step done), and the last applied. A start
    before the first chunk, or a tail with few documents under way, shows as bins with few chunks. (Each engine
    remembers its last 2,048 items: past that many in a part, the first stamps are of the items it still holds.)"""
    import numpy as np

    width = max(end - start, 1e-9) / bins
    if not items:
        return {"bin_ms": round(1e3 * width, 2), "chunks": [0] * bins, "documents": [0] * bins}
    at = np.array([t for t, *_ in items])
    queued = at - 1e-3 * np.array([q for _, _, q, _ in items])
    accepted = queued - 1e-3 * np.array([a for _, a, _, _ in items])
    k = np.clip(((at - start) / width).astype(np.int64), 0, bins - 1)
    spans: dict[str, list[int]] = {}
    for b, (*_, sid) in zip(k.tolist(), items):
        lo_hi = spans.setdefault(sid, [b, b])
        lo_hi[0], lo_hi[1] = min(lo_hi[0], b), max(lo_hi[1], b)
    docs = np.zeros(bins + 1, np.int64)
    for lo, hi in spans.values():
        docs[lo] += 1
        docs[hi + 1] -= 1

    def ms(t: float) -> float:
        return round(1e3 * (t - start), 1)

    return {"bin_ms": round(1e3 * width, 2), "chunks": np.bincount(k, minlength=bins).tolist(),
            "documents": np.cumsum(docs)[:bins].tolist(), "first_accepted_ms": ms(accepted.min()),
            "first_queued_ms": ms(queued.min()), "first_applied_ms": ms(at.min()), "last_applied_ms": ms(at.max())}


# ------------------------------------------------------------------------------------------------
# the run


def ints(s: str) -> list[int]:
    return [int(x) for x in s.split(",") if x]


def shapes(s: str) -> list[tuple[int, int]]:
    return [(int(b), int(t)) for b, t in (x.lower().split("x") for x in s.split(",") if x)]


SMOKE = dict(device="cpu", text_mb=0.03, min_text_kb=4, step_tokens=512, packed_lens=[64, 256], packed_extra=[],
             packed_seconds=0.2, streams=[4, 16], service_streams=16, procs=2, chunk_bytes=256, tokens=1500,
             long_docs=2, long_tokens=1500, short_docs=8, short_tokens=100)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    from streamret.batch import sub_batches
    from streamret.engine.config import (  # (defaults of the engine flags)
        DEVICE_WAITS,
        STEP_FILLS,
        STEP_OVERLAPS,
        EngineConfig,
    )
    from streamret.engine.gil import switch_interval_arg
    from streamret.engine.text import SEGMENT_MODES

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true",
                    help="the whole pipeline on the CPU at tiny sizes (a check of this script, not a measurement)")
    ap.add_argument("--model", default="default", help="default (the bundled model), random:<preset>, a folder")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--dtype", default="auto", help="auto: bf16 on CUDA, float32 on the CPU")
    ap.add_argument("--parts", default=None,
                    help=f"a subset of {','.join(PARTS)} (default: all; profile only with --engine-procs 1)")
    ap.add_argument("--text", action="append", default=[], help="English text file or folder (repeatable)")
    ap.add_argument("--text-mb", type=float, default=8.0, help="megabytes of text to gather")
    ap.add_argument("--min-text-kb", type=int, default=512, help="fail when less text than this is found")
    ap.add_argument("--max-stream-step-tokens", type=int, default=EngineConfig.max_stream_step_tokens,
                    help="EngineConfig.max_stream_step_tokens: a stream's tokens in one step at most, on top of its "
                         "fair share (default: no cap beyond that)")
    ap.add_argument("--step-whole-chunk-tokens", type=int, default=EngineConfig.step_whole_chunk_tokens,
                    help="EngineConfig.step_whole_chunk_tokens: each stream of a step first gets its first queued "
                         "chunk up to this many tokens, and a step picks streams while those fit")
    ap.add_argument("--draining-step-chunks", type=int, default=EngineConfig.draining_step_chunks,
                    help="EngineConfig.draining_step_chunks: while fewer than a step's tokens wait, a stream gives a "
                         "step at most this many chunks (default: off)")
    ap.add_argument("--step-fill", choices=STEP_FILLS, default=EngineConfig.step_fill,
                    help="EngineConfig.step_fill: a step takes its streams' further queued tokens into its graph "
                         "bucket's padding, or up to its budget (default: off)")
    ap.add_argument("--graph-token-step", type=int, default=EngineConfig.graph_token_step,
                    help="EngineConfig.graph_token_step: the CUDA graphs' token buckets, powers of two up to it, then "
                         "its multiples (finer: less padding in small steps, more graphs captured at the start)")
    ap.add_argument("--step-tokens", type=int, default=None,
                    help="the engine's max_step_tokens (default: the engine's own for the device, default_step_tokens)")
    ap.add_argument("--packed-lens", type=ints, default=[64, 256, 512, 2048],
                    help="sequence lengths T of the reference shapes (B = step tokens / T)")
    ap.add_argument("--packed-extra", type=shapes, default=[(64, 512), (256, 256)],
                    help="more BxT shapes to time (not the reference), e.g. issue 14's 64x512,256x256")
    ap.add_argument("--packed-seconds", type=float, default=2.0, help="time each packed shape this long")
    ap.add_argument("--streams", type=ints, default=[64, 1024], help="streams of the engine parts")
    ap.add_argument("--service-streams", type=int, default=1024)
    ap.add_argument("--procs", type=int, default=8, help="gRPC client processes")
    ap.add_argument("--window", type=int, default=4, help="chunks in flight per stream")
    ap.add_argument("--load-fraction", type=float, default=0.5, help="the service's second load, of saturation")
    ap.add_argument("--chunk-bytes", type=int, default=2048)
    ap.add_argument("--tokens", type=float, default=3e7, help="about this many tokens per engine or service part")
    ap.add_argument("--long-docs", type=int, default=32)
    ap.add_argument("--long-tokens", type=int, default=200_000, help="about this many tokens per long document")
    ap.add_argument("--short-docs", type=int, default=2000)
    ap.add_argument("--short-tokens", type=int, default=1000, help="at most this many tokens per short document")
    ap.add_argument("--part-bytes", type=int, default=0,
                    help="the batch parts' text bytes a part (streamret embed --part-bytes); 0, the default: the "
                         "job's own default, as a user gets it (16 MiB an engine process on a GPU: each corpus one "
                         "part here, as RESULTS' figures up to session 40 had it with 32 MiB; 1 MiB on a CPU)")
    ap.add_argument("--engine-procs", default="1",
                    help="engine processes (streams sharded over them; streamret serve --engine-procs), or auto")
    ap.add_argument("--front-procs", type=int, default=1,
                    help="gRPC server processes of the service parts (streamret serve --front-procs): above 1 the "
                         "engine runs in engine processes (at least one) and the others connect to them")
    ap.add_argument("--server-gc-gen0", type=int, default=None,
                    help="the gRPC server's and front processes' GC generation-0 threshold (default: "
                         "gc_pauses.SERVING_GEN0_THRESHOLD, as every serving process; 700 is Python's); the engine "
                         "processes keep theirs")
    ap.add_argument("--client-channels", type=int, default=None,
                    help="gRPC connections per load process (default: 1 with one front process, else 4 per front)")
    ap.add_argument("--tokenizer-threads", type=int, default=None,
                    help="each engine's tokenize threads (EngineConfig.tokenizer_threads; default 2)")
    ap.add_argument("--tokenize-procs", action=argparse.BooleanOptionalAction, default=EngineConfig.tokenize_procs,
                    help="each tokenize thread hands its batches to a tokenizer process of its own "
                         "(EngineConfig.tokenize_procs; default: on a GPU, not on the CPU)")
    ap.add_argument("--tokenize-batch-kb", type=int, default=EngineConfig.tokenize_batch_bytes >> 10,
                    help="EngineConfig.tokenize_batch_bytes in KiB: at most this much text a tokenize call")
    ap.add_argument("--tokenize-join-kb", type=int, default=EngineConfig.tokenize_join_bytes >> 10,
                    help="EngineConfig.tokenize_join_bytes in KiB: while one tokenize thread is cutting, another "
                         "takes waiting chunks only once this much waits (0: at once)")
    ap.add_argument("--tokenize-join-wait-ms", type=float, default=1e3 * EngineConfig.tokenize_join_wait_s,
                    help="EngineConfig.tokenize_join_wait_s in ms: a chunk that waits for a busy tokenize thread is "
                         "taken by an idle one once it has waited this long since its acceptance")
    ap.add_argument("--tokenize-split-bursts", action=argparse.BooleanOptionalAction,
                    default=EngineConfig.tokenize_split_bursts,
                    help="EngineConfig.tokenize_split_bursts: a burst of chunks shared among the idle tokenize threads "
                         "at once and delivered together")
    ap.add_argument("--overlap-steps", default=None, choices=STEP_OVERLAPS,
                    help="EngineConfig.overlap_steps: plan step k+1 before booking step k always, only while a full "
                         "step's tokens wait (queued), or never (default: the engine's own for the device)")
    ap.add_argument("--no-cuda-graphs", action="store_true", help="the engine's steps run the eager forward")
    ap.add_argument("--switch-interval", type=switch_interval_arg("--switch-interval"), default=None,
                    help="sys.setswitchinterval for this process and the engine processes (through "
                         "STREAMRET_SWITCH_INTERVAL_MS), seconds (Python's default: 0.005); a step's gather, "
                         "launch and finish use --step-switch-interval where it is shorter")
    ap.add_argument("--step-samples", type=float, default=None, metavar="MS",
                    help="sample the engines' step threads every MS milliseconds (STREAMRET_STEP_SAMPLES): each engine "
                         "and service part then prints where they were, by line")
    ap.add_argument("--segment-by", default=EngineConfig.segment_by, choices=SEGMENT_MODES,
                    help="EngineConfig.segment_by: a segment per sentence, or per appended chunk (what the sentence "
                         "cuts and their booking cost the engine)")
    ap.add_argument("--device-wait", default=EngineConfig.device_wait, choices=DEVICE_WAITS,
                    help="EngineConfig.device_wait: how the step thread waits for the GPU (sleep, or spin a core)")
    ap.add_argument("--step-switch-interval", default=EngineConfig.step_switch_interval_s,
                    type=switch_interval_arg("--step-switch-interval"),
                    help="EngineConfig.step_switch_interval_s: seconds, or none (the process's interval during "
                         "steps too)")
    ap.add_argument("--max-sub-batches-per-engine", type=int, default=sub_batches.MAX_SUB_BATCHES_PER_ENGINE,
                    help="streamret.batch.sub_batches.MAX_SUB_BATCHES_PER_ENGINE for the batch parts: a batch of at "
                         "most this many sub-batches an engine starts them all at once (2: never, the engines take "
                         "two at a time)")
    ap.add_argument("--profile-rows", type=int, default=25, help="rows of the profile part's tables")
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    first, _ = ap.parse_known_args(argv)
    if first.smoke:
        ap.set_defaults(**SMOKE)
    args = ap.parse_args(argv)
    args.parts_given = args.parts is not None  # (all by default: then a part this run cannot do is skipped)
    if args.parts is None:
        args.parts = ",".join(PARTS)
    unknown = set(args.parts.split(",")) - set(PARTS)
    if unknown:
        ap.error(f"unknown --parts {sorted(unknown)}; use {','.join(PARTS)}")
    if "service" in args.parts.split(","):  # fail now, not after the minutes of the parts before it
        try:
            import streamret.service.server  # noqa: F401
        except ImportError as e:
            ap.error(f"the service part cannot import the gRPC server ({e}); install the project's dependencies "
                     "(grpcio-health-checking, grpcio-reflection), or leave service out of --parts")
    return args


# issue 14's acceptance, printed beside the figures (the engine's for every engine_N part)
TARGETS = {"engine": "x packed >= 0.70", "service_saturate": "x engine >= 0.90, >= 64 streams/step, p99 <= 1 s",
           "service_half": "p99 <= 50 ms", "batch_long": "x packed >= 0.70", "batch_short": "x packed >= 0.50"}


def table(results: dict) -> list[dict]:
    """One row per measured part: tokens/s, its ratio to the packed forward, streams per step, acks."""
    parts = results["parts"]
    packed = parts.get("packed", {}).get("tokens_per_s")
    eager = parts.get("packed", {}).get("eager_tokens_per_s")  # (runs of session 20 and before: their only one)
    timed = [*parts.get("packed", {}).get("step_budget_shapes", []), *parts.get("packed", {}).get("other_shapes", [])]
    fastest = max((x["tokens_per_s"] for x in timed), default=None)  # over every shape timed, step budget or not
    rows = []
    for name, r in parts.items():
        if name.startswith("profile_"):
            continue
        row = {"part": name, "tokens_per_s": r["tokens_per_s"],
               "x_packed": round(r["tokens_per_s"] / packed, 3) if packed else None,
               "x_packed_eager": round(r["tokens_per_s"] / eager, 3) if eager else None,
               "x_packed_fastest_shape": round(r["tokens_per_s"] / fastest, 3) if fastest else None,
               "streams_per_step": r.get("streams_per_step"), "ack_p50_ms": r.get("ack_p50_ms"),
               "ack_p99_ms": r.get("ack_p99_ms"), "model_ms_per_step": r.get("loop_model_ms_per_step"),
               "host_ms_per_step": r.get("loop_host_ms_per_step"),
               # the step loop's wait for the engine lock (part of host ms): its holders with STREAMRET_LOCK_PROFILE=1
               "lock_ms_per_step": r.get("loop_parts_ms_per_step", {}).get("lock"),
               "python_us_per_token": r.get("cpu_us_per_token", {}).get("python_threads"),
               # the host's cores busy on average during the part (all processes): near host_cores, CPU-bound
               "host_cores_busy": r.get("host_cores_busy"), "host_cores": r.get("host_cores"),
               "host_cores_stolen": r.get("host_cores_stolen"),
               "wide_steps_runnable": r.get("wide_steps_runnable"), "wide_steps_waiting": r.get("wide_steps_waiting"),
               "target": TARGETS.get("engine" if name.startswith("engine_") else name, "")}
        if name == "service_saturate":
            engine = parts.get(f"engine_{r['streams']}")
            row["x_engine"] = round(r["tokens_per_s"] / engine["tokens_per_s"], 3) if engine else None
        rows.append(row)
    return rows


def print_table(results: dict) -> None:
    def f(v: float | None, fmt: str) -> str:
        return format("-" if v is None else format(v, fmt.lstrip("0123456789")), f">{fmt.split('.')[0]}")

    def cores(r: dict) -> str:  # busy of all, e.g. "13.9/16"
        return "-" if r.get("host_cores_busy") is None else f"{r['host_cores_busy']:.1f}/{r['host_cores']}"

    rows, packed = results["table"], results["parts"].get("packed")
    if packed:
        timed = [*packed["step_budget_shapes"], *packed["other_shapes"]]
        print(f"\nx packed: of the packed forward at {packed['shape']} ({packed['tokens_per_s']:,.0f} tok/s), the "
              f"fastest shape of {packed['step_tokens']:,} tokens (the engine's step budget), eager or graphed; "
              f"x eager: of the fastest eager one ({packed.get('eager_shape')}); all shapes timed: "
              + ", ".join(f"{x['shape']} {x['tokens_per_s']:,.0f}" for x in timed))
    print(f"\n{'part':18s} {'tokens/s':>12s} {'x packed':>9s} {'x eager':>8s} {'x engine':>9s} {'streams/step':>12s} "
          f"{'ack p50 ms':>10s} {'ack p99 ms':>10s} {'model ms':>8s} {'host ms':>7s} {'lock ms':>7s} "
          f"{'py us/tok':>9s} {'host cores':>10s}  "
          "target (issue 14)")
    for r in rows:
        print(f"{r['part']:18s} {r['tokens_per_s']:12,.0f} {f(r['x_packed'], '9.3f')} "
              f"{f(r.get('x_packed_eager'), '8.3f')} {f(r.get('x_engine'), '9.3f')} "
              f"{f(r['streams_per_step'], '12.1f')} {f(r['ack_p50_ms'], '10.1f')} {f(r['ack_p99_ms'], '10.1f')} "
              f"{f(r['model_ms_per_step'], '8.2f')} {f(r['host_ms_per_step'], '7.2f')} "
              f"{f(r.get('lock_ms_per_step'), '7.2f')} "
              f"{f(r.get('python_us_per_token'), '9.3f')} {cores(r):>10s}  {r['target']}")
    stolen = [f"{r['part']} {r['host_cores_stolen']:.2f}" for r in rows if (r.get("host_cores_stolen") or 0) >= 0.05]
    if stolen:  # a shared host: the figures may move with what runs beside this machine
        print("\nhost cores stolen by the VM's host (steal time), on average: " + ", ".join(stolen))
    topology = results.get("versions", {}).get("cpu_topology") or {}
    if topology.get("siblings_per_package", 0) > topology.get("cores_per_package", 0) > 0:
        print(f"\nthe host's {topology['logical_cpus']} CPUs are hardware threads: {topology['cores_per_package']} "
              f"cores with {topology['siblings_per_package']} threads per package")
    wide = [(r["part"], r[k], k.rsplit("_", 1)[1]) for r in rows for k in ("wide_steps_waiting", "wide_steps_runnable")
            if (r.get(k) or {}).get("steps")]
    if wide:
        print("\nsteps planned while >= 64 streams had work (waiting: queued; runnable: not in the running step), "
              "and of them those that ran fewer than 64 streams:")
        for part, w, kind in wide:
            print(f"  {part:18s} {kind:8s} {w['steps']:7d} steps, {w['narrower']:6d} narrower "
                  f"({w['narrower'] / w['steps']:.1%})")
    split = [(r["part"], results["parts"][r["part"]]) for r in rows
             if results["parts"].get(r["part"], {}).get("loop_parts_cpu_ms_per_step")]
    if split:
        print("\nthe step loop's ms a step by part, wall / the step thread's CPU (the rest: waiting for the GIL, the "
              "device, a lock or a core):")
        for name, part in split:
            wall, cpu = part["loop_parts_ms_per_step"], part["loop_parts_cpu_ms_per_step"]
            print(f"  {name:18s} " + "  ".join(f"{k} {wall[k]:.2f}/{cpu.get(k, 0):.2f}" for k in wall
                                                if wall[k] >= 0.05))
    calls = {name: part["tokenize_calls"] for name, part in results["parts"].items() if part.get("tokenize_calls")}
    if calls:  # how large the cutting calls were: their fixed cost against the per-chunk one
        print("\nthe tokenize stage's calls (all engines): calls, items and KB a call; calls by items a call "
              "(1, 2, 3-4, 5-8, ..., 65-128, more)")
        for name, c in calls.items():
            print(f"  {name:18s} {c['calls']}  {c['items_per_call']}  {c['kb_per_call']}  {c['items_buckets']}")
    legs = {name: part["load_legs_ms"] for name, part in results["parts"].items() if part.get("load_legs_ms")}
    if legs:  # an item's round trip outside the engine: the load's turn to send the next chunk
        print("\nthe engine parts' load, ms p50 / p99: an ack arrived -> the stream's next chunk sent; a submit "
              "call (submit_append, or submit_append_to with engine processes)")
        for name, leg in legs.items():
            turn, call = leg["ack_to_next_sent"], leg["submit_call"]
            print(f"  {name:18s} {turn.get('p50', '-')} / {turn.get('p99', '-')}    {call.get('p50', '-')} / "
                  f"{call.get('p99', '-')}")
    from streamret.stack_sampler import format_table

    for name, part in results["parts"].items():
        for key, what in (("step_samples", "step threads'"), ("tokenize_samples", "first tokenize threads'")):
            if part.get(key):  # --step-samples
                print(f"\n{name}: the {what} stacks, sampled (all engines)" + format_table(
                    {**part[key], "own": part[key]["own"][:12], "inside": part[key]["inside"][:8]}).rstrip())
    for name, part in results["parts"].items():
        if part.get("lock_sites"):  # STREAMRET_LOCK_PROFILE=1: who held the engine lock the step loop waited for
            print(f"\n{name}: the engine lock's holders, all engines (streamret/engine/lock_profile.py)")
            for site, b in list(part["lock_sites"].items())[:5]:
                print(f"  {site:48s} takes {b['takes']:8,d}  held {1e3 * b['held_s'] / max(1, b['takes']):7.3f} ms a "
                      f"take, {b['held_s']:7.3f} s in all")
    from streamret.service.ack_legs import format_legs

    for name, part in results["parts"].items():
        if name.startswith("engine_") and "ack_legs" in part:
            print(f"\n{name}: a chunk's round trip by leg (streamret/service/ack_legs.py)")
            print(format_legs(part["ack_legs"]))
    for name, part in results["parts"].items():
        if part.get("idle"):
            idle = part["idle"]
            print(f"\n{name}: the engines' step loops idle (no step in flight, nothing queued), "
                  f"{100 * idle['overall']:.0f}% of their time; by bin of {idle['bin_ms']} ms, % "
                  f"({idle['engines']} engine(s)):")
            print("  " + " ".join(f"{100 * x:.0f}" for x in idle["share"]))
    for name in ("batch_long", "batch_short"):
        tl = results["parts"].get(name, {}).get("timeline")
        if tl and "first_applied_ms" in tl:
            parts = results["parts"][name].get("parts")
            print(f"\n{name}: chunks applied / documents under way in {len(tl['chunks'])} bins of {tl['bin_ms']} ms "
                  f"(the job's span, {parts} part{'s' if parts != 1 else ''}; the first part's documents handed to "
                  f"the engines at "
                  f"{tl.get('first_handed_ms')} ms, the first chunk accepted at {tl.get('first_accepted_ms')} ms, "
                  f"queued at {tl.get('first_queued_ms')}, applied at {tl['first_applied_ms']}; the last applied at "
                  f"{tl['last_applied_ms']} ms, the last results back at {tl.get('last_returned_ms')} ms)")
            print("  " + " ".join(f"{c}/{d}" for c, d in zip(tl["chunks"], tl["documents"])))
    for name in ("service_saturate", "service_half"):
        part = results["parts"].get(name, {})
        if "ack_legs" in part:
            print(f"\n{name}: an ack's time by leg (streamret/service/ack_legs.py)")
            print(format_legs(part["ack_legs"]))
            late = part["server_loop_late_ms"]
            print(f"  server: {part['server_gc_collections']} GC pauses, {part['server_gc_pause_ms']} ms, longest "
                  f"{part['server_gc_pause_max_ms']} ms; its loop woken late p99 {late['p99']} ms, max {late['max']} ms"
                  + (f"; call setup p99 {part['call_setup_p99_ms']} ms" if "call_setup_p99_ms" in part else ""))


def run_all(start_engine: Callable[[], Engine], loaded: LoadedModel, config: EngineConfig, args: argparse.Namespace,
            results: dict, save: Callable[[], None], engines: list) -> None:
    """The text, the packed reference, then the engine (`start_engine()`, appended to `engines` for the caller
    to shut down) and every other part asked for, in order, on that one engine (results filled in place). The
    reference runs before the engine starts, so that engine processes' CUDA contexts are not there yet."""
    import service as service_bench
    import torch

    parts = args.parts.split(",")
    model, tokenizer = loaded.model, loaded.tokenizer
    with tempfile.TemporaryDirectory(prefix="e2e-") as tmp:
        t0 = time.perf_counter()
        text, used = find_text(args.text, int(args.text_mb * 1e6), args.min_text_kb * 1024)
        found_s = time.perf_counter() - t0
        ids = tokenize(tokenizer, text)
        raw = text.encode()
        text_file = os.path.join(tmp, "text.txt")
        Path(text_file).write_bytes(raw)
        results["text"] = {"sources": used, "bytes": len(raw), "characters": len(text), "tokens": len(ids),
                           "tokenizer": getattr(tokenizer, "name", type(tokenizer).__name__),
                           "tokens_per_byte": round(len(ids) / len(raw), 4), "find_seconds": round(found_s, 2),
                           "tokenize_seconds": round(time.perf_counter() - t0 - found_s, 2),
                           "first_chars": text[:200]}
        save()
        print(json.dumps({k: v for k, v in results["text"].items() if k != "first_chars"}), flush=True)
        service_bench.use_text(text_file)  # the engine and service parts cut their chunks from the text
        chunk_tokens = args.chunk_bytes * len(ids) / len(raw)

        def chunks_for(streams: int) -> int:
            return max(2, math.ceil(args.tokens / (streams * chunk_tokens)))

        if "packed" in parts:
            ids_dev = torch.tensor(ids, dtype=torch.long).to(model.device)
            run_part(results, "packed", lambda: part_packed(config, model, ids_dev, args), save)
            del ids_dev
        if not set(parts) - {"packed"}:
            return
        t0 = time.perf_counter()
        engine = start_engine()
        engines.append(engine)
        results["engine_start_seconds"] = round(time.perf_counter() - t0, 1)
        if set(parts) & {"engine", "service", "batch", "profile"}:  # allocations, kernel compilation, thread pools
            n = max([*args.streams, args.service_streams] if set(parts) & {"engine", "service"} else [64])
            run_part(results, "warmup", lambda: part_engine(engine, n, 2, args, tag="warmup"), save)
        if "engine" in parts:
            for n in args.streams:
                run_part(results, f"engine_{n}", lambda n=n: part_engine(engine, n, chunks_for(n), args), save)
        if "profile" in parts and not hasattr(engine, "_thread"):
            why = "the profile part needs --engine-procs 1 (it samples this process)"
            if args.parts_given:
                results["errors"]["profile"] = why
            else:
                results.setdefault("skipped", {})["profile"] = why
                print(f"profile part skipped: {why}", flush=True)
        elif "profile" in parts:
            n = args.streams[0]
            run_part(results, f"profile_{n}",
                     lambda: part_profile(engine, n, max(2, chunks_for(n) // 4), args, args.out), save)
        if "service" in parts:
            server = run_part(results, "server", lambda: start_server(engine, args), save, record=False)
            if server is not None:
                chunks = chunks_for(args.service_streams)
                try:
                    sat = run_part(results, "service_saturate",
                                   lambda: part_service(engine, server, chunks, None, text_file, args), save)
                    if sat:
                        rate = args.load_fraction * sat["chunks"] / sat["seconds"] / args.service_streams
                        half = run_part(results, "service_half",
                                        lambda: part_service(engine, server, chunks, rate, text_file, args), save)
                        if half:
                            half["load_fraction"] = args.load_fraction
                finally:
                    server.stop()
        if "batch" in parts:
            per_char = len(ids) / len(text)
            for name, n_docs, n_tokens in (("long", args.long_docs, args.long_tokens),
                                           ("short", args.short_docs, args.short_tokens)):
                docs = windows(text, n_docs, max(1, round(n_tokens / per_char)))
                if name == "short":  # at most --short-tokens each, by the tokenizer
                    docs, counts = at_most(tokenizer, docs, n_tokens)
                    results["short_documents"] = {"max_tokens": max(counts), "mean_tokens": sum(counts) / len(counts)}
                corpus = os.path.join(tmp, f"{name}.parquet")
                write_corpus(corpus, f"{name}-", docs)
                run_part(results, f"batch_{name}",
                         lambda c=corpus, name=name: part_batch(engine, c, os.path.join(tmp, f"out-{name}"), args),
                         save)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    import service as service_bench
    import torch

    from streamret.engine import Engine, EngineConfig, ShardedEngine
    from streamret.engine.config import default_step_tokens
    from streamret.engine.reader import engine_reader
    from streamret.engine.shards import engine_procs
    from streamret.model.spec import load_model

    torch.set_num_threads(max(1, (os.cpu_count() or 2) - args.procs))  # leave cores to the client processes
    start = time.perf_counter()
    if args.step_samples is not None:  # read by each engine as it starts (engine processes take this environment)
        os.environ["STREAMRET_STEP_SAMPLES"] = str(args.step_samples)
        from streamret.stack_sampler import step_sample_interval

        step_sample_interval()  # a bad value stops the run here, named
    if args.switch_interval is not None:
        sys.setswitchinterval(args.switch_interval)
        os.environ["STREAMRET_SWITCH_INTERVAL_MS"] = str(args.switch_interval * 1e3)  # engine processes read it
    from streamret.batch import sub_batches

    sub_batches.MAX_SUB_BATCHES_PER_ENGINE = args.max_sub_batches_per_engine  # (the batch job runs them from here)
    procs = engine_procs(args.engine_procs, args.device)
    loaded = load_model(args.model, args.device, args.dtype)  # the packed reference's model, and the tokenizer
    model = loaded.model
    if args.step_tokens is None:  # the engine's own budget on this device (the packed reference's shapes too)
        args.step_tokens = default_step_tokens(model.device.type)
    config = EngineConfig(max_step_tokens=args.step_tokens, durable_every_chunks=0,  # no state dir
                          cuda_graphs=not args.no_cuda_graphs, step_switch_interval_s=args.step_switch_interval,
                          device_wait=args.device_wait, segment_by=args.segment_by,
                          tokenizer_threads=args.tokenizer_threads or EngineConfig.tokenizer_threads,
                          tokenize_procs=args.tokenize_procs, tokenize_batch_bytes=args.tokenize_batch_kb << 10,
                          tokenize_join_bytes=args.tokenize_join_kb << 10,
                          tokenize_join_wait_s=args.tokenize_join_wait_ms / 1e3,
                          tokenize_split_bursts=args.tokenize_split_bursts, overlap_steps=args.overlap_steps,
                          max_stream_step_tokens=args.max_stream_step_tokens,
                          draining_step_chunks=args.draining_step_chunks,
                          step_whole_chunk_tokens=args.step_whole_chunk_tokens,
                          step_fill=args.step_fill, graph_token_step=args.graph_token_step)
    from streamret.gc_pauses import freeze_startup

    def start_engine() -> Engine:
        """In this process (procs 1), or engine processes with a model each, streams sharded over them."""
        engine = Engine(loaded, None, config) if procs == 1 and args.front_procs == 1 else ShardedEngine(
            args.model, args.device, None, config, args.dtype, procs=procs, listen=args.front_procs > 1)
        freeze_startup()  # as `streamret serve` does once its engine is up
        return engine
    results: dict = {
        "bench": "e2e", "smoke": args.smoke, "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "command": " ".join(["bench/e2e.py", *(sys.argv[1:] if argv is None else argv)]),
        "args": {k: v for k, v in vars(args).items()}, "versions": service_bench.versions(),
        "machine": platform.node(), "model": {"spec": args.model, "device": str(model.device),
                                              "dtype": str(model.dtype), "fingerprint": loaded.fingerprint,
                                              "parameters": sum(p.numel() for p in model.parameters()),
                                              "load_seconds": round(time.perf_counter() - start, 2)},
        "engine_config": {"max_step_tokens": config.max_step_tokens, "max_step_streams": config.max_step_streams,
                          "max_stream_step_tokens": config.max_stream_step_tokens,
                          "draining_step_chunks": config.draining_step_chunks,
                          "step_whole_chunk_tokens": config.step_whole_chunk_tokens,
                          "step_fill": config.step_fill, "graph_token_step": config.graph_token_step,
                          "cuda_graphs": config.cuda_graphs, "switch_interval_s": sys.getswitchinterval(),
                          "step_switch_interval_s": config.step_switch_interval_s,
                          "device_wait": config.device_wait,
                          "chunk_size": config.chunk_size, "segment_by": config.segment_by,
                          "engine_procs": procs, "front_procs": args.front_procs,
                          # STREAMRET_ENGINE_READER, read by the engine processes (they take this environment);
                          # it plays a part only where they take the fronts' connections
                          "engine_reader": engine_reader() if args.front_procs > 1 else None,
                          "tokenizer_threads": config.tokenizer_threads,
                          "tokenize_procs": config.tokenize_procs,  # None: auto
                          "tokenize_batch_bytes": config.tokenize_batch_bytes,
                          "tokenize_join_bytes": config.tokenize_join_bytes,
                          "tokenize_join_wait_s": config.tokenize_join_wait_s,
                          "tokenize_split_bursts": config.tokenize_split_bursts,
                          "overlap_steps": config.overlap_steps,  # None: auto
                          "max_sub_batches_per_engine": args.max_sub_batches_per_engine},
        "env": {k: v for k, v in os.environ.items() if k.startswith("STREAMRET_")},
        "parts": {}, "errors": {}}
    out_path = Path(args.out) / "e2e.json"

    def save() -> None:
        out_path.write_text(json.dumps(results, indent=1))

    if args.smoke:
        print("SMOKE RUN: a check that the script works end to end; its figures mean nothing", flush=True)
    engines: list = []
    try:
        run_all(start_engine, loaded, config, args, results, save, engines)
    finally:
        for engine in engines:
            engine.shutdown()
    results["parts"].pop("warmup", None)
    results["table"] = table(results)
    results["seconds"] = round(time.perf_counter() - start, 1)
    save()
    print_table(results)
    if args.smoke:
        print("(smoke run: figures mean nothing)")
    if results["errors"]:
        print(f"FAILED parts: {json.dumps(results['errors'])}", file=sys.stderr)
    print(f"results: {out_path}")
    return 1 if results["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
