"""Ray on a GPU against the embedded server, in one run (issue 19): what a user runs, as a user runs it.

    source bench/device_env.sh; python3 bench/cluster_gpu.py --out $OUT          # H200 defaults (~5 min)
    python bench/cluster_gpu.py --model random:tiny --device cpu --gpus-per-worker 0 --streams 4 --chunks 4 \\
        --chunk-bytes 512 --procs 1 --half-chunks 2 --kills 1 --kill-streams 2 --kill-chunks 20 --kill-after-s 1 \\
        --embed-docs 16 --embed-doc-bytes 2048 --out /tmp/cg                   # the same parts on a CPU

Every server is a `streamret serve` subprocess with a --state-dir (durable record per chunk, the default
policy), its output in DIR/serve_<name>.log; `--ray` starts its own local Ray (RAY_ADDRESS cleared).

(a) throughput: the same streams (--streams, each --chunks chunks of --chunk-bytes, --window in flight, load
    from --procs processes of bench/service.py) through `serve` (embedded engine) and through `serve --ray
    --workers 1 --gpus-per-worker G`: tokens/s and ack p50/p99 at saturation, then ack p50/p99 at the same
    fixed rate on both (--load-fraction of the embedded saturation, --half-chunks per stream); the ratios;
    and each stream's embedding, Ray against embedded.
(b) kills: on the same Ray server, --kills rounds; each streams --kill-streams texts (--kill-chunks chunks,
    --kill-pace-s apart) with streamret.client (retries, resend from durable_seq) and kills the worker actor
    (`ray.kill`, Ray restarts it) --kill-after-s into the round. Per kill: the worker back (its new
    incarnation answers), each stream's first ack after that (from the kill), and against an undisturbed run of
    the same texts on the same server: chunks lost / applied twice (below) and the embeddings' largest relative
    difference.
(c) batch: `streamret embed` (local job) and `streamret embed --ray --workers 1 --gpus-per-worker G` (Ray Data,
    one engine actor) on the same Parquet corpus (--embed-docs documents of --embed-doc-bytes): tokens/s as each
    command prints it (both from the model loaded and ready, the Ray actor's, to the last row written), each
    command's own total (with the model load; with Ray's and the actor's start) and its wall time, the lines
    each prints on its engine's steps (and the Ray actor's start and busy time), and the outputs compared row
    by row. Only this part, on a corpus large enough for the H200 (33 M tokens, ~2.5 min):
        python3 bench/cluster_gpu.py --parts batch --embed-docs 4000 --out $OUT/cluster_gpu

Chunks lost / applied twice: a stream's final token count (after its flush) against the undisturbed run's;
with the byte tokenizer of the random: presets a token is a byte, so the difference over --kill-chunk-bytes is
in chunks. float32 by default (--dtype): bf16 packs the same text differently into steps at each run, which
alone moves embeddings by more than the 1e-5 the equality checks ask.

Writes DIR/cluster_gpu.json after every part (DIR: --out, else $OUT, else .) and prints a table last.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

# Ray 2.60 starts a local Ray with token auth on (its token in ~/.ray/auth_token); a driver joining it by an
# explicit address (the server's, below: `auto` finds the newest local Ray, not necessarily the server's) sends
# the token only in token mode, which Ray reads once, before its first import
os.environ.setdefault("RAY_AUTH_MODE", "token")
BENCH = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH.parent), str(BENCH)]
import service as load_gen  # noqa: E402  (bench/service.py: gRPC load processes, ack latencies)

SERVING = re.compile(r"^streamret serving \S+ on [^:]+:(\d+)")
RAY_AT = re.compile(r"started a local Ray at (\S+)")
EMBED_DONE = re.compile(r"(\d+) documents \((\d+) with an error\) and (\d+) tokens in ([\d.]+) s \(([\d,]+) "
                        r"tokens/s, .*?; ([\d.]+) s in all")


# ------------------------------------------------------------------------------------------------
# servers


class Server:
    """`streamret serve` in a subprocess, its output in a log file; ready once it prints its port."""

    def __init__(self, name: str, args, extra: list[str], out_dir: Path):
        self.name = name
        self.state_dir = tempfile.mkdtemp(prefix=f"streamret-{name}-")
        cmd = [sys.executable, "-m", "streamret.cli", "serve", "--model", args.model, "--device", args.device,
               "--dtype", args.dtype, "--port", "0", "--state-dir", self.state_dir, "--idle-evict-s", "0",
               "--max-calls-per-tenant", str(4 * max(args.streams, args.kill_streams) + 64),
               "--max-streams-per-tenant", str(100_000), "--log-level", "INFO", *extra]
        self.log_path = out_dir / f"serve_{name}.log"
        self._log = open(self.log_path, "w")  # noqa: SIM115  (closed in stop)
        self.port: int | None = None
        self.ray_address: str | None = None
        self._ready = threading.Event()
        t0 = time.monotonic()
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     env={**os.environ, "RAY_ADDRESS": ""})
        threading.Thread(target=self._read, daemon=True).start()
        deadline = t0 + args.start_timeout_s
        while not self._ready.wait(0.2):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"`streamret serve` ({name}) did not start; see {self.log_path}")
        self.start_s = time.monotonic() - t0

    def _read(self) -> None:
        for line in self.proc.stdout:
            self._log.write(line)
            if self.port is None and (m := SERVING.match(line)):
                self.port = int(m.group(1))
                self._ready.set()
            if self.ray_address is None and (m := RAY_AT.search(line)):
                self.ray_address = m.group(1)
        self._log.flush()

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> int | None:
        """SIGTERM (the server drains), then the exit code; killed after 90 s."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(90)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.flush()
        shutil.rmtree(self.state_dir, ignore_errors=True)
        return self.proc.returncode


