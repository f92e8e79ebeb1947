"""EngineConfig.overlap_steps on the CPU, A/B in one process: an in-process engine, --streams streams of real text
each keeping --window chunks in flight (bench/service.py's run_engine), overlap "always" and "never" alternated;
tokens/s, steps and streams a step, and each chunk's ack latency (the load's own: sent to acked).

    python bench/results/2026-12-04-vm-s29/overlap_ab.py --model random:small --streams 8 --chunks 40 --pairs 3
"""
import argparse
import gzip
import json
import os
import sys
import time

import numpy as np
import torch

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..")
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "bench"))
import service as svc  # noqa: E402  (bench/service.py)
from streamret.engine import Engine, EngineConfig  # noqa: E402
from streamret.model.spec import load_model  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--model", default="random:small")
ap.add_argument("--streams", type=int, default=8)
ap.add_argument("--chunks", type=int, default=40)
ap.add_argument("--chunk-bytes", type=int, default=2048)
ap.add_argument("--window", type=int, default=4)
ap.add_argument("--pairs", type=int, default=3)
ap.add_argument("--modes", default="always,never")
ap.add_argument("--rate", type=float, default=0.0,
                help="open loop: each stream sends chunks as a Poisson process of this rate, whatever the acks (0: the window)")
ap.add_argument("--out", default=None)
args = ap.parse_args()
torch.set_num_threads(1)
svc.TEXT = gzip.open(os.path.join(ROOT, ".device/text/man.txt.gz"), "rb").read(4_000_000)
loaded = load_model(args.model, device="cpu")
rows = []


def open_loop(engine, args, tag, first_stream, stamps):
    """Every stream sends its chunks as a Poisson process of --rate chunks a second, acks stamped as they arrive."""
    import threading
    ids = [f"{tag}-{s}" for s in range(args.streams)]
    for sid in ids:
        engine.open(sid, create_if_missing=True)
    chunks = {sid: svc.chunks_of(first_stream + s, args.chunks, args.chunk_bytes) for s, sid in enumerate(ids)}
    sent, received, tokens, lock = [], [], {}, threading.Lock()
    done = threading.Event()
    left = [args.streams * args.chunks]

    def arrived(f, sid, seq):
        t = time.monotonic()
        with lock:
            received.append((sid, seq, t))
            tokens[sid] = max(tokens.get(sid, 0), f.result().tokens)
            left[0] -= 1
            if not left[0]:
                done.set()
    # Poisson arrivals per stream (a seeded draw, the same for every mode)
    rng = np.random.default_rng(first_stream)
    times = np.cumsum(rng.exponential(1.0 / args.rate, size=(args.streams, args.chunks)), axis=1)
    t0 = time.monotonic()
    events = sorted((float(times[s, q]), s, q + 1) for s in range(args.streams) for q in range(args.chunks))
    for at, s, seq in events:
        wait = t0 + at - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        sid = ids[s]
        sent.append((sid, seq, time.monotonic()))
        engine.submit_append(sid, seq, chunks[sid][seq - 1], flush=seq == args.chunks).add_done_callback(
            lambda f, sid=sid, seq=seq: arrived(f, sid, seq))
    done.wait()
    wall = time.monotonic() - t0
    for sid in ids:
        engine.close(sid)
    total = sum(tokens.values())
    return {"tokens": total, "tokens_per_s": round(total / wall, 1),
            "chunk_stamps": {"client_sent": sent, "client_received": received}}

for pair in range(args.pairs):
    for mode in args.modes.split(","):
        engine = Engine(loaded, config=EngineConfig(overlap_steps=mode))
        try:
            svc.run_engine(engine, argparse.Namespace(**{**vars(args), "chunks": 4}), f"warm{pair}{mode}")
            s0 = engine.stats()
            r = (open_loop if args.rate else svc.run_engine)(engine, args, f"{mode}{pair}", first_stream=100 * pair,
                                                              stamps=True)
            s1 = engine.stats()
        finally:
            engine.shutdown(checkpoint=False)
        sent = {(s, q): t for s, q, t in r["chunk_stamps"]["client_sent"]}
        lat = [1e3 * (t - sent[(s, q)]) for s, q, t in r["chunk_stamps"]["client_received"]]
        steps = s1["steps"] - s0["steps"]
        row = {"pair": pair, "mode": mode, "tokens_per_s": r["tokens_per_s"], "steps": steps,
               "tokens_per_step": round(r["tokens"] / max(steps, 1)),
               "ack_ms_p50": round(float(np.percentile(lat, 50)), 1), "ack_ms_p99": round(float(np.percentile(lat, 99)), 1)}
        rows.append(row)
        print(json.dumps(row), flush=True)
if args.out:
    with open(args.out, "w") as f:
        json.dump({"args": vars(args), "rows": rows}, f, indent=1)
