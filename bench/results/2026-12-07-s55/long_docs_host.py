"""Session 55, workplace VM: a batch job's long documents through one real Engine (manual pages, tokenizer
processes, the model replaced by bench/engine_host.py's HostOnlyRunner behind a sleep of 1 ms plus 0.1 us a token),
as an engine process runs a sub-batch (`embed_documents`: window 4, 64 KiB chunks), DOCS documents of BYTES bytes
at once; three passes. Prints each pass's wall time, tokens/s, steps and their tokens and streams, and the step
thread's CPU a step by part. Run with run_tree.py to compare two trees.

    python bench/results/2026-12-07-s55/long_docs_host.py 2 800000
"""
import gzip
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "bench"))
from engine_host import sleep_for_the_model  # noqa: E402

from streamret.batch.sub_batches import embed_documents  # noqa: E402
from streamret.engine import Engine, EngineConfig  # noqa: E402
from streamret.model.spec import load_model  # noqa: E402

n_docs, size = int(sys.argv[1]), int(sys.argv[2])
raw = gzip.open(ROOT / ".device/text/man.txt.gz").read(n_docs * size + size)
texts = [raw[i * size:(i + 1) * size] for i in range(n_docs)]
cfg = EngineConfig(tokenize_procs=True, max_step_tokens=32768)
options = dict(deadline=None, summary_k=5, max_in_flight=256, max_bytes_in_flight=64 << 20, group=None, window=4)
with Engine(load_model("default", "cpu", None), None, cfg) as engine:
    sleep_for_the_model(engine)
    for rep in range(3):
        ids = [f"r{rep}-{i}" for i in range(n_docs)]
        before = engine.stats()
        t0 = time.perf_counter()
        tokens, *_ = embed_documents(engine, f"k{rep}", list(range(n_docs)), ids, texts, 65536, options)
        wall = time.perf_counter() - t0
        after = engine.stats()
        steps = after["steps"] - before["steps"]
        streams = after["step_streams"] - before["step_streams"]
        parts = {k: 1e3 * (v - before["loop_parts_cpu_seconds"][k]) / max(steps, 1)
                 for k, v in after["loop_parts_cpu_seconds"].items()}
        print(f"pass {rep}: {n_docs} docs, {sum(tokens)} tokens in {wall:.3f} s ({sum(tokens) / wall / 1e3:.0f} k "
              f"tokens/s); {steps} steps of {sum(tokens) / max(steps, 1):,.0f} tokens and {streams / max(steps, 1):.2f} "
              "streams; step thread CPU ms a step: "
              + ", ".join(f"{k} {v:.2f}" for k, v in parts.items() if v >= 0.05), flush=True)
