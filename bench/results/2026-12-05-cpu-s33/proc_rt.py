import gzip, sys, time
sys.path.insert(0, '/work/main')
from streamret.engine.config import EngineConfig
from streamret.engine.text import TextSnapshot
from streamret.engine.tokenize_worker import TokenizerProcess, child_spec
from streamret.engine.tokenize_stage import tokenize_items
from streamret.model.tokenizer import HFTokenizer
tok = HFTokenizer('/work/main/streamret/assets/default/tokenizer.json')
params = EngineConfig().text_params
raw = gzip.open('/work/main/.device/text/man.txt.gz', 'rb').read(6_000_000)[4_000_000:]
cb = int(sys.argv[1]) if len(sys.argv) > 1 else 2048
n = int(sys.argv[2]) if len(sys.argv) > 2 else 32
chunks = [raw[i:i + cb] for i in range(0, len(raw), cb)]
proc = TokenizerProcess(child_spec(tok), params)
batches = [[(TextSnapshot(b"", 0), chunks[(j * n + k) % len(chunks)], "") for k in range(n)] for j in range(len(chunks) // n)]
for b in batches[:5]: proc.cut_and_encode(b)
for _ in range(3):
    toks = 0; t = time.thread_time(); w = time.perf_counter()
    for b in batches:
        out = proc.cut_and_encode(b); toks += sum(len(c.ids) for c in out)
    t = time.thread_time() - t; w = time.perf_counter() - w
    print(f"{cb} B x {n}: parent CPU {t/toks*1e6:.4f} us/token ({t/len(batches)/n*1e6:.1f} us/chunk), wall {w/toks*1e6:.3f} us/token")
proc.close()
import cProfile, pstats
proc = TokenizerProcess(child_spec(tok), params)
for b in batches[:5]: proc.cut_and_encode(b)
pr = cProfile.Profile(time.thread_time)
pr.enable()
for b in batches:
    tokenize_items(proc.cut_and_encode, 30522, [])  if False else proc.cut_and_encode(b)
pr.disable()
pstats.Stats(pr).sort_stats('tottime').print_stats(15)
proc.close()
