import gzip, time, sys
sys.path.insert(0,'/work/main')
from streamret.engine import text as T
from streamret.model.tokenizer import HFTokenizer, encode_pieces
tok=HFTokenizer('/work/main/streamret/assets/default')
params = dict(max_tail_bytes=4096, segment_by="sentence", max_segment_bytes=1024)
raw = gzip.open('/work/main/.device/text/man.txt.gz','rb').read(2_000_000).decode()
for name, txt in [("ascii", raw), ("curly", raw.replace("'", "’").replace(' "', " “").replace('" ', "” ")), ("dash", raw.replace(" - ", " – ").replace("--", "—"))]:
    pieces=[p.text for p in T.TextAssembler(**params).feed(txt.encode())]
    nonascii=sum(not p.isascii() for p in pieces)/len(pieces)
    B=[[pieces[i:i+350], pieces[i+350:i+700]] for i in range(0,len(pieces),700)]
    for b in B: encode_pieces(tok,b)
    t=time.perf_counter(); n=0
    for b in B: n+=len(encode_pieces(tok,b)[0])
    print(f"{name}: {nonascii:.1%} pieces not ASCII, warm {(time.perf_counter()-t)/n*1e6:.3f} us/token")
import cProfile, pstats
txt=raw.replace("'", "’").replace(' "', " “").replace('" ', "” ")
pieces=[p.text for p in T.TextAssembler(**params).feed(txt.encode())]
B=[[pieces[i:i+350], pieces[i+350:i+700]] for i in range(0,len(pieces),700)]
cProfile.run('for b in B: encode_pieces(tok,b)','/tmp/p10'); pstats.Stats('/tmp/p10').sort_stats('tottime').print_stats(12)
