"""Session 35: ends() with its loop's names made local and the word before a lone "." found by one regex on the reversed
text (/tmp/prof/ends2.py, kept below as ENDS2), against sentences.ends: the same output on every 2 KB chunk of 2 MB of
the manual pages, then the time of each over them (best of 5), twice alternated. Not adopted: -6% of ends."""
import gzip
import sys
import time
sys.path.insert(0, '/work/main')
exec(open(__file__.replace('ends_locals_ab.py', 'ends2.py.txt')).read())
from streamret.engine import sentences as S  # noqa: E402
text = gzip.open('/work/main/.device/text/man.txt.gz', 'rt').read()[:2_000_000]
chunks = [text[i:i + 2048] for i in range(0, len(text), 2048)]
assert all(S.ends(c, n, f) == ends2(c, n, f) for c in chunks for n in (len(c) - 20, len(c)) for f in (False, True))  # noqa: F821
print("equal on every chunk")
for name, f in (("ends", S.ends), ("ends2", ends2)) * 2:  # noqa: F821
    best = 1e9
    for _ in range(5):
        t = time.perf_counter()
        for c in chunks:
            f(c, len(c) - 20, False)
        best = min(best, time.perf_counter() - t)
    print(name, f"{best * 1e3:.1f} ms")
