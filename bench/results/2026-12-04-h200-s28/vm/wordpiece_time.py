import gzip, sys, time
sys.path.insert(0, '/work/main')
from streamret.model import tokenizer as TK
from streamret.engine import text as T
tok = TK.HFTokenizer('/work/main/streamret/assets/default')
raw = gzip.open('/work/main/.device/text/man.txt.gz', 'rb').read(2_000_000)
params = dict(max_tail_bytes=4096, segment_by="sentence", max_segment_bytes=1024)
snap = T.TextSnapshot(b"", 0); calls = []
for i in range(0, len(raw), 2048):
    a = T.TextAssembler(snapshot=snap, **params); calls.append([p.text for p in a.feed(raw[i:i+2048])]); snap = a.snapshot()
batches = [calls[i:i+16] for i in range(0, len(calls), 16)]
wc = tok._prenormalized.words
orig = wc.wordpiece
acc = [0.0, 0, 0]; allp = []
class W:
    def __call__(self, w):
        t = time.perf_counter(); r = orig(w); acc[0] += time.perf_counter() - t; acc[1] += 1; acc[2] = max(acc[2], len(w)); allp.append(w); return r
wc.wordpiece = W()
t = time.process_time()
for b in batches: TK.encode_pieces(tok, b)
print('total', time.process_time() - t, 'wordpiece', acc)
import collections
print(collections.Counter(min(len(w)//5*5, 40) for w in allp))
slow = sorted(allp, key=lambda w: -len(w))[:5]; print(slow)
t = time.perf_counter(); [orig(w) for w in allp]; print('again', time.perf_counter() - t)