def model_info(target: str) -> dict:
    from streamret.client import Client

    with Client(target) as c:
        info = c.model_info()
    return {"device": info.device or None, "dtype": info.dtype or None}  # empty from a cluster gateway


def embeddings(target: str, stream_ids: list[str]) -> dict[str, tuple[int, np.ndarray]]:
    """{stream: (tokens, embedding)} read through the server."""
    from streamret.client import Client

    with Client(target) as c:
        return {sid: (c.open(sid, create_if_missing=False).tokens, c.embedding_array(sid)) for sid in stream_ids}


def rel_diff(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


# ------------------------------------------------------------------------------------------------
# (a) throughput and latency


def load_args(args, chunks: int) -> argparse.Namespace:
    return argparse.Namespace(streams=args.streams, chunks=chunks, chunk_bytes=args.chunk_bytes, window=args.window,
                              procs=args.procs, text_file=None)


def serve_phases(server: Server, args, rate: float | None) -> dict:
    """Warm-up, saturation, then `rate` chunks/s per stream (None: --load-fraction of this server's saturation);
    the same stream ids and texts on every server."""
    out: dict = {"start_s": round(server.start_s, 2), "model_info": model_info(server.target)}
    load_gen.run_service(server.target, load_args(args, args.warmup_chunks), "warm", None)
    sat = out["saturate"] = load_gen.run_service(server.target, load_args(args, args.chunks), "sat", None)
    if args.half_chunks:
        rate = rate or args.load_fraction * sat["chunks"] / sat["seconds"] / args.streams
        out["fixed_rate"] = load_gen.run_service(server.target, load_args(args, args.half_chunks), "rate", rate)
    return out


# ------------------------------------------------------------------------------------------------
# (b) kills


def kill_texts(args) -> list[list[bytes]]:
    return [load_gen.chunks_of(10_000 + i, args.kill_chunks, args.kill_chunk_bytes) for i in range(args.kill_streams)]


async def stream_all(target: str, prefix: str, texts: list[list[bytes]], pace_s: float, retry_s: float,
                     during=None) -> tuple[dict, object]:
    """Stream each text with streamret.client (resends from durable_seq after a failure) while `during()` runs;
    returns ({stream: (StreamInfo, embedding, ack times, duplicate acks)}, what `during` returned)."""
    from streamret.client import AsyncClient, RetryPolicy

    async with AsyncClient(target, retry=RetryPolicy(timeout_s=retry_s)) as client:

        async def paced(chunks):
            for c in chunks:
                yield c
                if pace_s:
                    await asyncio.sleep(pace_s)

        async def one(sid: str, chunks: list[bytes]):
            acks: list[float] = []
            dups = [0]

            def on_ack(ack) -> None:
                acks.append(time.monotonic())
                dups[0] += ack.duplicate

            await client.stream(sid, paced(chunks), on_ack=on_ack)
            info = await client.open(sid, create_if_missing=False)
            return info, await client.embedding_array(sid), acks, dups[0]

        jobs = [one(f"{prefix}-{i}", chunks) for i, chunks in enumerate(texts)]
        side = asyncio.create_task(asyncio.to_thread(during)) if during else None
        results = await asyncio.gather(*jobs)
        return dict(zip([f"{prefix}-{i}" for i in range(len(texts))], results)), (await side if side else None)


def worker_handle(ray_address: str | None):
    """(name, actor handle) of the cluster's one worker, from the coordinator of the server's Ray."""
    import ray

    from streamret.cluster.coordinator import COORDINATOR_NAME, NAMESPACE

    if ray_address is None:  # ray.init(address=None) would start a cluster of its own
        raise RuntimeError("the Ray server did not log `started a local Ray at ADDRESS`; see its serve_ray.log")
    if not ray.is_initialized():
        ray.init(address=ray_address, namespace=NAMESPACE, log_to_driver=False)
    status = ray.get(ray.get_actor(COORDINATOR_NAME, namespace=NAMESPACE).status.remote())
    live = sorted(n for n, w in status["workers"].items() if w["state"] == "live")
    if len(live) != 1:
        raise RuntimeError(f"expected one live worker, got {live}")
    return live[0], ray.get_actor(live[0], namespace=NAMESPACE)


def kill_and_wait(handle, after_s: float) -> dict:
    """Kill the worker `after_s` from now (Ray restarts it); when its new incarnation answers."""
    import ray

    old = ray.get(handle.hello.remote())["incarnation"]
    time.sleep(after_s)
    t_kill = time.monotonic()
    ray.kill(handle, no_restart=False)
    while True:
        try:
            hello = ray.get(handle.hello.remote(), timeout=60)
        except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
            time.sleep(0.02)
            continue
        if hello["incarnation"] != old:
            return {"t_kill": t_kill, "t_back": time.monotonic(), "hello": hello}
        time.sleep(0.01)


def compare_to(results: dict, reference: list[tuple[int, np.ndarray]], n_chunks: int, chunk_bytes: int) -> dict:
    """Each stream against the undisturbed run of its text: chunks lost or applied twice (from token counts:
    a byte tokenizer's token is a byte), applied_seq, the embeddings' largest relative difference."""
    short = excess = seq_wrong = 0
    worst = 0.0
    for i, (info, emb, _, _) in enumerate(results.values()):
        ref_tokens, ref_emb = reference[i]
        short += max(0, ref_tokens - info.tokens)
        excess += max(0, info.tokens - ref_tokens)
        seq_wrong += info.applied_seq != n_chunks + 1  # the chunks plus the client's final flush
        worst = max(worst, rel_diff(emb, ref_emb))
    return {"chunks_lost": -(-short // chunk_bytes), "chunks_applied_twice": -(-excess // chunk_bytes),
            "tokens_short": short, "tokens_excess": excess, "streams_with_wrong_applied_seq": seq_wrong,
            "max_rel_diff_vs_undisturbed": worst}


def kills(server: Server, handle, args, embedded_ref: list | None) -> dict:
    import ray

    texts = kill_texts(args)
    undisturbed, _ = asyncio.run(stream_all(server.target, "undisturbed", texts, 0.0, args.retry_timeout_s))
    reference = [(info.tokens, emb) for info, emb, _, _ in undisturbed.values()]
    out: dict = {"undisturbed_vs_embedded_max_rel_diff": max(rel_diff(a[1], b[1]) for a, b in
                                                             zip(reference, embedded_ref, strict=True))
                 if embedded_ref else None, "rounds": []}
    out["worker_before"] = {"hello": ray.get(handle.hello.remote()), "stats": worker_stats(handle)}
    for r in range(args.kills):
        results, k = asyncio.run(stream_all(server.target, f"kill{r}", texts, args.kill_pace_s, args.retry_timeout_s,
                                            during=lambda: kill_and_wait(handle, args.kill_after_s)))
        again = [min(t for t in acks if t >= k["t_back"]) - k["t_kill"]
                 for _, _, acks, _ in results.values() if any(t >= k["t_back"] for t in acks)]
        row = {"round": r + 1, "worker_back_s": round(k["t_back"] - k["t_kill"], 3),
               "streams": len(results), "streams_acked_after_restart": len(again),
               "serving_again_median_s": round(float(np.median(again)), 3) if again else None,
               "serving_again_max_s": round(max(again), 3) if again else None,
               "duplicate_acks": sum(d for _, _, _, d in results.values()),
               "device_after": k["hello"]["device"], "gpu_ids_after": k["hello"].get("gpu_ids"),
               **compare_to(results, reference, args.kill_chunks, args.kill_chunk_bytes)}
        out["rounds"].append(row)
        print(f"kill {r + 1}: worker back in {row['worker_back_s']:.2f} s, streams serving again after "
              f"{row['serving_again_median_s']} s (median) / {row['serving_again_max_s']} s (max); lost "
              f"{row['chunks_lost']}, applied twice {row['chunks_applied_twice']}, max rel diff "
              f"{row['max_rel_diff_vs_undisturbed']:.2e}", flush=True)
    out["worker_after"] = {"hello": ray.get(handle.hello.remote()), "stats": worker_stats(handle)}
    return out


def worker_stats(handle) -> dict:
    """The worker engine's state tiers and CUDA graph count: where its streams' states live."""
    import ray

    st = ray.get(handle.stats.remote())
    return {k: st.get(k) for k in ("streams", "device_stream_capacity", "cuda_graph_captures", "steps",
                                   "tokens_processed")}


# ------------------------------------------------------------------------------------------------
# (c) batch


def write_corpus(folder: Path, docs: int, doc_bytes: int, files: int = 4) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True)
    for f in range(files):
        rows = range(f, docs, files)
        texts = [load_gen.make_text(20_000 + i, doc_bytes).decode() for i in rows]
        pq.write_table(pa.table({"id": [f"doc-{i}" for i in rows], "text": texts}), folder / f"part-{f}.parquet")


def embed_command(args, corpus: Path, output: Path, log: Path, ray_args: list[str]) -> dict:
    cmd = [sys.executable, "-m", "streamret.cli", "embed", str(corpus), "-o", str(output), "--model", args.model,
           "--device", args.device, "--dtype", args.dtype, "--no-progress", *ray_args]
    t0 = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "RAY_ADDRESS": ""})
    wall = time.monotonic() - t0
    log.write_text(proc.stdout + proc.stderr)
    m = EMBED_DONE.search(proc.stdout)
    if proc.returncode != 0 or m is None:
        raise RuntimeError(f"{' '.join(cmd)} failed (exit {proc.returncode}); see {log}")
    docs, errors, tokens, seconds = int(m.group(1)), int(m.group(2)), int(m.group(3)), float(m.group(4))
    detail = proc.stdout[m.end():].split("\n")[1:]  # the lines after the figures: the engines, the Ray actors
    return {"documents": docs, "errors": errors, "tokens": tokens, "job_s": seconds, "job_total_s": float(m.group(6)),
            "tokens_per_s": float(m.group(5).replace(",", "")), "wall_s": round(wall, 2),
            "tokens_per_wall_s": round(tokens / wall, 1), "detail": [line for line in detail if line.strip()]}


