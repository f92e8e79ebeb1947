"""Several engine processes on one GPU: does the engine scale past one process's GIL? (issue 14)

The engine in one process is bound by the CPU time its Python threads spend per token (they share one
GIL; bench/cpu_threads.py). This starts K processes, each with its own `Engine` (its own model copy on the
same device, as e2e.py builds it) over its share of the streams, all reading the same real text as
e2e.py's engine part, and times them together: the aggregate tokens/s from the first start to the last
finish, per K. If it grows with K while the packed forward is far away, the GPU is not the bound and
engine processes sharing a device (streams sharded over them) are the way past the GIL.

    source bench/device_env.sh; python3 bench/engine_procs.py --text .device/text/man.txt.gz --out $OUT
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))
sys.path.insert(1, str(BENCH))


def worker(rank: int, args: argparse.Namespace, text_file: str, streams: int, chunks: int, ready, go, out) -> None:
    import service as service_bench
    import torch
    from cpu_threads import cpu_between, thread_cpu_s, us_per_token

    from streamret.engine import Engine, EngineConfig

    torch.set_num_threads(1)
    service_bench.use_text(text_file)
    engine = Engine.from_model(args.model, args.device, config=EngineConfig(max_step_tokens=args.step_tokens,
                                                                             durable_every_chunks=0))
    ns = argparse.Namespace(streams=streams, chunks=2, chunk_bytes=args.chunk_bytes, window=args.window)
    service_bench.run_engine(engine, ns, f"warm{rank}", first_stream=rank * streams)  # graphs, compiles
    ready.put(rank)
    go.wait()
    ns.chunks = chunks
    cpu0, before = thread_cpu_s(), engine.stats()
    t0 = time.time()
    row = service_bench.run_engine(engine, ns, f"r{rank}", first_stream=rank * streams)
    t1 = time.time()
    after = engine.stats()
    row.update(start=t0, end=t1, cpu_us_per_token=us_per_token(cpu_between(cpu0, thread_cpu_s()), row["tokens"]),
               streams_per_step=round((after["step_streams"] - before["step_streams"])
                                      / max(1, after["steps"] - before["steps"]), 1))
    engine.shutdown(checkpoint=False)
    out.put((rank, row))


def run(k: int, total_streams: int, args: argparse.Namespace, text_file: str, tokens_per_byte: float) -> dict:
    ctx = mp.get_context("spawn")  # CUDA in the children
    streams = max(1, total_streams // k)
    chunks = max(2, math.ceil(args.tokens / (k * streams * args.chunk_bytes * tokens_per_byte)))
    ready, out, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    procs = [ctx.Process(target=worker, args=(r, args, text_file, streams, chunks, ready, go, out)) for r in range(k)]
    for p in procs:
        p.start()
    for _ in procs:
        ready.get(timeout=600)
    go.set()
    rows = dict(out.get(timeout=900) for _ in procs)
    for p in procs:
        p.join()
    tokens = sum(r["tokens"] for r in rows.values())
    wall = max(r["end"] for r in rows.values()) - min(r["start"] for r in rows.values())
    return {"procs": k, "streams": streams * k, "tokens": tokens, "seconds": round(wall, 3),
            "tokens_per_s": round(tokens / wall, 1), "per_proc": [rows[r] for r in sorted(rows)]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--text", action="append", default=[])
    ap.add_argument("--procs", default="1,2,4,8")
    ap.add_argument("--streams", default="64,1024")
    ap.add_argument("--tokens", type=float, default=4e6, help="about this many tokens per measurement")
    ap.add_argument("--chunk-bytes", type=int, default=2048)
    ap.add_argument("--window", type=int, default=4)
    ap.add_argument("--step-tokens", type=int, default=16384)
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    args = ap.parse_args()
    from e2e import find_text

    text, used = find_text(args.text, 8_000_000, 512 * 1024)
    os.makedirs(args.out, exist_ok=True)
    text_file = os.path.join(args.out, "engine_procs_text.txt")
    Path(text_file).write_text(text)
    results = {"command": " ".join(sys.argv), "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "text": used, "runs": []}
    tokens_per_byte = 0.26  # the default tokenizer on this text (e2e.json); only sizes the runs
    for n in (int(x) for x in args.streams.split(",")):
        for k in (int(x) for x in args.procs.split(",")):
            row = run(k, n, args, text_file, tokens_per_byte)
            results["runs"].append(row)
            Path(args.out, "engine_procs.json").write_text(json.dumps(results, indent=1))
            brief = {x: row[x] for x in ("procs", "streams", "tokens", "seconds", "tokens_per_s")}
            print(json.dumps(brief), flush=True)
    os.remove(text_file)
    print(f"\n{'streams':>8s} {'procs':>6s} {'tokens/s':>12s} {'x 1 proc':>9s} {'py us/tok per proc':>20s}")
    base: dict[int, float] = {}
    for r in results["runs"]:
        base.setdefault(r["streams"], r["tokens_per_s"])
        py = ", ".join(f"{p['cpu_us_per_token'].get('python_threads', 0):.2f}" for p in r["per_proc"])
        gain = r["tokens_per_s"] / base[r["streams"]]
        print(f"{r['streams']:8d} {r['procs']:6d} {r['tokens_per_s']:12,.0f} {gain:9.2f}  {py}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
