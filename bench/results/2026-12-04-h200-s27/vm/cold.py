import gzip, time, sys, cProfile, pstats
sys.path.insert(0, sys.argv[1])
from streamret.engine.config import EngineConfig
from streamret.engine import text as T
from streamret.model.tokenizer import HFTokenizer, encode_pieces
raw = gzip.open('/work/main/.device/text/man.txt.gz','rb').read(2_000_000)
params = EngineConfig().text_params
pieces=[p.text for p in T.TextAssembler(**params).feed(raw)]
batches=[[pieces[i:i+350], pieces[i+350:i+700]] for i in range(0,len(pieces),700)]
def fresh(): return HFTokenizer(sys.argv[1]+"/streamret/assets/default")
for rep in range(2):
    tok=fresh(); t=time.process_time(); n=0
    for b in batches: n+=len(encode_pieces(tok,b)[0])
    c=time.process_time()-t
    t=time.process_time()
    for b in batches: encode_pieces(tok,b)
    w=time.process_time()-t
    print(sys.argv[1], f"cold {c/n*1e6:.3f} warm {w/n*1e6:.3f} us/token")
if len(sys.argv)>2:
    tok=fresh(); cProfile.run('for b in batches: encode_pieces(tok,b)','/tmp/p4'); pstats.Stats('/tmp/p4').sort_stats('tottime').print_stats(14)