def compare_outputs(a: Path, b: Path) -> dict:
    import pyarrow.parquet as pq

    ta, tb = pq.read_table(a).sort_by("id"), pq.read_table(b).sort_by("id")
    if ta.column("id").to_pylist() != tb.column("id").to_pylist():
        return {"same_ids": False}
    ea = np.asarray(ta.column("embedding").to_pylist(), np.float64)
    eb = np.asarray(tb.column("embedding").to_pylist(), np.float64)
    rel = np.linalg.norm(ea - eb, axis=1) / np.maximum(np.linalg.norm(eb, axis=1), 1e-30)
    return {"same_ids": True, "rows": ta.num_rows, "max_rel_diff": float(rel.max()) if len(rel) else 0.0,
            "max_abs_diff": float(np.abs(ea - eb).max()) if len(rel) else 0.0,
            "tokens_differ": int(sum(x != y for x, y in zip(ta.column("tokens").to_pylist(),
                                                            tb.column("tokens").to_pylist()))),
            "summaries_differ": int(sum(x != y for x, y in zip(ta.column("summary").to_pylist(),
                                                               tb.column("summary").to_pylist())))}


def batch(args, out_dir: Path) -> dict:
    work = Path(tempfile.mkdtemp(prefix="streamret-embed-"))
    try:
        write_corpus(work / "corpus", args.embed_docs, args.embed_doc_bytes)
        local = embed_command(args, work / "corpus", work / "local", out_dir / "embed_local.log", [])
        on_ray = embed_command(args, work / "corpus", work / "ray", out_dir / "embed_ray.log",
                               ["--ray", "--workers", "1", "--gpus-per-worker", str(args.gpus_per_worker)])
        return {"docs": args.embed_docs, "doc_bytes": args.embed_doc_bytes, "local": local, "ray": on_ray,
                "ratio_tokens_per_s": round(on_ray["tokens_per_s"] / local["tokens_per_s"], 3),
                "ratio_wall": round(local["wall_s"] / on_ray["wall_s"], 3),
                "outputs": compare_outputs(work / "ray", work / "local")}
    finally:
        shutil.rmtree(work, ignore_errors=True)


