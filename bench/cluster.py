"""Cluster benchmark on one machine: tokens/s with 1, 2, 4 CPU workers (scaling efficiency), and the time
from a worker's death to its streams serving again.

    python3 bench/cluster.py                                   # both parts, CPU workers, a few minutes
    python3 bench/cluster.py --workers 1,2,4 --seconds 20 --model random:small --window 1
    python3 bench/cluster.py --skip-throughput                 # failover only

Load is applied at the gateway's engine (ClusterEngine, the object the gRPC server calls), so the
figures are the cluster's: routing, Ray calls, worker engines and the durable store (one fsynced
record per chunk, the default policy), without gRPC and client overheads.

Throughput: S streams each keep W chunks of C bytes in flight for T seconds after a warm-up; tokens
are counted from the acks (byte tokenizer: one token per ASCII byte). Efficiency(N) = tokens/s(N) /
(N x tokens/s(1)). Each worker is one Ray actor with --cpus-per-worker CPUs (Ray sets its threads).

Failover: 2 workers, S streams appending steadily; a stream whose chunk fails with UNAVAILABLE
resyncs like streamret.client (open -> applied_seq, resend from there) every --retry-s. One worker
is killed (`ray.kill`) while the streams run: first so that Ray restarts it, then for good (the
coordinator replaces it and its streams move to the survivor). Reported per kill: for the streams
that failed, the time from the kill to their first acked chunk after it (median, max).

Writes DIR/cluster.json (DIR: --out, else $OUT, else .).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))
import ray  # noqa: E402
import torch  # noqa: E402

from streamret.cluster.coordinator import NAMESPACE  # noqa: E402
from streamret.cluster.launch import join_cluster  # noqa: E402
from streamret.cluster.wire import WorkerResources, WorkerSpec  # noqa: E402
from streamret.errors import StreamRetError  # noqa: E402

WORDS = "state stream token retention decay chunk engine summary segment model the a of and to in".split()


def chunk_text(i: int, n_bytes: int) -> bytes:
    words = " ".join(WORDS[(i * 7 + j) % len(WORDS)] + ("." if j % 9 == 8 else "") for j in range(n_bytes))
    return (" " + words).encode()[:n_bytes]


def start(args, workers: int):
    spec = WorkerSpec(model=args.model, state_url=tempfile.mkdtemp(prefix="streamret-bench-"), device="cpu",
                      dtype="float32")
    return join_cluster(None, spec, workers, WorkerResources(num_gpus=0, num_cpus=args.cpus_per_worker,
                                                             max_restarts=2))


class Streamer:
    """One stream appending chunks with up to `window` in flight, resyncing after a failure."""

    def __init__(self, engine, sid: str, chunk: bytes, window: int, retry_s: float):
        self.engine, self.sid, self.chunk, self.window, self.retry_s = engine, sid, chunk, window, retry_s
        self.next_seq = 1
        self.tokens = 0
        self.acks: list[float] = []  # times of acked chunks
        self.failures: list[float] = []  # times of failed chunks
        self.errors: dict[str, int] = {}  # failed chunks by error type
        self._room = threading.Semaphore(window)
        self._broken = threading.Event()

    def run(self, until: float) -> None:
        while time.monotonic() < until:
            if self._broken.is_set():
                self._resync(until)
                continue
            if not self._room.acquire(timeout=0.1):
                continue
            seq, self.next_seq = self.next_seq, self.next_seq + 1
            try:
                fut = self.engine.submit_append(self.sid, seq, self.chunk)
            except StreamRetError as e:
                self._room.release()
                self._failed(e)
                continue
            fut.add_done_callback(self._done)

    def _done(self, fut) -> None:
        self._room.release()
        if fut.exception() is not None:
            self._failed(fut.exception())
            return
        ack = fut.result()
        self.tokens = max(self.tokens, ack.tokens)
        self.acks.append(time.monotonic())

    def _failed(self, exc: BaseException) -> None:
        self.failures.append(time.monotonic())
        self.errors[type(exc).__name__] = self.errors.get(type(exc).__name__, 0) + 1
        self._broken.set()

    def settle(self) -> None:
        """Wait until no chunk of this stream is in flight."""
        for _ in range(self.window):
            self._room.acquire()
        for _ in range(self.window):
            self._room.release()

    def _resync(self, until: float) -> None:
        """What streamret.client does: wait for the chunks in flight, ask where the stream stands, go on."""
        self.settle()
        while time.monotonic() < until:
            try:
                info = self.engine.open(self.sid, create_if_missing=False)
                self.next_seq = info.applied_seq + 1
                self._broken.clear()
                return
            except StreamRetError:
                time.sleep(self.retry_s)


def drive(engine, streamers: list[Streamer], seconds: float) -> None:
    until = time.monotonic() + seconds
    threads = [threading.Thread(target=s.run, args=(until,), daemon=True) for s in streamers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for s in streamers:
        s.settle()




def loop_seconds(engine) -> dict[str, float]:
    """Seconds each worker's engine step loop has spent working (model + host side)."""
    return {name: st.get("loop_model_seconds", 0.0) + st.get("loop_host_seconds", 0.0)
            for name, st in engine.stats()["workers"].items() if isinstance(st, dict)}


