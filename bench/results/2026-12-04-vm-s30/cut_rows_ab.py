# Session 30: the old text front is 3b1f3aa's text.py and sentences.py in /tmp/old_text/oldpkg/ (git show 3b1f3aa:streamret/engine/{text,sentences}.py, an empty __init__.py).
"""A tokenizer process's text work, old against new, alternated in one process, best of 7: every chunk cut (old:
TextPiece objects, new: rows), then one batch's columns (texts, numbers, facts) as `batch_reply` makes them, in
batches of 32 streams' chunks of man text (2 KB chunks unless argv[1])."""
import gzip, sys, time
from itertools import chain
sys.path.insert(0, '/tmp/old_text'); sys.path.insert(0, '/work/main')
import numpy as np
from oldpkg import text as OLD
from streamret.engine import text as NEW
from streamret.engine.config import EngineConfig
params = EngineConfig().text_params
raw = gzip.open('/work/main/.device/text/man.txt.gz', 'rb').read(6_000_000)[4_000_000:]
cb = int(sys.argv[1]) if len(sys.argv) > 1 else 2048
chunks = [raw[i:i + cb] for i in range(0, len(raw), cb)]
streams = 32
per = len(chunks) // streams

def run_old():
    fronts = [OLD.TextSnapshot(b"", 0)] * streams
    t = time.process_time()
    for j in range(per):
        cut = []
        for k in range(streams):
            a = OLD.TextAssembler(snapshot=fronts[k], **params); cut.append(a.feed(chunks[k * per + j])); fronts[k] = a.snapshot()
        OLD.piece_columns(list(chain.from_iterable(cut)))
    return time.process_time() - t

def run_new():
    fronts = [NEW.TextSnapshot(b"", 0)] * streams
    t = time.process_time()
    for j in range(per):
        cut = []
        for k in range(streams):
            a = NEW.TextAssembler(snapshot=fronts[k], **params); cut.append(a.feed_rows(chunks[k * per + j])); fronts[k] = a.snapshot()
        NEW.columns_of_rows(list(chain.from_iterable(c[0] for c in cut)), list(chain.from_iterable(c[1] for c in cut)))
    return time.process_time() - t

best = {'old': 9e9, 'new': 9e9}
for _ in range(7):
    best['old'] = min(best['old'], run_old()); best['new'] = min(best['new'], run_new())
print(f"{cb} B chunks x {streams} a batch, 2 MB: old {best['old']*1e3:.1f} ms, new {best['new']*1e3:.1f} ms ({best['new']/best['old']-1:+.0%})")