# ------------------------------------------------------------------------------------------------


def versions() -> dict:
    import ray

    out = load_gen.versions()
    out["ray"] = ray.__version__
    return out


def table(result: dict) -> str:
    lines = ["", f"== bench/cluster_gpu.py {result['date']} {result['args']['model']} {result['args']['dtype']} "
             f"gpus-per-worker {result['args']['gpus_per_worker']} =="]
    if "serve" in result:
        e, r = result["serve"]["embedded"], result["serve"]["ray"]
        lines.append(f"{'':24}{'embedded':>22}{'Ray, 1 worker':>22}{'ratio':>8}")
        worker = result.get("worker", {}).get("hello", {})
        lines.append(f"{'device':24}{str(e['model_info']['device']):>22}{str(worker.get('device')):>22}")
        lines.append(f"{'start s':24}{e['start_s']:>22.1f}{r['start_s']:>22.1f}")
        es, rs = e["saturate"], r["saturate"]
        lines.append(f"{'saturate tokens/s':24}{es['tokens_per_s']:>22,.0f}{rs['tokens_per_s']:>22,.0f}"
                     f"{result['serve']['ratio_tokens_per_s']:>8.2f}")
        lines.append(f"{'saturate ack p50/p99 ms':24}{es['ack_p50_ms']:>11.1f}/{es['ack_p99_ms']:<10.1f}"
                     f"{rs['ack_p50_ms']:>11.1f}/{rs['ack_p99_ms']:<10.1f}{result['serve']['ratio_p99']:>8.2f}")
        if "fixed_rate" in e and "fixed_rate" in r:
            ef, rf = e["fixed_rate"], r["fixed_rate"]
            lines.append(f"{'fixed-rate ack p50/p99':24}{ef['ack_p50_ms']:>11.1f}/{ef['ack_p99_ms']:<10.1f}"
                         f"{rf['ack_p50_ms']:>11.1f}/{rf['ack_p99_ms']:<10.1f}"
                         f"{rf['ack_p99_ms'] / ef['ack_p99_ms']:>8.2f}")
        lines.append(f"{'embeddings Ray vs embedded, max rel diff':48}{result['serve']['max_rel_diff']:.2e}")
        stats = result.get("worker", {}).get("stats_after_serve", {})
        lines.append(f"worker after serving: streams by tier {stats.get('streams')}, CUDA graphs captured "
                     f"{stats.get('cuda_graph_captures')}, gpu_ids {worker.get('gpu_ids')}")
    if "kills" in result:
        lines.append("kill  back_s  serving_again med/max s  lost  twice  dup_acks  max_rel_diff  device")
        for k in result["kills"]["rounds"]:
            lines.append(f"{k['round']:>4}  {k['worker_back_s']:>6.2f}  {k['serving_again_median_s']!s:>11}/"
                         f"{k['serving_again_max_s']!s:<11}  {k['chunks_lost']:>4}  {k['chunks_applied_twice']:>5}  "
                         f"{k['duplicate_acks']:>8}  {k['max_rel_diff_vs_undisturbed']:>12.2e}  {k['device_after']}")
    if "batch" in result:
        b = result["batch"]
        lines.append(f"embed {b['docs']} x {b['doc_bytes']} B: local {b['local']['tokens_per_s']:,.0f} tokens/s "
                     f"(wall {b['local']['wall_s']:.1f} s), --ray {b['ray']['tokens_per_s']:,.0f} tokens/s (wall "
                     f"{b['ray']['wall_s']:.1f} s): ratio {b['ratio_tokens_per_s']:.2f}; outputs max rel diff "
                     f"{b['outputs'].get('max_rel_diff', 'n/a')}")
        for job in ("local", "ray"):
            lines.extend(f"  {job}: {line}" for line in b[job].get("detail", []))
    for part, why in result.get("failed", {}).items():
        lines.append(f"{part}: FAILED: {why}")
    return "\n".join(lines)


