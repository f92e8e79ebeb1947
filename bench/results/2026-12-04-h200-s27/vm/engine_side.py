import gzip, time, sys, pickle, cProfile, pstats
sys.path.insert(0,'/work/main')
import numpy as np
from streamret.engine import text as T
from streamret.engine.tokenize_worker import batch_reply, split_reply, cut_and_encode
from streamret.engine.tokenize_stage import tokenize_items, in_process_cut
from streamret.engine.scheduler import WorkItem
from streamret.model.tokenizer import HFTokenizer, encode_pieces
tok=HFTokenizer('/work/main/streamret/assets/default')
params = dict(max_tail_bytes=4096, segment_by="sentence", max_segment_bytes=1024)
raw = gzip.open('/work/main/.device/text/man.txt.gz','rb').read(1_000_000)
cb=int(sys.argv[1]); streams=int(sys.argv[2])
chunks=[raw[i:i+cb] for i in range(0,len(raw),cb)]
per=len(chunks)//streams
# precompute replies
replies=[]; batches=[]
fronts=[T.TextSnapshot(b"",0)]*streams
for j in range(per):
    reqs=[(fronts[s], chunks[s*per+j], "") for s in range(streams)]
    cut=cut_and_encode(lambda b: T.TextAssembler(snapshot=b, **params), lambda items: encode_pieces(tok, items), reqs)
    replies.append(pickle.dumps(batch_reply(T.piece_columns, cut)))
    batches.append([WorkItem(f"s{s}", j, None, None, None, None, len(chunks[s*per+j]), text_before=fronts[s], raw=chunks[s*per+j]) for s in range(streams)])
    fronts=[r[1] for r in cut]
def run():
    n=0
    for rep, items in zip(replies, batches):
        res=tokenize_items(lambda reqs: split_reply(pickle.loads(rep)), 30522, items)
        n+=sum(len(r.tokens) for r in res)
    return n
n=run()
t=time.process_time(); n=run(); print(f"engine side {cb}x{streams}: {(time.process_time()-t)/n*1e6:.3f} us/token")
if len(sys.argv)>3:
    cProfile.run('run()','/tmp/p9'); pstats.Stats('/tmp/p9').sort_stats('tottime').print_stats(18)
