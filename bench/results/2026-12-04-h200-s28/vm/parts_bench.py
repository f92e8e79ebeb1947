import gzip, sys, time, re, numpy as np
sys.path.insert(0, '/work/main')
from streamret.model.tokenizer import HFTokenizer
tok = HFTokenizer('/work/main/streamret/assets/default')
twin = tok._prenormalized.twin
raw = gzip.open('/work/main/.device/text/man.txt.gz', 'rt').read(2_000_000).lower()
PART = re.compile(r"[A-Za-z0-9]+|[^\sA-Za-z0-9]")
parts = list(dict.fromkeys(p for p in PART.findall(raw) if p.isascii() and len(p) <= 32))[:8000]
print(len(parts))
def a():
    enc = twin.encode_batch_fast([[w] for w in parts], is_pretokenized=True, add_special_tokens=False)
    return {w: tuple(e.ids) for w, e in zip(parts, enc)}
def b():
    e = twin.encode_batch_fast([parts], is_pretokenized=True, add_special_tokens=False)[0]
    ids = np.array(e.ids, np.int64); wid = np.array(e.word_ids, np.int64)
    counts = np.bincount(wid, minlength=len(parts)); ends = np.cumsum(counts)
    il = ids.tolist()
    return {w: tuple(il[s - c:s]) for w, s, c in zip(parts, ends.tolist(), counts.tolist())}
mark, mid = tok._mark
def m():
    words = [mark] * (2 * len(parts)); words[::2] = parts
    e = twin.encode_batch_fast([words], is_pretokenized=True, add_special_tokens=False)[0]
    ids = np.array(e.ids, np.int64); marks = np.flatnonzero(ids == mid)
    il = ids.tolist(); out = {}; a = 0
    for w, s in zip(parts, marks.tolist()):
        out[w] = tuple(il[a:s]); a = s + 1
    return out
def c():
    e = twin.encode_batch_fast([parts], is_pretokenized=True, add_special_tokens=False)[0]
    return e
def d():
    e = twin.encode_batch([parts], is_pretokenized=True, add_special_tokens=False)[0]
    return e
assert a() == m()
for f in (a, m, c, d):
    t = time.perf_counter()
    for _ in range(5): f()
    print(f.__name__, (time.perf_counter() - t) / 5 * 1e3, 'ms')

import json
spec = json.loads(tok.source_json)['model']
print({k: v for k, v in spec.items() if k != 'vocab'})
vocab = spec['vocab']; unk = vocab[spec['unk_token']]; pre = spec['continuing_subword_prefix']; mx = spec['max_input_chars_per_word']
cont = {k[len(pre):]: v for k, v in vocab.items() if k.startswith(pre)}
def wp(w):
    i = vocab.get(w)
    if i is not None: return (i,)
    if len(w) > mx: return (unk,)
    out = []; start = 0; n = len(w); table = vocab
    while start < n:
        end = n
        while end > start:
            i = table.get(w[start:end])
            if i is not None: break
            end -= 1
        else:
            return (unk,)
        out.append(i); start = end; table = cont
    return tuple(out)
def p():
    return {w: wp(w) for w in parts}
def dd():
    e = twin.encode_batch([parts], is_pretokenized=True, add_special_tokens=False)[0]
    ids = np.array(e.ids, np.int64); wid = np.array(e.word_ids, np.int64)
    counts = np.bincount(wid, minlength=len(parts)); ends = np.cumsum(counts)
    il = ids.tolist()
    return {w: tuple(il[s - c:s]) for w, s, c in zip(parts, ends.tolist(), counts.tolist())}
assert p() == a(), [(w, wp(w), a()[w]) for w in parts if wp(w) != a()[w]][:5]
assert dd() == a()
for f in (p, dd):
    t = time.perf_counter()
    for _ in range(5): f()
    print(f.__name__, (time.perf_counter() - t) / 5 * 1e3, 'ms')
print(sum(w in vocab for w in parts), len(parts))
