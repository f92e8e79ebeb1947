import sys, time, gzip, re
sys.path.insert(0, '/work/main')
import numpy as np
from streamret.engine import segments as SG, sentences as S
raw = gzip.open('/work/main/.device/text/man.txt.gz', 'rb').read(3_000_000)[2_000_000:2_041_000].decode('utf-8', 'replace')
ends = [0] + S.ends(raw, len(raw), True)
texts = [raw[a:b].strip() for a, b in zip(ends, ends[1:])]
texts = [SG.truncate_utf8(t, 512) for t in texts]
print(len(texts), 'texts', sum(map(len, texts)), 'chars', 'ascii', "".join(texts).isascii())
def bench(f, n=200):
    best = 9e9
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(n): f(texts)
        best = min(best, (time.perf_counter() - t) / n)
    return best * 1e6
print('word_counts us', bench(SG.word_counts))
cut = [t[:SG._SCANNED] for t in texts]
print('cut', bench(lambda x: [t[:SG._SCANNED] for t in x]))
print('join', bench(lambda x: "\0".join(cut)))
j = "\0".join(cut)
print('count', bench(lambda x: j.count("\0")))
print('encode', bench(lambda x: j.encode('ascii')))
d = j.encode('ascii')
print('translate', bench(lambda x: d.translate(SG._ASCII_LETTERS, SG._ASCII_OTHER_WORD_CHARS)))
k = np.frombuffer(d.translate(SG._ASCII_LETTERS, SG._ASCII_OTHER_WORD_CHARS), np.uint8)
def rest(x):
    letter = k == 2
    starts = letter.copy()
    starts[1:] &= ~letter[:-1]
    e = np.append(np.flatnonzero(k == 3), len(k))
    return np.diff(np.searchsorted(np.flatnonzero(starts), e), prepend=0)
print('numpy rest', bench(rest))
texts2 = list(texts); texts2[5] = texts2[5] + " café —"
print('with one non-ascii text', bench(lambda x: SG.word_counts(texts2)))
