import gzip, time, sys, numpy as np
sys.path.insert(0,'/work/main')
from streamret.engine.config import EngineConfig
from streamret.engine import text as T
from streamret.model.spec import load_model
from streamret.model.tokenizer import encode_pieces
raw = gzip.open('.device/text/man.txt.gz','rb').read(3_000_000)
tok = load_model('default', device='cpu').tokenizer
params = EngineConfig().text_params
streams=64; cb=2048
chunks=[raw[i:i+cb] for i in range(0,len(raw),cb)]
per=len(chunks)//streams
def run():
    fronts=[T.TextAssembler(**params).snapshot() for _ in range(streams)]
    tc=te=tp=0; n=0
    for j in range(per):
        t0=time.perf_counter()
        cut=[]
        for s in range(streams):
            a=T.TextAssembler(snapshot=fronts[s], **params); ps=a.feed(chunks[s*per+j]); cut.append(ps); fronts[s]=a.snapshot()
        t1=time.perf_counter()
        ids,ends=encode_pieces(tok,[[p.text for p in ps] for ps in cut if ps])
        t2=time.perf_counter()
        cols=[T.piece_columns(ps) for ps in cut]
        t3=time.perf_counter()
        tc+=t1-t0; te+=t2-t1; tp+=t3-t2; n+=len(ids)
    return n,tc,te,tp
run()
n,tc,te,tp=run()
print(f"cut {tc/n*1e6:.3f} encode {te/n*1e6:.3f} columns {tp/n*1e6:.3f} us/token; tokens {n}")
