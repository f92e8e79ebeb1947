"""The step loop's wait for the engine lock when several connection threads hand chunks over at once, as an engine
process's threads do with front processes attached (bench/e2e.py --front-procs; issue 14).

    nice python bench/lock_wait.py --text .device/text/man.txt.gz --threads 6 --batch 8
    nice python bench/lock_wait.py --text .device/text/man.txt.gz --threads 6 --batch 8 --per-chunk

An in-process Engine with STREAMRET_LOCK_PROFILE=1 (streamret/engine/lock_profile.py); --threads threads, each
with its own --streams streams of real text, keep --window chunks in flight per stream and hand them over
--batch at a time: with Engine.submit_appends (one take of the lock per batch, as an engine process serves its
pipes, streamret/engine/shards.py) or, with --per-chunk, one submit_append each (one take per chunk, as before).
Prints the step loop's wait for the lock per step, the lock's holders (takes, ms held a take, us held per chunk
by the submitting sites) and tokens/s.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from text_file import read_text_file  # noqa: E402  (bench/text_file.py)


def feeder(engine, rank: int, args: argparse.Namespace, text: bytes, tokens: list[int]) -> None:
    """One connection thread: its streams' chunks, --window in flight each, handed over --batch at a time."""
    streams = [f"t{rank}-s{s}" for s in range(args.streams)]
    need = args.chunks * args.chunk_bytes
    data = {sid: [text[(k * need + i * args.chunk_bytes) % len(text):][: args.chunk_bytes] for i in range(args.chunks)]
            for k, sid in enumerate(streams, start=rank * args.streams)}
    next_seq = dict.fromkeys(streams, 1)
    in_flight: dict[str, list] = {sid: [] for sid in streams}
    while any(next_seq[s] <= args.chunks or in_flight[s] for s in streams):
        calls = []
        for sid in streams:
            in_flight[sid] = [f for f in in_flight[sid] if not f.done()]
            while next_seq[sid] <= args.chunks and len(in_flight[sid]) + sum(c[0] == sid for c in calls) < args.window:
                seq = next_seq[sid]
                calls.append((sid, seq, data[sid][seq - 1], seq == args.chunks, False, None))
                next_seq[sid] += 1
        for i in range(0, len(calls), args.batch):
            batch = calls[i: i + args.batch]
            if args.per_chunk:
                outcomes = [engine.submit_append(*c) for c in batch]
            else:
                outcomes = engine.submit_appends(batch)
            for (sid, *_), fut in zip(batch, outcomes):
                if isinstance(fut, Exception):
                    raise fut
                in_flight[sid].append(fut)
        if not calls:
            time.sleep(0.002)
    for sid in streams:
        for fut in in_flight[sid]:
            fut.result()
        tokens.append(engine.info(sid).tokens)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--text", required=True, help="a text file (.gz read as gzip)")
    ap.add_argument("--model", default="random:tiny")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=6, help="connection threads handing chunks over")
    ap.add_argument("--streams", type=int, default=8, help="streams per thread")
    ap.add_argument("--chunks", type=int, default=12, help="chunks per stream")
    ap.add_argument("--chunk-bytes", type=int, default=2048)
    ap.add_argument("--window", type=int, default=4, help="chunks in flight per stream")
    ap.add_argument("--batch", type=int, default=8, help="chunks handed over at a time")
    ap.add_argument("--per-chunk", action="store_true", help="one submit_append (one take of the lock) a chunk")
    ap.add_argument("--out", help="write the results JSON here")
    args = ap.parse_args(argv)
    os.environ["STREAMRET_LOCK_PROFILE"] = "1"  # before the engine makes its lock
    import torch

    from streamret.engine import Engine, EngineConfig

    torch.set_num_threads(1)
    text = read_text_file(args.text, 8 << 20)
    with Engine.from_model(args.model, args.device, config=EngineConfig(durable_every_chunks=0)) as engine:
        before = engine.stats()
        tokens: list[int] = []
        threads = [threading.Thread(target=feeder, args=(engine, r, args, text, tokens)) for r in range(args.threads)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        seconds = time.perf_counter() - t0
        after = engine.stats()
    steps = after["steps"] - before["steps"]
    chunks = args.threads * args.streams * args.chunks
    sites = {site: {k: v - before.get("lock_sites", {}).get(site, {}).get(k, 0) for k, v in book.items()
                    if k != "max_held_s"} for site, book in after["lock_sites"].items()}
    submit_held = sum(b["held_s"] for site, b in sites.items() if "submit_append" in site)
    out = {"args": vars(args), "chunks": chunks, "tokens": sum(tokens), "seconds": round(seconds, 3),
           "tokens_per_s": round(sum(tokens) / seconds, 1), "steps": steps,
           "step_lock_wait_ms_per_step": round(1e3 * (after["loop_parts_seconds"]["lock"]
                                                      - before["loop_parts_seconds"]["lock"]) / max(1, steps), 3),
           "submit_lock_held_us_per_chunk": round(1e6 * submit_held / chunks, 2),
           "lock_sites": {site: {"takes": b["takes"],
                                 "held_ms_a_take": round(1e3 * b["held_s"] / max(1, b["takes"]), 3),
                                 "waited_ms_a_take": round(1e3 * b["wait_s"] / max(1, b["takes"]), 3)}
                          for site, b in sorted(sites.items(), key=lambda kv: -kv[1]["held_s"])[:6]}}
    print(json.dumps(out, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
