# Session 27: the text front's cut of 1 MB of manual pages in 2 KB chunks (as a tokenizer process runs it, one
# TextAssembler per chunk from its snapshot): CPU per segment end and per piece.
import gzip, sys, time
sys.path.insert(0, '.')
from streamret.engine import text as T
from streamret.engine.config import EngineConfig
params = EngineConfig().text_params
raw = gzip.open('.device/text/man.txt.gz', 'rb').read(1_000_000)
chunks = [raw[i:i + 2048] for i in range(0, len(raw), 2048)]
def run():
    snap, pieces, ends = T.TextSnapshot(b"", 0), 0, 0
    for c in chunks:
        a = T.TextAssembler(snapshot=snap, **params); out = a.feed(c); snap = a.snapshot()
        pieces += len(out); ends += sum(p.ends_segment for p in out)
    return pieces, ends
run()
t = time.process_time(); pieces, ends = run(); dt = time.process_time() - t
print(f"{dt*1e3:.1f} ms CPU for {len(raw)} bytes: {pieces} pieces, {ends} segment ends, {dt/ends*1e6:.2f} us a segment end")
