"""Engine benchmark: tokens/s against concurrent streams and chunk sizes, next to the same model's
throughput on packed batches of the same tokens; memory against the length of one stream.

    python3 bench/engine.py --device cpu                      # small CPU run (a couple of minutes)
    source bench/device_env.sh
    python3 bench/engine.py --device cuda --models small,fla-1.3b --streams 1,64,1024,8192 \\
        --chunks 16,64,512,4096 --max-round-tokens 4194304 --memory-models small,fla-1.3b

Throughput: N streams each append one chunk of C tokens per round (byte tokenizer: one token per
byte of ASCII text); a round is timed from the first submit to the last ack, after one warm-up
round. "packed" runs the same model's forward on packed batches shaped like the engine's steps
(min(N, step_tokens / C) sequences of min(C, step_tokens) tokens, fresh states), i.e. the model
alone without text handling, scheduling, state gather/scatter or outputs; ratio = engine / packed.
--repeats R alternates R engine and packed runs and keeps the best of each (shared machines).
Memory: one stream appends C-token chunks up to --memory-tokens; host RSS and GPU memory are
sampled along the way and plotted (PNG, when matplotlib is installed).

Writes DIR/engine.json and DIR/engine_memory_<model>.png (DIR: --out, else $OUT, else .).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from concurrent.futures import wait

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))
from streamret.engine import Engine, EngineConfig  # noqa: E402
from streamret.engine.config import default_step_tokens  # noqa: E402
from streamret.model.spec import load_model  # noqa: E402

WORDS = ("state stream token retention decay chunk engine summary segment model the a of and to in is "
         "long text book log event feed").split()


def ints(s: str) -> list[int]:
    return [int(x) for x in s.split(",") if x]


def text_chunks(n_distinct: int, n_bytes: int, seed: int) -> list[bytes]:
    """ASCII chunks of exactly n_bytes: words, spaces and sentence ends (so segments close)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_distinct):
        words = rng.choice(WORDS, size=n_bytes // 3 + 2)
        text = " ".join(w + ("." if rng.random() < 0.1 else "") for w in words)
        out.append((" " + text).encode()[:n_bytes])
    return out


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def engine_config(args, n_streams: int, chunk: int, state_bytes: int) -> EngineConfig:
    return EngineConfig(
        max_step_tokens=args.step_tokens,
        max_step_streams=max(1, args.step_tokens // max(1, min(chunk, args.step_tokens))),
        max_chunk_bytes=max(chunk, 1 << 20),
        max_pending_chunks_per_stream=4,
        max_pending_bytes_per_stream=4 * chunk + (1 << 20),
        max_pending_chunks=4 * n_streams + 16,
        max_pending_bytes=4 * n_streams * chunk + (1 << 20),
        segment_by=args.segment_by,
        device_state_bytes=(n_streams + 1) * state_bytes,
        durable_every_chunks=0,
        chunk_size=args.kernel_chunk,
    )


def bench_engine(loaded, n_streams: int, chunk: int, args) -> dict:
    state_bytes = loaded.model.config.state_bytes_per_stream()
    device = loaded.model.device
    chunks = text_chunks(min(n_streams, 64), chunk, seed=chunk)
    with Engine(loaded, None, engine_config(args, n_streams, chunk, state_bytes)) as eng:
        ids = [f"bench/{i}" for i in range(n_streams)]

        def one_round(seq: int) -> None:
            futures = [eng.submit_append(sid, seq, chunks[(i + seq) % len(chunks)]) for i, sid in enumerate(ids)]
            done, _ = wait(futures)
            for f in done:
                f.result()  # raise if a chunk failed

        one_round(1)  # warm-up: allocations, kernel compilation
        sync(device)
        before = eng.stats()
        t0 = time.perf_counter()
        rounds = 0
        while rounds < args.rounds or (time.perf_counter() - t0 < args.min_seconds and rounds < 10_000):
            one_round(2 + rounds)
            rounds += 1
        sync(device)
        dt = time.perf_counter() - t0
        after = eng.stats()
    tokens = after["tokens_processed"] - before["tokens_processed"]
    steps = after["steps"] - before["steps"]
    model_s = after["loop_model_seconds"] - before["loop_model_seconds"]
    host_s = after["loop_host_seconds"] - before["loop_host_seconds"]
    # host_tokens_per_s: what the step loop's own work (scheduling, gathering, booking) would allow
    # if the model took no time; on a GPU that work overlaps the running step
    return dict(tokens=tokens, seconds=dt, rounds=rounds, tokens_per_s=tokens / dt, steps=steps,
                streams_per_step=(after["step_streams"] - before["step_streams"]) / max(1, steps),
                chunks_per_step=n_streams * rounds / max(1, steps), loop_model_seconds=model_s,
                loop_host_seconds=host_s, host_tokens_per_s=tokens / max(host_s, 1e-12))


@torch.inference_mode()
def bench_packed(model, n_streams: int, chunk: int, total_tokens: int, args) -> dict:
    device = model.device
    seqs = max(1, min(n_streams, args.step_tokens // max(1, chunk)))
    L = min(chunk, args.step_tokens)
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 256, (seqs * L,), generator=gen).to(device)
    cu = torch.arange(0, (seqs + 1) * L, L, device=device)
    for _ in range(2):
        model(ids, cu_seqlens=cu, chunk_size=args.kernel_chunk)
    sync(device)
    t0 = time.perf_counter()
    calls = 0  # at least as many tokens as the engine ran, and at least min_seconds
    while calls * seqs * L < total_tokens or time.perf_counter() - t0 < args.min_seconds:
        model(ids, cu_seqlens=cu, chunk_size=args.kernel_chunk)
        calls += 1
        if device.type == "cuda" and calls % 8 == 0:
            sync(device)
    sync(device)
    dt = time.perf_counter() - t0
    return dict(batch=f"{seqs}x{L}", tokens=calls * seqs * L, seconds=dt, tokens_per_s=calls * seqs * L / dt)


def bench_memory(loaded, args, name: str, out_dir: str) -> dict:
    device = loaded.model.device
    chunk = args.memory_chunk
    cfg = EngineConfig(max_step_tokens=max(chunk, args.step_tokens), max_chunk_bytes=max(chunk, 1 << 20),
                       durable_every_chunks=0, segment_by=args.segment_by, chunk_size=args.kernel_chunk,
                       device_state_bytes=64 * loaded.model.config.state_bytes_per_stream())
    chunks = text_chunks(16, chunk, seed=1)
    n_chunks = -(-args.memory_tokens // chunk)
    every = max(1, n_chunks // args.memory_points)
    rows = []
    with Engine(loaded, None, cfg) as eng:
        t0 = time.perf_counter()
        for seq in range(1, n_chunks + 1):
            eng.append("long", seq, chunks[seq % len(chunks)])
            if seq % every == 0 or seq == n_chunks:
                row = dict(tokens=eng.info("long").tokens, seconds=time.perf_counter() - t0, rss_mb=rss_mb())
                if device.type == "cuda":
                    row.update(gpu_allocated_mb=torch.cuda.memory_allocated(device) / 2**20,
                               gpu_reserved_mb=torch.cuda.memory_reserved(device) / 2**20)
                rows.append(row)
    warm = next(r for r in rows if r["tokens"] >= 0.1 * rows[-1]["tokens"])
    result = dict(model=name, chunk_tokens=chunk, samples=rows,
                  rss_growth_after_warmup_mb=rows[-1]["rss_mb"] - warm["rss_mb"], warmup_tokens=warm["tokens"])
    if device.type == "cuda":
        result["gpu_allocated_growth_after_warmup_mb"] = rows[-1]["gpu_allocated_mb"] - warm["gpu_allocated_mb"]
    result["plot"] = plot_memory(result, out_dir)
    return result


def plot_memory(result: dict, out_dir: str) -> str | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no memory plot", file=sys.stderr)
        return None
    rows = result["samples"]
    tokens = [r["tokens"] for r in rows]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(tokens, [r["rss_mb"] for r in rows], label="host RSS")
    if "gpu_allocated_mb" in rows[0]:
        ax.plot(tokens, [r["gpu_allocated_mb"] for r in rows], label="GPU allocated")
        ax.plot(tokens, [r["gpu_reserved_mb"] for r in rows], label="GPU reserved", linestyle="--")
    ax.set_xlabel("tokens in the stream")
    ax.set_ylabel("MiB")
    top = max(max(r["rss_mb"], r.get("gpu_reserved_mb", 0.0)) for r in rows)
    ax.set_ylim(0, 1.2 * top)
    ax.set_title(f"engine memory vs stream length: {result['model']}, {result['chunk_tokens']}-token chunks")
    ax.grid(alpha=0.3)
    ax.legend()
    path = os.path.join(out_dir, f"engine_memory_{result['model']}.png")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default=None, help="default: bf16 on CUDA, fp32 on the CPU")
    p.add_argument("--models", default="tiny,small", help="random presets for throughput (tiny, small, fla-1.3b)")
    p.add_argument("--streams", default="1,64,1024", type=ints)
    p.add_argument("--chunks", default="16,64,512,4096", type=ints, help="tokens per chunk")
    p.add_argument("--rounds", default=2, type=int, help="timed rounds after the warm-up round, at least")
    p.add_argument("--min-seconds", default=2.0, type=float, help="time each measurement for at least this long")
    p.add_argument("--repeats", default=1, type=int, help="alternating engine/packed runs; the best of each counts")
    p.add_argument("--threads", default=1, type=int, help="torch CPU threads (the engine adds its loop thread)")
    p.add_argument("--step-tokens", default=None, type=int,
                   help="the engine's max_step_tokens (default: the engine's own for the device, default_step_tokens)")
    p.add_argument("--kernel-chunk", default=64, type=int, help="chunk size of the chunkwise retention form")
    p.add_argument("--segment-by", default="sentence", choices=["sentence", "chunk"])
    p.add_argument("--max-round-tokens", default=1 << 16, type=int,
                   help="skip stream x chunk combinations with more tokens per round")
    p.add_argument("--max-state-gb", default=None, type=float,
                   help="skip combinations whose streams' states need more (default: 80%% of free GPU memory, "
                        "8 GiB on the CPU)")
    p.add_argument("--memory-models", default="tiny", help="presets for the memory run ('' = none)")
    p.add_argument("--memory-tokens", default=1_000_000, type=int)
    p.add_argument("--memory-chunk", default=4096, type=int)
    p.add_argument("--memory-points", default=40, type=int)
    p.add_argument("--out", default=os.environ.get("OUT", "."))
    args = p.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.set_num_threads(args.threads)

    first = load_model("random:tiny", args.device, args.dtype)
    device = first.model.device
    if args.step_tokens is None:
        args.step_tokens = default_step_tokens(device.type)
    if args.max_state_gb is not None:
        state_budget = args.max_state_gb * 2**30
    elif device.type == "cuda":
        state_budget = 0.8 * torch.cuda.mem_get_info(device)[0]
    else:
        state_budget = 8 * 2**30
    meta = dict(
        date=time.strftime("%Y-%m-%d"), command=" ".join(sys.argv), device=str(device),
        device_name=torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        cpu_threads=torch.get_num_threads(), torch=torch.__version__, python=platform.python_version(),
        dtype=str(first.model.dtype),
    )
    try:
        import triton

        meta["triton"] = triton.__version__
    except ImportError:
        meta["triton"] = None
    print(json.dumps(meta))
    results = dict(meta=meta, throughput=[], memory=[])

    def save() -> None:
        with open(os.path.join(args.out, "engine.json"), "w") as f:
            json.dump(results, f, indent=1)

    for name in [m for m in args.models.split(",") if m]:
        loaded = load_model(f"random:{name}", args.device, args.dtype)
        state_bytes = loaded.model.config.state_bytes_per_stream()
        for n in args.streams:
            for c in args.chunks:
                row = dict(model=name, streams=n, chunk_tokens=c, step_tokens=args.step_tokens)
                if n * c > args.max_round_tokens:
                    continue
                if n * state_bytes > state_budget:
                    row["skipped"] = f"{n} states need {n * state_bytes / 2**30:.1f} GiB > {state_budget / 2**30:.1f}"
                    print(row["skipped"])
                    results["throughput"].append(row)
                    continue
                engine_runs, packed_runs = [], []
                for _ in range(args.repeats):  # alternate, so that a noisy spell hits both alike
                    engine_runs.append(bench_engine(loaded, n, c, args))
                    packed_runs.append(bench_packed(loaded.model, n, c, engine_runs[-1]["tokens"], args))
                row["engine"] = max(engine_runs, key=lambda r: r["tokens_per_s"])
                row["packed"] = max(packed_runs, key=lambda r: r["tokens_per_s"])
                row["engine_runs_tokens_per_s"] = [r["tokens_per_s"] for r in engine_runs]
                row["packed_runs_tokens_per_s"] = [r["tokens_per_s"] for r in packed_runs]
                row["ratio"] = row["engine"]["tokens_per_s"] / row["packed"]["tokens_per_s"]
                results["throughput"].append(row)
                save()
                e = row["engine"]
                print(f"{name:9s} N={n:5d} C={c:5d}  engine {e['tokens_per_s']:12,.0f} tok/s  packed "
                      f"{row['packed']['tokens_per_s']:12,.0f} tok/s  ratio {row['ratio']:.2f}  "
                      f"{e['streams_per_step']:.0f} streams/step, host work alone {e['host_tokens_per_s']:,.0f} tok/s",
                      flush=True)
        del loaded
        if device.type == "cuda":
            torch.cuda.empty_cache()

    for name in [m for m in args.memory_models.split(",") if m]:
        loaded = load_model(f"random:{name}", args.device, args.dtype)
        if device.type == "cuda":
            torch.cuda.empty_cache()
        m = bench_memory(loaded, args, name, args.out)
        results["memory"].append(m)
        save()
        last = m["samples"][-1]
        gpu = (f", GPU allocated growth {m['gpu_allocated_growth_after_warmup_mb']:.1f} MiB"
               if "gpu_allocated_growth_after_warmup_mb" in m else "")
        print(f"memory {name}: {last['tokens']:,} tokens in {last['seconds']:.1f}s, RSS {last['rss_mb']:.0f} MiB, "
              f"growth after {m['warmup_tokens']:,} tokens {m['rss_growth_after_warmup_mb']:.1f} MiB{gpu}; "
              f"plot {m['plot']}", flush=True)
        del loaded
    save()


if __name__ == "__main__":
    main()
