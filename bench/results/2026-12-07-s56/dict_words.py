"""Session 56 (workplace VM): the word cache of the default tokenizer (`_WordCache`, numpy word table) against a plain
dict of whitespace-free word -> ids, on calls of S chunks' pieces of the manual pages (2 KB chunks cut as the engine
cuts them; only calls of printable ASCII, as the cache takes them), both warm; the ids are checked equal on the first
20 calls. Best of 3 passes over 300 calls.

    python3 bench/results/2026-12-07-s56/dict_words.py
"""
import gzip, time, os, itertools
os.environ["TOKENIZERS_PARALLELISM"] = "false"
import numpy as np
from streamret.engine.config import EngineConfig
from streamret.engine.text import TextAssembler
from streamret.model.spec import load_model
from streamret.model.tokenizer import _plain
raw = gzip.open(".device/text/man.txt.gz", "rb").read(3_000_000)
chunks = [raw[i:i + 2048] for i in range(0, len(raw), 2048)]
params = EngineConfig().text_params
tok = load_model("default", device="cpu").tokenizer
cache = tok._prenormalized.words
plain = tok._prenormalized.plain
front = TextAssembler(**params).snapshot()
piece_lists = []
for c in chunks:
    a = TextAssembler(snapshot=front, **params); rows = a.feed_rows(c); front = a.snapshot()
    if _plain("\n".join(rows[0])):
        piece_lists.append(rows[0])
# warm the table, and a dict of every word seen -> ids
D = {}
for ps in piece_lists:
    cache.encode([plain(p) for p in ps])
for ps in piece_lists:
    for p in ps:
        for w in plain(p).split():
            if w not in D:
                D[w] = tuple(cache.encode([w])[0].tolist())
print("words", len(D))
def dict_encode(pieces):
    out = []; ends = []
    get = D.get
    for p in pieces:
        for w in plain(p).split():
            ids = get(w)
            if ids is None:
                return None
            out.extend(ids)
        ends.append(len(out))
    return np.array(out, np.int64), np.array(ends, np.int64)
for S in (1, 2, 4, 8, 32):
    calls = [list(itertools.chain.from_iterable(piece_lists[i:i + S])) for i in range(0, len(piece_lists) - S, S)][:300]
    for c in calls[:20]:
        x = cache.encode([plain(p) for p in c]); y = dict_encode(c)
        assert np.array_equal(x[0], y[0]), "ids"
    res = {}
    for name, f in (("table", lambda c: cache.encode([plain(p) for p in c])), ("dict", dict_encode)):
        best = 1e9
        for _ in range(3):
            t0 = time.perf_counter()
            n = 0
            for c in calls:
                n += len(f(c)[0])
            best = min(best, time.perf_counter() - t0)
        res[name] = best
    print(f"S={S}: table {1e6*res['table']/len(calls):.0f} us a call, dict {1e6*res['dict']/len(calls):.0f}; "
          f"us a token {1e6*res['table']/n:.3f} / {1e6*res['dict']/n:.3f}")
