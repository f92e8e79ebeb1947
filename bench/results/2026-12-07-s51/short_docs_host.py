"""Session 51 (workplace VM): the host's CPU a short document in one engine process's batch runner (what
bench/e2e.py's batch_short part reads as the engine processes' "python" thread, 0.49-0.52 us a token on the H100
host in call 3, about 460 us a document of 929 tokens). The real Engine on the manual pages, tokenizer processes,
the model replaced by bench/engine_host.py's HostOnlyRunner behind a sleep of 1 ms plus 0.1 us a token;
`embed_documents` (sub_batches.py, as an engine process runs a sub-batch) over DOCS documents of BYTES bytes.
Prints the wall time, the caller's thread's CPU (the runner's) and the step thread's parts; with PROFILE=1 a
cProfile of the caller's thread in the last pass, by its CPU time (time.thread_time). Added in session 52: TOP and
SORT (the profile's rows, default 12, and order, default tottime); WHOLE=N runs the engine with
EngineConfig.step_whole_chunk_tokens=N.

    python bench/results/2026-12-07-s51/short_docs_host.py 2000 3600
"""
import cProfile
import gzip
import os
import pstats
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from engine_host import sleep_for_the_model  # noqa: E402

from streamret.batch.sub_batches import embed_documents  # noqa: E402
from streamret.engine import Engine, EngineConfig  # noqa: E402
from streamret.model.spec import load_model  # noqa: E402

n_docs, size = int(sys.argv[1]), int(sys.argv[2])
raw = gzip.open(ROOT / ".device/text/man.txt.gz").read(n_docs * size + size)
texts = [raw[i * size:(i + 1) * size] for i in range(n_docs)]
cfg = EngineConfig(durable_every_chunks=0, tokenize_procs=True, max_step_tokens=32768,
                   step_whole_chunk_tokens=int(os.environ["WHOLE"]) if os.environ.get("WHOLE") else None)
options = dict(deadline=None, summary_k=3, max_in_flight=256, max_bytes_in_flight=64 << 20, group=None, window=4)
with Engine(load_model("default", "cpu", None), None, cfg) as engine:
    sleep_for_the_model(engine)
    for rep in range(3):
        ids = [f"r{rep}-{i}" for i in range(n_docs)]
        before = engine.stats()
        prof = cProfile.Profile(time.thread_time) if os.environ.get("PROFILE") and rep == 2 else None
        t0, c0 = time.perf_counter(), time.thread_time()
        if prof:
            prof.enable()
        tokens, *_ = embed_documents(engine, f"k{rep}", list(range(n_docs)), ids, texts, 2048, options)
        if prof:
            prof.disable()
        wall, caller = time.perf_counter() - t0, time.thread_time() - c0
        after = engine.stats()
        steps = after["steps"] - before["steps"]
        parts = {k: 1e3 * (v - before["loop_parts_cpu_seconds"][k]) / max(steps, 1)
                 for k, v in after["loop_parts_cpu_seconds"].items()}
        print(f"pass {rep}: {n_docs} docs, {sum(tokens)} tokens in {wall:.2f} s ({sum(tokens) / wall / 1e3:.0f} k "
              f"tokens/s); the caller's thread {1e6 * caller / n_docs:.0f} us a document "
              f"({1e6 * caller / sum(tokens):.3f} us a token); {steps} steps; step thread CPU ms a step: "
              + ", ".join(f"{k} {v:.2f}" for k, v in parts.items() if v >= 0.05), flush=True)
        if prof:
            pstats.Stats(prof).sort_stats(os.environ.get("SORT", "tottime")).print_stats(int(os.environ.get("TOP", "12")))
    print("threads:", [t.name for t in threading.enumerate()])
