# Session 30: the engine process's share of a tokenizer process's reply, per item: the reply unpickled, split into
# Cuts and made into items' layouts (tokenize_items), 20 batches of 32 chunks of man text (argv[1] bytes each).
import gzip, sys, time, pickle
sys.path.insert(0, '/work/main')
import numpy as np
from streamret.engine.config import EngineConfig
from streamret.engine.text import TextAssembler, TextSnapshot, columns_of_rows
from streamret.engine.tokenize_worker import cut_and_encode, batch_reply, split_reply
from streamret.engine.tokenize_stage import tokenize_items
from streamret.engine.scheduler import WorkItem
from streamret.model.spec import load_model
from streamret.model import tokenizer as tk
params = EngineConfig().text_params
tok = load_model("default", device="cpu").tokenizer
raw = gzip.open('/work/main/.device/text/man.txt.gz','rb').read(2_000_000)
cb = int(sys.argv[1]); streams = 32
chunks = [raw[i:i+cb] for i in range(0, len(raw), cb)][:streams * 20]
def new(b): return TextAssembler(snapshot=b, **params)
def enc(items): return tk.encode_pieces(tok, items)
replies = []
fronts = [TextSnapshot(b"", 0)] * streams
for j in range(20):
    reqs = [(fronts[s], chunks[j*streams+s], "") for s in range(streams)]
    out = cut_and_encode(new, enc, reqs)
    rep = batch_reply(columns_of_rows, out)
    replies.append((reqs, pickle.dumps(rep, protocol=5)))
    fronts = [o[1] for o in out]
ntok = sum(len(pickle.loads(p)[4]) for _, p in replies)
def items_of(reqs):
    return [WorkItem(f"s{k}", 1, None, None, None, None, len(r[1]), raw=r[1], ending="", prev=None, text_before=r[0]) for k, r in enumerate(reqs)]
best = 9e9
for rep in range(5):
    batches = [(items_of(reqs), p) for reqs, p in replies]
    t = time.process_time()
    for items, p in batches:
        tokenize_items(lambda requests: split_reply(pickle.loads(p)), 250000, items)
    best = min(best, time.process_time() - t)
n_items = len(replies) * streams
print(f"{cb} B chunks: engine side (unpickle, split, tokenize_items) {best/n_items*1e6:.1f} us an item, {best/ntok*1e6:.3f} us a token")
