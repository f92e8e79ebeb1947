import gzip, sys, time, collections
sys.path.insert(0, '/work/main')
from streamret.engine import text as T, sentences as S
from streamret.engine.config import EngineConfig
from streamret.engine.tokenize_worker import cut_and_encode, batch_reply
from streamret.model import tokenizer as TK
tok = TK.HFTokenizer('/work/main/streamret/assets/default/tokenizer.json')
params = EngineConfig().text_params
raw = gzip.open('/work/main/.device/text/man.txt.gz', 'rb').read(6_000_000)[4_000_000:]
cb = int(sys.argv[1]) if len(sys.argv) > 1 else 2048
chunks = [raw[i:i + cb] for i in range(0, len(raw), cb)]
streams = 32; per = len(chunks) // streams
acc = collections.Counter()
def timed(name, f):
    def g(*a, **k):
        t = time.perf_counter(); r = f(*a, **k); acc[name] += time.perf_counter() - t; return r
    return g
S.ends = timed('ends', S.ends)
T.TextAssembler.feed_rows = timed('feed_rows', T.TextAssembler.feed_rows)
T.TextAssembler._segment_pieces = timed('segment_pieces(incl ends)', T.TextAssembler._segment_pieces)
enc = timed('encode', lambda items: TK.encode_pieces(tok, items))
cols = timed('columns', T.columns_of_rows)
def new_assembler(base): return T.TextAssembler(snapshot=base, **params)
def run():
    fronts = [T.TextSnapshot(b"", 0, 0)] * streams
    n = 0
    for j in range(per):
        reqs = [(fronts[k], chunks[k * per + j], "") for k in range(streams)]
        cut = cut_and_encode(new_assembler, enc, reqs)
        rep = batch_reply(cols, cut)
        fronts = [c[1] for c in cut]
        n += len(rep[4])
    return n
run()
for r in range(3):
    acc.clear(); t = time.process_time(); n = run(); tot = time.process_time() - t
    print(f"total {tot*1e3:.1f} ms, {tot/n*1e6:.3f} us/token; " + ", ".join(f"{k} {v*1e3:.1f}" for k, v in acc.items()))
