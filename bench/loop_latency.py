"""Does a large chunk stall the server? Health-check latency while another client sends large chunks.

    python bench/loop_latency.py --model default --chunk-kib 1024 --seconds 20

One in-process server (`BackgroundServer`, as `streamret serve` runs it) on MODEL; a writer client
sends --chunks chunks of --chunk-kib of English text (this repository's Markdown), each the first
chunk of a new stream, in one Append call without waiting for acks (the server submits, and so
tokenizes, each as it arrives); meanwhile the main thread sends a gRPC health check every 10 ms and
times each. A check answers from the server's event loop without touching the engine, so its
latency is how long the loop was busy elsewhere. Prints p50 / p99 / max and writes
DIR/loop_latency.json (DIR: --out, else $OUT, else .).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import torch
from grpc_health.v1 import health_pb2, health_pb2_grpc

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from text_path import corpus  # noqa: E402  (this folder: the same text as the text-path bench)

from streamret.engine import Engine, EngineConfig  # noqa: E402
from streamret.service.limits import ServiceLimits  # noqa: E402
from streamret.service.proto_gen import streamret_pb2 as pb  # noqa: E402
from streamret.service.proto_gen import streamret_pb2_grpc as pb_grpc  # noqa: E402
from streamret.service.server import BackgroundServer, ServerConfig  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--chunk-kib", type=int, default=1024)
    ap.add_argument("--chunks", type=int, default=24)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--torch-threads", type=int, default=1)
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.torch_threads)

    size = args.chunk_kib * 1024
    chunk = corpus(size)
    limits = ServiceLimits(max_chunk_bytes=size, max_message_bytes=max(4 * size, 128 << 20))
    engine = Engine.from_model(args.model, device=args.device, config=EngineConfig(max_chunk_bytes=size))
    server = BackgroundServer(engine, ServerConfig(port=0, limits=limits))
    target = f"127.0.0.1:{server.port}"
    acked, calls = [], []

    def writer() -> None:
        channel = grpc.insecure_channel(target, options=[("grpc.max_send_message_length", 4 * size)])
        requests = (pb.AppendRequest(stream_id=f"big-{k}", seq=1, data=chunk) for k in range(args.chunks))
        call = pb_grpc.StreamRetStub(channel).Append(requests)
        calls.append(call)
        try:
            for ack in call:
                acked.append(ack.tokens)
        except grpc.RpcError:
            pass  # cancelled at the end of the run
        channel.close()

    try:
        health = health_pb2_grpc.HealthStub(grpc.insecure_channel(target))
        health.Check(health_pb2.HealthCheckRequest(), timeout=30)
        thread = threading.Thread(target=writer, daemon=True)
        thread.start()
        times, deadline = [], time.monotonic() + args.seconds
        while time.monotonic() < deadline:
            t = time.perf_counter()
            health.Check(health_pb2.HealthCheckRequest(), timeout=60)
            times.append((time.perf_counter() - t) * 1e3)
            time.sleep(0.01)
        for call in calls:
            call.cancel()  # the chunks still queued are not waited for
        thread.join(60)
    finally:
        engine.shutdown(checkpoint=False)  # first: drops the queued chunks, so the drain does not wait for them
        server.stop()
    ms = np.array(times)
    result = dict(bench="loop_latency", model=args.model, device=args.device, chunk_bytes=size,
                  seconds=args.seconds, checks=len(ms), chunks_acked=len(acked),
                  tokens_acked=int(sum(acked)), p50_ms=float(np.percentile(ms, 50)),
                  p99_ms=float(np.percentile(ms, 99)), max_ms=float(ms.max()), command=" ".join(sys.argv))
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "loop_latency.json").write_text(json.dumps(result, indent=1))
    print(f"{args.model}, {args.chunk_kib} KiB chunks: {len(acked)} chunks acked ({result['tokens_acked']:,} tokens) "
          f"in {args.seconds:.0f} s; health check p50 {result['p50_ms']:.1f} ms, p99 {result['p99_ms']:.1f} ms, "
          f"max {result['max_ms']:.1f} ms over {len(ms)} checks")
    return 0


if __name__ == "__main__":
    sys.exit(main())
