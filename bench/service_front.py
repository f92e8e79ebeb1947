"""The gRPC server process's own CPU per Append chunk (issue 14, the service at saturation).

    nice python bench/service_front.py --streams 64 --chunks 64 --chunk-bytes 2048 --procs 2
    nice python bench/service_front.py ... --profile /tmp/spy-front.txt    # + py-spy, aggregated per thread
    nice python bench/service_front.py --no-grpc --streams 64 --chunks 256   # the servicer's Python alone
    nice python bench/service_front.py --engine sharded --engine-procs 2 --model random:tiny   # real engines
    nice python bench/service_front.py --engine procs-stub --front-procs 2   # two gRPC front processes

The server (BackgroundServer, this process) serves --engine:
  stub     (default) an engine that acks each chunk at once from a thread of its own, as ShardedEngine's reader
           thread does (a concurrent.futures.Future set off the event loop): gRPC and the service alone
  sharded  a ShardedEngine of --engine-procs engine processes of --model on the CPU: the server process is then
           the gRPC front plus ShardedEngine's parent half (outbox and reader threads), as on the GPU machine
  procs-stub  the same, but each engine process serves a stub engine: on a machine of few cores the model's
           forward in the engine processes (random:tiny: ~13 us a token) would be the bound instead of the server
  inproc   Engine of --model in this process (its step and tokenize threads count as "engine")
Load: bench/service.py's client processes (one Append call per stream, --window chunks in flight). Prints
chunks/s and the CPU us per chunk of the server process's threads: "loop" (the asyncio thread,
streamret-server), "shard_send" and "shard_read" (ShardedEngine's outbox and reader threads), "engine" (the
stub's ack thread, or the in-process engine's threads: the engine side, not the server's cost),
"py:NAME" (other Python threads, by name) and "native" (gRPC's C-core threads, outside the GIL; with --engine
inproc torch's threads too); with engine processes also "engine_procs" (their CPU, not this process's).
"server_us_per_chunk" adds up the server's own (every role but "engine" and "engine_procs"). Then an ack's time
split into legs (streamret/service/ack_legs.py); --load-fraction F runs the load again at F of the saturation
chunk rate and prints its ack latency and legs (the half-load tail of issue 14).
--front-procs F (with --engine procs-stub or sharded): F-1 more gRPC server processes on the same port
(streamret/service/fronts.py), the load spread over them by the kernel; their CPU is "front_procs" (part of
the server's); the legs are then front 0's chunks only.

--profile: py-spy's samples of this process summed by thread role, then by role and innermost streamret or
grpc frame; with --spy-mode cpu also in us per chunk (a role's samples scaled to its measured CPU), which
holds only where py-spy tells idle threads from running ones (on a VM where it cannot, use the gil mode).

--no-grpc: no sockets and no client processes: the Append handler as the server runs it (the metrics
interceptor around the rpc gate around the servicer, on TenantEngine and --engine) is called in this process
with a fake call context whose reads return ready requests (--window at a time, like a client's window) and
whose writes only keep the acks. The CPU per chunk is then what the service's own Python code (and, with
--engine procs-stub or sharded, ShardedEngine's parent half) costs, without gRPC's share: steadier on a busy
machine than the full run (the best of --repeat runs, by server_us_per_chunk).
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
    _broken = None  # (what an engine process's loop reads of its Engine: it has no step loop to break)
    durable = None
    store = None

    def __init__(self) -> None:
        from streamret.engine.config import Ack, Checkpoint, StreamInfo

        self._ack, self._info, self._checkpoint = Ack, StreamInfo, Checkpoint
        self.tokenizer = None
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

    def submit_appends(self, calls) -> list:
        """(an engine process hands over each batch of chunks this way: Engine.submit_appends)"""
        return [self.submit_append(*call) for call in calls]

    def durable_writable(self):
        return None

    def checkpoint_all(self, timeout_s=None):
        return self._checkpoint(durable_store=False, streams=0, written=0, not_durable=0)

    def stats(self) -> dict:
        return {}

    def close(self, stream_id, keep_state=False) -> None:
        pass

    def shutdown(self, checkpoint=True, timeout_s=None):
        self._todo.put(None)
        return None

    @property
    def model(self):
        """What an engine process says of its model in its hello (a parameter's dtype and device)."""
        import torch

        return torch.nn.Linear(1, 1)


def _serve_stub(*args) -> None:
    """An engine process (streamret.engine.engine_process.serve) whose Engine is a StubEngine: ShardedEngine's
    parent half and the pipes as they are, the engines' own CPU next to none (--engine procs-stub)."""
    from streamret.engine.engine import Engine
    from streamret.engine.engine_process import serve

    Engine.from_model = staticmethod(lambda *a, **k: StubEngine())
    serve(*args)


def thread_role(name: str) -> str:
    """What a thread of the server process does, by its name (module doc); other Python threads by their name
    without its numbers ("py:streamret-rpc_")."""
    if name == "streamret-server":
        return "loop"
    if name.endswith(("-send", "-read")) and name.startswith("streamret-shard-"):
        return "shard_send" if name.endswith("-send") else "shard_read"
    if name == "stub-acks" or name.startswith("streamret-engine-"):
        return "engine"
    return "native" if name == "native" else "py:" + name.rstrip("0123456789")


def _cpu_seconds(stat_path: str) -> float:
    """utime + stime of a /proc stat file (a process's: all its threads; a task's: that thread)."""
    with open(stat_path) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def thread_cpu_by_role(engine_pids: list[int] = (), front_pids: list[int] = ()) -> dict[str, float]:
    """CPU seconds of this process's threads so far, by role ("native" for threads Python does not know), plus
    "engine_procs": the CPU of these engine processes, and "front_procs": of these front processes."""
    names = {t.native_id: t.name for t in threading.enumerate()}
    out: dict[str, float] = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            seconds = _cpu_seconds(f"/proc/self/task/{tid}/stat")
        except OSError:
            continue
        role = thread_role(names.get(int(tid), "native"))
        out[role] = out.get(role, 0.0) + seconds
    if engine_pids:
        out["engine_procs"] = sum(_cpu_seconds(f"/proc/{pid}/stat") for pid in engine_pids)
    if front_pids:
        out["front_procs"] = sum(_cpu_seconds(f"/proc/{pid}/stat") for pid in front_pids)
    return out


def _thread_of(frame: str) -> str:
    """py-spy's thread frame ("thread (6638): streamret-server", or without a name) as a role."""
    _, colon, name = frame.partition("): ")
    return thread_role(name.strip() if colon and name.strip() else "native")


def _own_frame(frames: list[str]) -> str:
    """The innermost frame in streamret's or grpc's code (the call that costs, as this project sees it), else the
    innermost frame."""
    for frame in reversed(frames[1:]):
        if "streamret/" in frame or "grpc" in frame:
            return frame
    return frames[-1]


def aggregate_profile(raw: Path, cpu_us: dict[str, float] | None = None, top: int = 30) -> str:
    """py-spy's raw stacks (`--threads`: the thread first) summed by thread role, then by role and innermost
    streamret or grpc frame. cpu_us: CPU us per chunk by role: a role's samples are then shown as its share of
    that (in us per chunk), not only as a percentage. gRPC's own work (Cython, no Python frames) counts on the
    servicer line that called into it: context.read(), context.write() or, under Handle._run, gRPC's
    completion callbacks."""
    counts: Counter = Counter()
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        frames = stack.split(";")
        counts[(_thread_of(frames[0]), _own_frame(frames))] += int(n)
    total = sum(counts.values()) or 1
    by_role: Counter = Counter()
    for (role, _), n in counts.items():
        by_role[role] += n

    def us(role: str, n: int) -> str:
        if not cpu_us or role not in cpu_us:
            return "        "
        return f"{cpu_us[role] * n / by_role[role]:6.1f}us"

    lines = [f"{100 * n / total:5.1f}%  {us(role, n)}  {role}" for role, n in by_role.most_common()]
    lines.append("")
    lines += [f"{100 * n / total:5.1f}%  {us(role, n)}  {role:12s} {frame}"
              for (role, frame), n in counts.most_common(top)]
    return "\n".join(lines)


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

    async def send_initial_metadata(self, metadata) -> None:
        pass

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

    engine_pids = list(getattr(engine, "pids", ()))
    best = None
    for r in range(args.repeat):
        t0, cpu0 = time.perf_counter(), thread_cpu_by_role(engine_pids)
        sent = sum(await asyncio.gather(*[one_call(f"r{r}-s{s}") for s in range(args.streams)]))
        wall, cpu1 = time.perf_counter() - t0, thread_cpu_by_role(engine_pids)
        if sent != args.streams * args.chunks:
            raise RuntimeError(f"{sent} acks for {args.streams * args.chunks} chunks")
        us = {k: round(1e6 * (cpu1[k] - cpu0.get(k, 0.0)) / sent, 1) for k in sorted(cpu1)}
        us = {k: v for k, v in us.items() if v}
        row = {"engine": args.engine, "chunks": sent, "loop_us_per_chunk": us.get("loop", 0.0),
               "server_us_per_chunk": round(sum(v for k, v in us.items() if k not in ("engine", "engine_procs")), 1),
               "cpu_us_per_chunk": us, "chunks_per_s": round(sent / wall)}
        best = row if best is None or row["server_us_per_chunk"] < best["server_us_per_chunk"] else best
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
    ap.add_argument("--engine", choices=("stub", "procs-stub", "sharded", "inproc"), default="stub",
                    help="what the server serves (module doc)")
    ap.add_argument("--engine-procs", type=int, default=2, help="--engine sharded: engine processes")
    ap.add_argument("--model", default="random:tiny", help="--engine sharded or inproc: the model (on the CPU)")
    ap.add_argument("--channels", type=int, default=1,
                    help="gRPC connections per load process (the kernel spreads connections over front processes)")
    ap.add_argument("--front-procs", type=int, default=1,
                    help="gRPC server processes on the port (--engine procs-stub or sharded; module doc)")
    ap.add_argument("--switch-interval", type=float, default=None,
                    help="sys.setswitchinterval of the server process, seconds (Python's default: 0.005)")
    ap.add_argument("--gc-threshold", help="gc.set_threshold of the server process, e.g. 700,10,10 (Python's default)")
    ap.add_argument("--load-fraction", type=float,
                    help="then run again at this fraction of the saturation chunk rate (e.g. 0.5: half load)")
    ap.add_argument("--no-grpc", action="store_true", help="the servicer's Python alone (module doc)")
    ap.add_argument("--repeat", type=int, default=5, help="--no-grpc: runs; the best one is reported")
    args = ap.parse_args(argv)
    if args.switch_interval is not None:
        sys.setswitchinterval(args.switch_interval)
    if args.gc_threshold:
        import gc

        gc.set_threshold(*(int(x) for x in args.gc_threshold.split(",")))
    if args.no_grpc and args.front_procs > 1:
        ap.error("--front-procs is for the gRPC run: front processes are gRPC servers (leave out --no-grpc)")
    if args.no_grpc:
        engine = start_engine(args)
        out: dict = {}

        def serve() -> None:  # on a thread named as the server's loop thread, so that its CPU counts as "loop"
            out["row"] = asyncio.run(run_without_grpc(args, engine))

        loop_thread = threading.Thread(target=serve, name="streamret-server")
        try:
            loop_thread.start()
            loop_thread.join()
        finally:
            engine.shutdown()
        if "row" not in out:
            return 1
        print(json.dumps(out["row"]), flush=True)
        return 0

    from service import run_service

    from streamret.gc_pauses import freeze_startup
    from streamret.service.ack_legs import format_legs
    from streamret.service.fronts import FrontProcesses
    from streamret.service.limits import ServiceLimits
    from streamret.service.server import BackgroundServer, ServerConfig

    if args.front_procs > 1 and args.engine not in ("procs-stub", "sharded"):
        ap.error(f"--front-procs {args.front_procs} needs engine processes: --engine procs-stub or sharded")
    engine = start_engine(args)
    engine_pids = list(getattr(engine, "pids", ()))
    config = ServerConfig(port=0, limits=ServiceLimits(max_streams_per_tenant=max(10_000, 4 * args.streams),
                                                       idle_evict_s=0, max_calls_per_tenant=2 * args.streams + 64))
    fronts = None if args.front_procs == 1 else FrontProcesses(engine, config, args.front_procs, log_level="WARNING",
                                                               switch_interval=args.switch_interval)
    server = BackgroundServer(engine, config, fronts=fronts)
    freeze_startup()  # as `streamret serve` does once its server is up (server.serve)
    front_pids = fronts.pids if fronts is not None else []
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
        cpu0 = thread_cpu_by_role(engine_pids, front_pids)
        result = run_service(target, args, "front", rate=None, server=server)
        cpu1 = thread_cpu_by_role(engine_pids, front_pids)
        if args.load_fraction:
            rate = args.load_fraction * result["chunks"] / result["seconds"] / args.streams
            half = run_service(target, args, "part", rate=rate, server=server)
    finally:
        if spy is not None:
            spy.send_signal(signal.SIGINT)  # py-spy writes its file as it stops on SIGINT
            spy.wait()
        server.stop()
        engine.shutdown()
    chunks = result["chunks"]
    us = {k: round(1e6 * (cpu1[k] - cpu0.get(k, 0.0)) / max(1, chunks), 1) for k in sorted(cpu1)}
    server_us = round(sum(v for k, v in us.items() if k not in ("engine", "engine_procs")), 1)
    out = {"engine": args.engine, "front_procs": args.front_procs, "chunks": chunks, "seconds": result["seconds"],
           "chunks_per_s": round(chunks / result["seconds"], 1), "ack_p50_ms": result["ack_p50_ms"],
           "ack_p99_ms": result["ack_p99_ms"], "cpu_us_per_chunk": us, "server_us_per_chunk": server_us,
           **{k: v for k, v in result.items() if k.startswith("server_")}}
    print(json.dumps(out), flush=True)
    print(format_legs(result["ack_legs"]), flush=True)
    if args.load_fraction:
        print(json.dumps({"load_fraction": args.load_fraction, **{k: v for k, v in half.items() if k in (
            "chunks", "seconds", "ack_p50_ms", "ack_p99_ms", "ack_max_ms", "client_gc_pause_max_ms")
            or k.startswith(("server_", "call_setup_"))}}), flush=True)
        print(format_legs(half["ack_legs"]), flush=True)
    if args.profile and Path(args.profile).exists():
        print(aggregate_profile(Path(args.profile), us if args.spy_mode == "cpu" else None))
    return 0


def start_engine(args: argparse.Namespace):
    """The engine the server serves (--engine, module doc)."""
    if args.engine == "stub":
        return StubEngine()
    from streamret.engine import Engine, EngineConfig, ShardedEngine, shards

    config = EngineConfig(durable_every_chunks=0)  # no state dir: the serving path alone
    if args.engine == "inproc":
        return Engine.from_model(args.model, "cpu", None, config)
    if args.engine == "procs-stub":  # the engine processes run _serve_stub (spawned: found in this module)
        shards.serve = _serve_stub
    return ShardedEngine(args.model, "cpu", None, config, procs=args.engine_procs, listen=args.front_procs > 1)


if __name__ == "__main__":
    sys.exit(main())