def serve_and_kill(args, parts: set[str], out_dir: Path, result: dict, save) -> None:
    """Parts (a) and (b): the embedded server, then one `serve --ray` server for both."""
    import ray

    embedded, sat_embeddings, embedded_ref = None, None, None
    if "serve" in parts:
        server = Server("embedded", args, [], out_dir)
        try:
            embedded = serve_phases(server, args, None)
            sat_embeddings = embeddings(server.target, [f"sat-{s}" for s in range(args.streams)])
            if "kills" in parts:  # the kill rounds' texts, undisturbed, on the embedded server too
                ref, _ = asyncio.run(stream_all(server.target, "ref", kill_texts(args), 0.0, args.retry_timeout_s))
                embedded_ref = [(info.tokens, emb) for info, emb, _, _ in ref.values()]
        finally:
            code = server.stop()
        embedded["exit_code"] = code
        print(f"embedded: {json.dumps(embedded['saturate'])}", flush=True)
    ray_server = Server("ray", args, ["--ray", "--workers", "1", "--gpus-per-worker", str(args.gpus_per_worker),
                                      "--max-restarts", str(args.kills + 2)], out_dir)
    try:
        _, handle = worker_handle(ray_server.ray_address)
        result["worker"] = {"hello": ray.get(handle.hello.remote())}
        print(f"worker: {json.dumps(result['worker']['hello'])}", flush=True)
        if "serve" in parts:
            embedded_rate = embedded.get("fixed_rate", {}).get("chunk_rate_per_stream")
            on_ray = serve_phases(ray_server, args, embedded_rate)  # the embedded server's fixed rate
            ray_embeddings = embeddings(ray_server.target, [f"sat-{s}" for s in range(args.streams)])
            result["worker"]["stats_after_serve"] = worker_stats(handle)
            result["serve"] = {
                "embedded": embedded, "ray": on_ray,
                "ratio_tokens_per_s": round(on_ray["saturate"]["tokens_per_s"]
                                            / embedded["saturate"]["tokens_per_s"], 3),
                "ratio_p99": round(on_ray["saturate"]["ack_p99_ms"] / embedded["saturate"]["ack_p99_ms"], 3),
                "tokens_equal": all(ray_embeddings[s][0] == sat_embeddings[s][0] for s in sat_embeddings),
                "max_rel_diff": max(rel_diff(ray_embeddings[s][1], sat_embeddings[s][1]) for s in sat_embeddings),
            }
            print(f"ray: {json.dumps(on_ray['saturate'])}", flush=True)
            save()
        if "kills" in parts:
            try:
                result["kills"] = kills(ray_server, handle, args, embedded_ref)
            except Exception as e:  # noqa: BLE001  (the batch part still runs; the table says so)
                result["failed"]["kills"] = f"{type(e).__name__}: {e}"
    finally:
        ray.shutdown()  # this process's connection, before the server ends its Ray
        result["ray_server_exit_code"] = ray_server.stop()
    save()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="random:default")
    p.add_argument("--device", default="auto", help="the embedded server's and the local embed job's device")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--gpus-per-worker", type=float, default=1.0)
    p.add_argument("--parts", default="serve,kills,batch", help="which of serve, kills, batch to run")
    p.add_argument("--streams", type=int, default=128)
    p.add_argument("--chunks", type=int, default=10, help="chunks per stream in the saturation phase")
    p.add_argument("--chunk-bytes", type=int, default=4096)
    p.add_argument("--window", type=int, default=4)
    p.add_argument("--procs", type=int, default=6, help="load generator processes")
    p.add_argument("--warmup-chunks", type=int, default=2)
    p.add_argument("--half-chunks", type=int, default=6, help="chunks per stream at the fixed rate (0: skip)")
    p.add_argument("--load-fraction", type=float, default=0.5)
    p.add_argument("--kills", type=int, default=5)
    p.add_argument("--kill-streams", type=int, default=16)
    p.add_argument("--kill-chunks", type=int, default=40)
    p.add_argument("--kill-chunk-bytes", type=int, default=1024)
    p.add_argument("--kill-pace-s", type=float, default=0.15, help="pause between a stream's chunks in a kill round")
    p.add_argument("--kill-after-s", type=float, default=1.5)
    p.add_argument("--retry-timeout-s", type=float, default=120.0, help="the clients' RetryPolicy.timeout_s")
    p.add_argument("--embed-docs", type=int, default=800)
    p.add_argument("--embed-doc-bytes", type=int, default=8192)
    p.add_argument("--start-timeout-s", type=float, default=180.0)
    p.add_argument("--out", default=os.environ.get("OUT", "."))
    p.add_argument("--print-table", metavar="JSON",
                   help="print the table of a cluster_gpu.json (of a run cut short) and exit")
    args = p.parse_args()
    if args.print_table:
        print(table(json.loads(Path(args.print_table).read_text())), flush=True)
        return 0
    parts = set(args.parts.split(","))
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    result: dict = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": platform.node(),
                    "versions": versions(), "command": " ".join(sys.argv), "args": vars(args), "failed": {}}

    def save() -> None:
        (out_dir / "cluster_gpu.json").write_text(json.dumps(result, indent=2, default=str))

    if parts & {"serve", "kills"}:
        try:
            serve_and_kill(args, parts, out_dir, result, save)
        except Exception as e:  # noqa: BLE001  (the batch part still runs; the table says so)
            result["failed"]["serve"] = f"{type(e).__name__}: {e}"
            save()
    if "batch" in parts:
        try:
            result["batch"] = batch(args, out_dir)
        except Exception as e:  # noqa: BLE001
            result["failed"]["batch"] = f"{type(e).__name__}: {e}"
        save()
    print(table(result), flush=True)
    return 1 if result["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
