# Session 27: what the word cache's tables hold when filled with hex strings (README: 21 MiB, 30 MiB while one
# starts over). Run from the repository root: python bench/results/2026-12-04-h200-s27/vm/word_cache_memory.py
import random, sys, time, tracemalloc
sys.path.insert(0, 'tests')
from test_tokenizer import bundled_default
tracemalloc.start()
tok = bundled_default(); w = tok._prenormalized.words
rng = random.Random(1)
base = tracemalloc.get_traced_memory()[0]
peak = 0
t = time.time()
for i in range(300):
    words = ["".join(rng.choice("0123456789abcdef") for _ in range(rng.choice([8, 16, 24, 40, 64, 100]))) for _ in range(2000)]
    tok.encode_pieces([[" ".join(words)]])
    cur = tracemalloc.get_traced_memory()[0] - base; peak = max(peak, cur)
print(f"after: {cur/2**20:.1f} MiB, peak {peak/2**20:.1f} MiB; table {w._words.words} words, parts {len(w._parts.ids)}, long {len(w._long.ids)}; {time.time()-t:.0f}s")