def throughput(args) -> list[dict]:
    rows = []
    for n in args.workers:
        engine = start(args, n)
        try:
            streamers = [Streamer(engine, f"t{n}-{i}", chunk_text(i, args.chunk_bytes), args.window, args.retry_s)
                         for i in range(args.streams)]
            drive(engine, streamers, args.warmup_s)
            before, busy0 = sum(s.tokens for s in streamers), loop_seconds(engine)
            t0, cpu0 = time.monotonic(), time.process_time()
            drive(engine, streamers, args.seconds)
            elapsed, gateway_cpu = time.monotonic() - t0, time.process_time() - cpu0
            tokens = sum(s.tokens for s in streamers) - before
            failures = sum(len(s.failures) for s in streamers)
            busy = [(b - busy0.get(w, 0.0)) / elapsed for w, b in loop_seconds(engine).items()]
            row = {"workers": n, "tokens": tokens, "seconds": round(elapsed, 2), "tokens_per_s": tokens / elapsed,
                   "failed_chunks": failures, "gateway_cpu_per_s": gateway_cpu / elapsed,
                   "worker_loop_busy": [round(b, 3) for b in busy]}
            rows.append(row)
            print(f"{n} workers: {row['tokens_per_s']:10.0f} tokens/s  ({tokens} tokens in {elapsed:.1f} s, "
                  f"{failures} failed chunks; gateway {row['gateway_cpu_per_s']:.2f} CPU-s/s, worker step loops "
                  f"busy {', '.join(f'{b:.0%}' for b in busy)})", flush=True)
        finally:
            engine.shutdown()
    base = rows[0]["tokens_per_s"] / rows[0]["workers"]
    for row in rows:
        row["efficiency"] = row["tokens_per_s"] / (row["workers"] * base)
    return rows


def failover(args) -> list[dict]:
    engine = start(args, 2)
    out = []
    try:
        for restart in (True, False):
            victim = engine.workers[0]
            streamers = [Streamer(engine, f"f{int(restart)}-{i}", chunk_text(i, args.chunk_bytes), args.window,
                                  args.retry_s) for i in range(args.streams)]
            killed = {}

            def kill(victim=victim, restart=restart, killed=killed):
                time.sleep(args.kill_after_s)
                killed["t"] = time.monotonic()
                ray.kill(ray.get_actor(victim, namespace=NAMESPACE), no_restart=not restart)

            killer = threading.Thread(target=kill)
            killer.start()
            drive(engine, streamers, args.kill_after_s + args.recover_s)
            killer.join()
            t_kill = killed["t"]
            hit = [s for s in streamers if any(t >= t_kill for t in s.failures)]
            recovered = [min(t for t in s.acks if t > max(s.failures)) - t_kill for s in hit
                         if any(t > max(s.failures) for t in s.acks)]
            row = {"kill": "restarted by Ray" if restart else "dead for good, replaced", "worker": victim,
                   "streams": len(streamers), "streams_hit": len(hit), "streams_recovered": len(recovered),
                   "errors": {k: sum(s.errors.get(k, 0) for s in streamers)
                              for k in sorted({k for s in streamers for k in s.errors})},
                   "median_s": statistics.median(recovered) if recovered else None,
                   "max_s": max(recovered) if recovered else None,
                   "workers_after": list(engine.workers)}
            out.append(row)
            print(f"kill ({row['kill']}): {len(hit)} of {len(streamers)} streams hit, {len(recovered)} serving "
                  f"again; death -> serving: median {row['median_s']:.2f} s, max {row['max_s']:.2f} s", flush=True)
            time.sleep(args.settle_s)  # let the replacement come up before the next kill
    finally:
        engine.shutdown()
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="random:tiny")
    p.add_argument("--workers", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2, 4])
    p.add_argument("--cpus-per-worker", type=float, default=1.0)
    p.add_argument("--streams", type=int, default=32)
    p.add_argument("--window", type=int, default=2, help="chunks in flight per stream")
    p.add_argument("--chunk-bytes", type=int, default=1024)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--warmup-s", type=float, default=5.0)
    p.add_argument("--retry-s", type=float, default=0.02, help="resync poll interval after a failure")
    p.add_argument("--kill-after-s", type=float, default=5.0)
    p.add_argument("--recover-s", type=float, default=20.0)
    p.add_argument("--settle-s", type=float, default=10.0)
    p.add_argument("--skip-throughput", action="store_true")
    p.add_argument("--skip-failover", action="store_true")
    p.add_argument("--out", default=os.environ.get("OUT", "."))
    args = p.parse_args()

    ray.init(num_cpus=max(args.workers) * args.cpus_per_worker + 1, include_dashboard=False, log_to_driver=False)
    try:
        result = {
            "date": time.strftime("%Y-%m-%d %H:%M"), "machine": platform.node(), "cpus": os.cpu_count(),
            "cpu": platform.processor() or platform.machine(), "python": platform.python_version(),
            "torch": torch.__version__, "ray": ray.__version__, "command": " ".join(sys.argv),
            "model": args.model, "streams": args.streams, "window": args.window, "chunk_bytes": args.chunk_bytes,
        }
        if not args.skip_throughput:
            result["throughput"] = throughput(args)
        if not args.skip_failover:
            result["failover"] = failover(args)
    finally:
        ray.shutdown()
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "cluster.json"), "w") as f:
        json.dump(result, f, indent=2)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
