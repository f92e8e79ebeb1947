"""Session 58 (workplace VM): a tokenizer call's parts at S chunks of 2 KB of the manual pages (the word cache warm, no profiler),
median us a call: the sentence cuts (TextAssembler.feed_rows of every chunk), the encode, batch_reply (the columns), a
pickle round trip of the reply, and on the engine side split_reply with the pieces' layouts (PieceLayout.of_columns).

    python3 bench/results/2026-12-08-s58/call_parts.py
"""
import gzip, os, pickle, sys, time
os.environ["TOKENIZERS_PARALLELISM"] = "false"
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[3]))
import numpy as np
from streamret.engine import tokenize_worker as tw
from streamret.engine.config import EngineConfig
from streamret.engine.text import TextAssembler, columns_of_rows
from streamret.model.spec import load_model
from streamret.model.tokenizer import encode_pieces
from streamret.engine.tokenize_stage import tokenize_items, in_process_cut
tok = load_model("default", "cpu", None).tokenizer
params = EngineConfig().text_params
raw = gzip.open(str(__import__("pathlib").Path(__file__).resolve().parents[3] / ".device/text/man.txt.gz"), "rb").read(4_000_000)
chunks = [raw[i:i + 2048] for i in range(0, len(raw), 2048)]
def enc(items): return encode_pieces(tok, items)
# warm the word cache
fronts = [TextAssembler(**params) for _ in range(64)]
for i, c in enumerate(chunks[:1900]): fronts[i % 64].feed_rows(c)
for c in chunks[1500:1900]:
    a = TextAssembler(**params); enc([a.feed_rows(c)[0]])
for S in (1, 2, 4, 8, 32):
    parts = {k: [] for k in ("feed", "encode", "reply", "pickle", "split", "total")}
    k = 0
    for rep in range(200 if S < 8 else 60):
        reqs = []
        for j in range(S):
            f = TextAssembler(**params)
            reqs.append((f.snapshot(), chunks[1500 + (k % 400)], "")); k += 1
        t0 = time.perf_counter()
        cut = []
        for base, r, ending in reqs:
            a = TextAssembler(snapshot=base, **params)
            cut.append((a.feed_rows(r), a.snapshot()))
        t1 = time.perf_counter()
        enc_out = tw._encode_each(enc, [c[0][0] for c in cut])
        out = [(*c, *e) for c, e in zip(cut, enc_out)]
        t2 = time.perf_counter()
        reply = tw.batch_reply(columns_of_rows, out)
        t3 = time.perf_counter()
        back = pickle.loads(pickle.dumps(reply, protocol=pickle.HIGHEST_PROTOCOL))
        t4 = time.perf_counter()
        res = tw.split_reply(back)
        from streamret.engine.scheduler import PieceLayout
        lens = np.concatenate([r.lens for r in res]); cols = [r.columns for r in res]
        PieceLayout.of_columns([t for c in cols for t in c[0]], np.concatenate([c[1] for c in cols]),
                               np.concatenate([c[2] for c in cols]), np.array([len(c[0]) for c in cols], np.int64), lens)
        t5 = time.perf_counter()
        for name, v in zip(("feed", "encode", "reply", "pickle", "split", "total"), (t1-t0, t2-t1, t3-t2, t4-t3, t5-t4, t5-t0)):
            parts[name].append(v)
    print(f"S={S:2d} " + "  ".join(f"{n} {1e6*np.median(v):7.1f}" for n, v in parts.items()) + "  us a call (median)")
