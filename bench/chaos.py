"""Chaos, the long run: streams go through `streamret.client` while `streamret serve` (random:tiny or --model,
float32, CPU, a state folder) is killed with SIGKILL at random points and restarted on the same folder and port.

    python bench/chaos.py --streams 32 --stream-bytes 4000 --kills 20 --seed 1
    python bench/chaos.py --durable-every 4 --kills 10          # sparser records: rollbacks and resends
    python bench/chaos.py --model default --text book --max-step-tokens 64 --streams 8 --kills 20
                                                                # the bundled model, prose, split chunks
    python bench/chaos.py --long-word-mb 10                     # no kills: one 10 MB word, memory bounded

Prints kills survived, chunks sent, chunks lost (must be 0), chunks applied twice (must be 0; with a record
per chunk also no chunk acked as applied twice) and the worst relative error of a final embedding against an
undisturbed run (must be <= 1e-5); exits 1 when any of these fails. --out writes the figures as JSON.
The CI-sized version is tests/test_chaos.py; both run the driver in tests/helpers_chaos.py.

--long-word-mb N streams one word of N MB (no whitespace at all) through the client in 1 MiB chunks and
prints the tokens read, the seconds, and the server's peak RSS against its RSS before (the bounded text
tail hands a long word out in pieces, so memory must not grow with it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import signal
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from helpers_chaos import ReferenceEmbeddings, book_text, kill_and_restart, run_chaos, stream_text  # noqa: E402
from helpers_server import ServeProcess  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so `with ServeProcess` stops the served process
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--streams", type=int, default=32, help="concurrent streams (default 32)")
    p.add_argument("--stream-bytes", type=int, default=4000, help="bytes per stream (default 4000)")
    p.add_argument("--chunk-bytes", type=int, default=40, help="mean chunk size; cuts are random (default 40)")
    p.add_argument("--kills", type=int, default=20, help="kill -9 and restart this many times (default 20)")
    p.add_argument("--durable-every", type=int, default=1, help="server's --durable-every-chunks (default 1)")
    p.add_argument("--pace-s", type=float, default=0.005, help="pause between a stream's chunks (default 0.005)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--model", default="random:tiny",
                   help="the served model: random:tiny (byte tokenizer, default) or default (the bundled model)")
    p.add_argument("--text", choices=("sentences", "book"), default="sentences",
                   help="sentences: six short sentences in turn (default); book: varied prose with 2- to 4-byte "
                        "characters, for a real tokenizer")
    p.add_argument("--max-step-tokens", type=int,
                   help="server's --max-step-tokens (small values split chunks across steps)")
    p.add_argument("--window", type=int, default=4, help="client's chunks in flight per stream (default 4)")
    p.add_argument("--long-word-mb", type=float, help="instead of kills: stream one word of this many MB")
    p.add_argument("--out", help="write the figures as JSON here")
    args = p.parse_args(argv)
    if args.long_word_mb:
        return long_word(args)

    make_text = book_text if args.text == "book" else stream_text
    texts = {f"chaos-{i}": make_text(i + args.seed * 1000, args.stream_bytes) for i in range(args.streams)}
    serve_args = ["--durable-every-chunks", str(args.durable_every)]
    if args.max_step_tokens is not None:
        serve_args += ["--max-step-tokens", str(args.max_step_tokens)]
    with tempfile.TemporaryDirectory() as tmp, ReferenceEmbeddings(args.model) as reference:
        tmp = Path(tmp)
        with ServeProcess(tmp / "states", *serve_args, cwd=tmp, model=args.model) as server:
            server.start()
            report = asyncio.run(run_chaos(server.target, texts, reference, kill_and_restart(server),
                                           kills=args.kills, seed=args.seed,
                                           mean_chunk_bytes=args.chunk_bytes, pace_s=args.pace_s,
                                           tokens_of=reference.tokens, window=args.window))
    acked_twice_ok = args.durable_every > 1 or report.acked_twice == 0
    ok = (report.kills == args.kills and report.lost == 0 and report.applied_twice == 0 and acked_twice_ok
          and report.worst_rel_err <= 1e-5)
    print(report.line())
    print("PASS" if ok else "FAIL")
    if args.out:
        import grpc
        import torch

        figures = {
            "date": time.strftime("%Y-%m-%d"), "host": platform.node(), "cpu": platform.processor() or "cpu",
            "python": platform.python_version(), "torch": torch.__version__, "grpcio": grpc.__version__,
            "args": vars(args), "kills_survived": report.kills, "streams": len(report.streams),
            "chunks_sent": report.chunks_sent, "chunks_lost": report.lost, "applied_twice": report.applied_twice,
            "acked_as_applied_twice": report.acked_twice, "resent_acked_as_duplicates": report.resent_duplicates,
            "worst_rel_err": report.worst_rel_err, "seconds": round(report.seconds, 1), "pass": ok,
        }
        Path(args.out).write_text(json.dumps(figures, indent=1) + "\n")
    return 0 if ok else 1


def long_word(args: argparse.Namespace) -> int:
    import numpy as np

    from streamret.client import Client

    n = int(args.long_word_mb * 1e6)
    piece = 1 << 20
    with tempfile.TemporaryDirectory() as tmp, ServeProcess(Path(tmp) / "states", cwd=tmp) as server:
        server.start()
        rss_before = server.rss_bytes()
        started = time.monotonic()
        with Client(server.target) as client:
            chunks = (b"w" * min(piece, n - i) for i in range(0, n, piece))
            ack = client.stream("long-word", chunks)
            emb = client.embedding_array("long-word")
        seconds = time.monotonic() - started
        peak = server.peak_rss_bytes()
    ok = ack.tokens == n and abs(float(np.linalg.norm(emb)) - 1) < 1e-4
    print(f"one {n:,}-byte word: {ack.tokens:,} tokens read in {seconds:.1f} s; server RSS {rss_before / 2**20:.0f} "
          f"MiB before, peak {peak / 2**20:.0f} MiB")
    print("PASS" if ok else "FAIL")
    if args.out:
        Path(args.out).write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "bytes": n, "tokens": ack.tokens,
                                              "seconds": round(seconds, 1), "rss_before": rss_before,
                                              "peak_rss": peak, "pass": ok}, indent=1) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
