"""Session 56 (workplace VM): what one tokenizer process call costs (tokenize_worker.TokenizerProcess, as an engine's
tokenize thread drives it) with S chunks of 2 KB of the manual pages a call, each stream's text front carried: the
call's wall time, the child's CPU (from /proc) and the caller's. The second of two passes (the word cache warm).

    PYTHONPATH=bench python3 bench/results/2026-12-07-s56/call_cost.py
"""
import gzip, sys, time, os
os.environ["TOKENIZERS_PARALLELISM"] = "false"
from streamret.engine.config import EngineConfig
from streamret.engine.text import TextAssembler
from streamret.engine.tokenize_worker import TokenizerProcess, child_spec
from streamret.model.spec import load_model
raw = gzip.open(".device/text/man.txt.gz", "rb").read(3_000_000)
chunks = [raw[i:i + 2048] for i in range(0, len(raw), 2048)]
params = EngineConfig().text_params
tok = load_model("default", device="cpu").tokenizer
proc = TokenizerProcess(child_spec(tok), params)
from cpu_threads import process_cpu_s
for S in (1, 2, 4, 8, 16, 32):
    per = min(len(chunks) // S, 400)
    for rep in range(2):
        fronts = [TextAssembler(**params).snapshot() for _ in range(S)]
        t0 = time.perf_counter(); c0 = process_cpu_s(proc._proc.pid); e0 = time.thread_time(); n = 0
        for j in range(per):
            res = proc.cut_and_encode([(fronts[s], chunks[s * per + j], "") for s in range(S)])
            for s, r in enumerate(res):
                fronts[s] = r.front; n += len(r.ids)
        wall = time.perf_counter() - t0; child = process_cpu_s(proc._proc.pid) - c0; eng = time.thread_time() - e0
    print(f"S={S:2d}: a call {1e6*wall/per:7.0f} us wall, child CPU {1e6*child/per:7.0f} us, caller CPU {1e6*eng/per:6.0f} us; "
          f"child us a token {1e6*child/n:.3f}")
proc.close()
