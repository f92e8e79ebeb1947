"""The gRPC server's own CPU per Append chunk, with no engine behind it (issue 14, the service at saturation).

    nice python bench/service_front.py --streams 64 --chunks 64 --chunk-bytes 2048 --procs 2
    nice python bench/service_front.py ... --profile /tmp/spy-front.txt    # + py-spy, aggregated per thread
    nice python bench/service_front.py --no-grpc --streams 64 --chunks 256   # the servicer's Python alone

The server (BackgroundServer, this process) serves a stub engine that acks each chunk at once from a
thread of its own, as ShardedEngine's reader thread does (a concurrent.futures.Future set off the event
loop): all the CPU this process spends on the Python side is the server's. Load: bench/service.py's client
processes (one Append call per stream, --window chunks in flight). Prints chunks/s and the CPU us per chunk
of the server's threads: "loop" (the asyncio thread, streamret-server), "acks" (the stub's ack thread, which
stands for the engine side and is not the server's cost), "other_python" (other Python threads) and "native"
(gRPC's C-core threads, outside the GIL).

--no-grpc: no sockets and no client processes: the Append handler as the server runs it (the metrics
interceptor around the rpc gate around the servicer, on TenantEngine and the stub) is called in this process
with a fake call context whose reads return ready requests (--window at a time, like a client's window) and
whose writes only keep the acks. The loop thread's CPU per chunk is then what the service's own Python code
costs, without gRPC's share: steadier on a busy machine than the full run (best of --repeat runs).
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import Future
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

TOKENS_PER_CHUNK = 500  # about a 2 KiB chunk of English text


class StubEngine:
    """Enough of EngineAPI for Append: every chunk applies at once; its ack is set by the ack thread."""

    fingerprint = "stub"
    embed_dim = 8

    def __init__(self) -> None:
        from streamret.engine.config import Ack, Checkpoint, StreamInfo

        self._ack, self._info, self._checkpoint = Ack, StreamInfo, Checkpoint
        self._todo: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._acks, name="stub-acks", daemon=True)
        self._thread.start()

    def _acks(self) -> None:
        while (item := self._todo.get()) is not None:
            fut, ack = item
            fut.set_result(ack)

    def open(self, stream_id, create_if_missing=True, group=None, durable=True):
        return self._info(stream_id, 0, 0, 0, self.fingerprint)

    def exists(self, stream_id) -> bool:
        return True

    def submit_append(self, stream_id, seq, data, flush=False, durable=False, group=None) -> Future:
        fut: Future = Future()
        self._todo.put((fut, self._ack(stream_id, seq, seq, 0, seq * TOKENS_PER_CHUNK)))
        return fut

    def durable_writable(self):
        return None

    def checkpoint_all(self, timeout_s=None):
        return self._checkpoint(durable_store=False, streams=0, written=0, not_durable=0)

    def stats(self) -> dict:
        return {}

    def shutdown(self):
        self._todo.put(None)
        return None


def thread_cpu_by_name() -> dict[str, float]:
    """CPU seconds of this process's threads so far, by thread name ("native" for threads Python does not know)."""
    names = {t.native_id: t.name for t in threading.enumerate()}
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        name = names.get(int(tid), "native")
        role = {"streamret-server": "loop", "stub-acks": "acks", "native": "native"}.get(name, "other_python")
        out[role] = out.get(role, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return out


def aggregate_profile(raw: Path, top: int = 25) -> str:
    """py-spy's raw stacks (`--threads`: the thread first) summed per thread by innermost frame. gRPC's own work
    (Cython, no Python frames) counts on the servicer line that called into it: context.read(), context.write()
    or, under Handle._run, gRPC's completion callbacks."""
    counts: Counter = Counter()
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        frames = stack.split(";")
        counts[(frames[0], frames[-1])] += int(n)
    total = sum(counts.values()) or 1
    return "\n".join(f"{100 * n / total:5.1f}%  {thread[:40]:40s} {frame}"
                     for (thread, frame), n in counts.most_common(top))


class FakeCall:
    """The call context and request stream of one Append call, without gRPC: a read waits for the client's
    window (a write frees a place) and returns the next request; writes are kept."""

    def __init__(self, requests: list, window: int):
        import grpc

        self._eof = grpc.aio.EOF
        self._requests = iter(requests)
        self._window = asyncio.Semaphore(window)
        self.sent = 0

    async def read(self):
        await self._window.acquire()
        return next(self._requests, self._eof)

    async def write(self, message) -> None:
        self.sent += 1
        self._window.release()

    async def stream(self):  # the request iterator, for a servicer that iterates it
        while (request := await self.read()) is not self._eof:
            yield request

    def invocation_metadata(self):
        return ()

    def time_remaining(self):
        return None

    def peer(self) -> str:
        return "fake"

    def code(self):
        return None

    def set_code(self, code) -> None:
        raise RuntimeError(f"the fake Append call failed with {code}")

    def set_details(self, details) -> None:
        pass


async def run_without_grpc(args: argparse.Namespace, engine: StubEngine) -> dict:
    """Every stream one Append call through the handler as the server wraps it; loop CPU us per chunk."""
    from streamret.service.auth import Authenticator
    from streamret.service.gate import Gate
    from streamret.service.limits import ServiceLimits
    from streamret.service.metrics import ServiceMetrics
    from streamret.service.proto_gen import streamret_pb2 as pb
    from streamret.service.stream_servicer import StreamRetServicer
    from streamret.service.tenant_engine import TenantEngine

    metrics = ServiceMetrics()
    limits = ServiceLimits(max_streams_per_tenant=max(10_000, 4 * args.streams), idle_evict_s=0,
                           max_calls_per_tenant=2 * args.streams + 64)
    servicer = StreamRetServicer(TenantEngine(engine, limits, metrics), Gate(Authenticator(), metrics,
                                                                               limits.max_calls_per_tenant))
    labels = ("bidi_stream", "streamret.v1.StreamRet", "Append")
    handler = servicer.Append
    data = b"x" * args.chunk_bytes

    async def one_call(sid: str) -> int:
        call = FakeCall([pb.AppendRequest(stream_id=sid, seq=i + 1, data=data) for i in range(args.chunks)],
                        args.window)
        if inspect.isasyncgenfunction(handler):
            async for ack in metrics.grpc._streaming(handler, labels)(call.stream(), call):
                await call.write(ack)
        else:
            await metrics.grpc._unary(handler, labels)(call.stream(), call)
        return call.sent

    best = None
    for r in range(args.repeat):
        t0, c0, p0 = time.perf_counter(), time.thread_time(), time.process_time()
        sent = sum(await asyncio.gather(*[one_call(f"r{r}-s{s}") for s in range(args.streams)]))
        cpu, wall = time.thread_time() - c0, time.perf_counter() - t0
        acks_thread = time.process_time() - p0 - cpu  # the stub's ack thread (the engine side; shares the GIL)
        if sent != args.streams * args.chunks:
            raise RuntimeError(f"{sent} acks for {args.streams * args.chunks} chunks")
        row = {"chunks": sent, "loop_us_per_chunk": round(1e6 * cpu / sent, 2),
               "acks_thread_us_per_chunk": round(1e6 * acks_thread / sent, 2), "chunks_per_s": round(sent / wall)}
        best = row if best is None or row["loop_us_per_chunk"] < best["loop_us_per_chunk"] else best
    return best


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--streams", type=int, default=64)
    ap.add_argument("--chunks", type=int, default=64, help="chunks per stream")
    ap.add_argument("--chunk-bytes", type=int, default=2048)
    ap.add_argument("--window", type=int, default=4, help="chunks in flight per stream")
    ap.add_argument("--procs", type=int, default=2, help="load generator processes")
    ap.add_argument("--profile", help="also record a py-spy profile of this process (raw) to this file")
    ap.add_argument("--spy-mode", choices=("gil", "cpu"), default="gil",
                    help="gil: samples of the thread holding the GIL, idle or not (py-spy --gil --idle); cpu: "
                    "samples of threads on the CPU (a thread that holds the GIL while it waits shows only in gil)")
    ap.add_argument("--no-grpc", action="store_true", help="the servicer's Python alone (module doc)")
    ap.add_argument("--repeat", type=int, default=5, help="--no-grpc: runs; the best one is reported")
    args = ap.parse_args(argv)
    if args.no_grpc:
        engine = StubEngine()
        try:
            print(json.dumps(asyncio.run(run_without_grpc(args, engine))), flush=True)
        finally:
            engine.shutdown()
        return 0

    from service import run_service

    from streamret.service.limits import ServiceLimits
    from streamret.service.server import BackgroundServer, ServerConfig

    engine = StubEngine()
    server = BackgroundServer(engine, ServerConfig(port=0, limits=ServiceLimits(
        max_streams_per_tenant=max(10_000, 4 * args.streams), idle_evict_s=0,
        max_calls_per_tenant=2 * args.streams + 64)))
    target = f"127.0.0.1:{server.port}"
    spy = None
    try:
        run_service(target, argparse.Namespace(**{**vars(args), "chunks": 2}), "warmup", rate=None)
        if args.profile:
            mode = ["--gil", "--idle"] if args.spy_mode == "gil" else []
            spy = subprocess.Popen(["py-spy", "record", *mode, "--threads", "-r", "200", "-f", "raw",
                                    "-o", args.profile, "--pid", str(os.getpid())],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1.0)
        cpu0 = thread_cpu_by_name()
        result = run_service(target, args, "front", rate=None)
        cpu1 = thread_cpu_by_name()
    finally:
        if spy is not None:
            spy.send_signal(signal.SIGINT)  # py-spy writes its file as it stops on SIGINT
            spy.wait()
        server.stop()
        engine.shutdown()
    chunks = result["chunks"]
    us = {k: round(1e6 * (cpu1[k] - cpu0.get(k, 0.0)) / max(1, chunks), 1) for k in sorted(cpu1)}
    server_python = round(sum(v for k, v in us.items() if k in ("loop", "other_python")), 1)
    out = {"chunks": chunks, "seconds": result["seconds"], "chunks_per_s": round(chunks / result["seconds"], 1),
           "ack_p50_ms": result["ack_p50_ms"], "ack_p99_ms": result["ack_p99_ms"],
           "cpu_us_per_chunk": us, "server_python_us_per_chunk": server_python}
    print(json.dumps(out), flush=True)
    if args.profile and Path(args.profile).exists():
        print(aggregate_profile(Path(args.profile)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
