import gzip, time, sys, importlib.util, collections
sys.path.insert(0,'/work/main')
from streamret.engine import text as T
from streamret.model.tokenizer import HFTokenizer, encode_pieces
import streamret.model.tokenizer as TM
tok=HFTokenizer('/work/main/streamret/assets/default')
params = dict(max_tail_bytes=4096, segment_by="sentence", max_segment_bytes=1024)
raw = gzip.open('/work/main/.device/text/man.txt.gz','rb').read(2_000_000)
pieces=[p.text for p in T.TextAssembler(**params).feed(raw)]
# batches of ~4KB: 8 items of ~6 pieces
B=[]; i=0
while i < len(pieces):
    B.append([pieces[i+6*k:i+6*k+6] for k in range(8)]); i+=48
for b in B: encode_pieces(tok,b)
W=tok._prenormalized.words
miss_calls=[0]
orig=W._encode_new
def spy(words):
    miss_calls[0]+=1; spy.words.extend(words); return orig(words)
spy.words=[]
W._encode_new=spy
t=time.perf_counter(); n=0
for b in B: n+=len(encode_pieces(tok,b)[0])
dt=time.perf_counter()-t
print(f"{dt/n*1e6:.3f} us/token, {dt/len(B)*1e6:.0f} us/call, {n/len(B):.0f} tokens/call, calls {len(B)}, with misses {miss_calls[0]}")
print(collections.Counter(len(w) for w in spy.words).most_common(5), spy.words[:5])
import cProfile, pstats
cProfile.run('for b in B: encode_pieces(tok,b)','/tmp/p7'); pstats.Stats('/tmp/p7').sort_stats('tottime').print_stats(22)
