"""Session 59 (workplace VM): where a cold pass of small calls goes with the small calls' dict against without it:
the first 3 MB of the manual pages (.device/text/man.txt.gz) in calls of 2 chunks of 2 KB, the caches empty, once with
every call through the table (SMALL_CALL_CHARS 0) and once with the dict; the word cache's methods timed by wrappers
(seconds a token, and calls: "_encode_small:none" are the calls the dict lacked a word of).

    python3 bench/results/2026-12-08-s59/dict_cold_parts.py
Runs on commit 5c0724f's tree (the dict was taken out again after it).
"""
import gzip, sys, time, collections
ROOT = __import__("pathlib").Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))
import streamret.model.tokenizer as T
from streamret.engine.config import EngineConfig
from streamret.engine.text import TextAssembler
from streamret.model.spec import load_model
tok = load_model("default", "cpu", None).tokenizer
cache = tok._prenormalized.words
acc = collections.Counter()
def wrap(name):
    f = getattr(T._WordCache, name)
    def g(self, *a):
        t0 = time.perf_counter()
        try:
            r = f(self, *a); acc[name + (":none" if r is None and name == "_encode_small" else "")] += 1; return r
        finally: acc[name + "_s"] += time.perf_counter() - t0
    setattr(T._WordCache, name, g)
for n in ("_encode_small", "_encode_table", "_learn", "_remember", "_new_words"): wrap(n)
params = EngineConfig().text_params
raw = gzip.open(ROOT / ".device/text/man.txt.gz", "rb").read(3_000_000)
chunks = [raw[i:i + 2048] for i in range(0, len(raw), 2048)]
S = 2
streams = [TextAssembler(**params) for _ in range(S)]
items = [[streams[j].feed_rows(chunks[c0 + j])[0] for j in range(S)] for c0 in range(0, len(chunks) - S + 1, S)]
for mode in ("table", "dict"):
    T.SMALL_CALL_CHARS = 0 if mode == "table" else 12 * 1024
    cache.clear(); acc.clear(); t = 0; n = 0
    for it in items:
        t0 = time.perf_counter(); n += len(tok.encode_pieces(it)[0]); t += time.perf_counter() - t0
    print(mode, f"{1e6*t/n:.3f} us/token", {k: (round(1e6 * v / n, 4) if k.endswith("_s") else v) for k, v in sorted(acc.items())})
