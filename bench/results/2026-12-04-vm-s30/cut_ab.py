# Session 30: the old text front is 3b1f3aa's text.py and sentences.py in /tmp/old_text/oldpkg/ (git show 3b1f3aa:streamret/engine/{text,sentences}.py, an empty __init__.py).
"""Cut CPU, old against new, alternated in one process, best of N (2 KB chunks of man text, and the unicode mix)."""
import gzip, sys, time
sys.path.insert(0, '/tmp/old_text'); sys.path.insert(0, '/work/main')
from oldpkg import text as OLD
from streamret.engine import text as NEW
from streamret.engine.config import EngineConfig
params = EngineConfig().text_params
raw = gzip.open('/work/main/.device/text/man.txt.gz', 'rb').read(6_000_000)[4_000_000:]
cb = int(sys.argv[1]) if len(sys.argv) > 1 else 2048
chunks = [raw[i:i + cb] for i in range(0, len(raw), cb)]
def run(mod):
    snap = mod.TextSnapshot(b"", 0)
    t = time.process_time()
    for c in chunks:
        a = mod.TextAssembler(snapshot=snap, **params); a.feed(c); snap = a.snapshot()
    return time.process_time() - t
best = {OLD: 9e9, NEW: 9e9}
for _ in range(7):
    for m in (OLD, NEW):
        best[m] = min(best[m], run(m))
print(f"{cb} B chunks, 2 MB: old {best[OLD]*1e3:.1f} ms, new {best[NEW]*1e3:.1f} ms ({best[NEW]/best[OLD]-1:+.0%})")
