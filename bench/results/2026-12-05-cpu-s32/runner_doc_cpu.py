"""Session 32 (run from the repo root: python bench/results/2026-12-05-cpu-s32/runner_doc_cpu.py 1000 [prof]): the batch runner's own CPU per short document (the engine process's main thread in a batch job)."""
import cProfile, pstats, sys, time, os
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", ".."); sys.path.insert(0, ROOT); sys.path.insert(0, os.path.join(ROOT, "bench"))
os.environ["TOKENIZERS_PARALLELISM"] = "false"
from engine_host import TimedEngine, man_chunks
from streamret.engine import EngineConfig
from streamret.model.spec import load_model
from streamret.batch.runner import _Doc, _Runner

n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
prof = len(sys.argv) > 2 and sys.argv[2] == "prof"
loaded = load_model("default", "cpu", None)
texts = man_chunks(n, 3600)  # about 900 tokens each
cfg = EngineConfig(durable_every_chunks=0, device_state_bytes=(600) * loaded.model.config.state_bytes_per_stream())
with TimedEngine(loaded, None, cfg, fake_model=True) as eng:
    for rep in range(3):
        docs = [_Doc(i, f"d{rep}-{i}", t, 64 << 10) for i, t in enumerate(texts)]
        p = cProfile.Profile(time.thread_time) if prof and rep == 2 else None
        t0, w0 = time.thread_time(), time.perf_counter()
        if p: p.enable()
        _Runner(eng, docs, 5, 512, call_threads=0).run()
        if p: p.disable()
        cpu, wall = time.thread_time() - t0, time.perf_counter() - w0
        tokens = sum(d.tokens for d in docs)
        print(f"rep {rep}: {len(docs)} docs {tokens} tokens, runner thread {1e6*cpu/len(docs):.0f} us/doc "
              f"{1e6*cpu/tokens:.3f} us/token, wall {wall:.2f} s, errors {sum(d.error is not None for d in docs)}")
    if prof:
        pstats.Stats(p).sort_stats("tottime").print_stats(25)
        pstats.Stats(p).sort_stats("cumulative").print_stats(40)
