# Session 35: sentences.ends over 2 KB chunks of 2 MB of the manual pages, its parts, and a cProfile of it
"""Time sentences.ends and its parts over 2 KB chunks of the manual-page text."""
import gzip, time, re, sys
from streamret.engine import sentences as S
text = gzip.open('/work/main/.device/text/man.txt.gz','rt').read()[:2_000_000]
chunks = [text[i:i+2048] for i in range(0, len(text), 2048)]
def bench(f, reps=3):
    best = 1e9
    for _ in range(reps):
        t = time.perf_counter()
        for c in chunks: f(c)
        best = min(best, time.perf_counter() - t)
    return best
n = len(chunks)
print("chunks", n)
tot = bench(lambda c: S.ends(c, len(c) - 20, False))
print(f"ends: {tot*1e3:.1f} ms, {tot/n*1e6:.1f} us/chunk")
print(f"mark_windows list: {bench(lambda c: list(S._mark_windows(c)))*1e3:.1f} ms")
print(f"line_break_candidates: {bench(lambda c: S._line_break_candidates(c, len(c)-20))*1e3:.1f} ms")
ncand = sum(len(list(S._mark_windows(c))) for c in chunks)
nlb = sum(len(S._line_break_candidates(c, len(c)-20)) for c in chunks)
print("mark candidates", ncand, "line-break candidates", nlb, "newlines", text.count("\n"))
nb = sum(sum(1 for s, b in S._line_break_candidates(c, len(c)-20) if not b) for c in chunks)
print("non-blank line-break candidates", nb)
import cProfile, pstats
cProfile.run("for c in chunks: S.ends(c, len(c)-20, False)", "/tmp/prof/ends.out")
pstats.Stats("/tmp/prof/ends.out").sort_stats("tottime").print_stats(12)
