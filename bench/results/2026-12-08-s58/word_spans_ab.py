"""Session 58 (workplace VM): the word cache's encode of printable ASCII chunks with `_word_spans` as it was (a diff
of the padded int8 view) against this tree's (not_equal of neighbours into one array), alternated, the word cache
warm; S chunks of 2 KB of the manual pages a call, median us a call over 400 chunks; the ids checked equal.

    python3 bench/results/2026-12-08-s58/word_spans_ab.py
"""
import gzip
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ["TOKENIZERS_PARALLELISM"] = "false"
ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))
from streamret.engine.config import EngineConfig  # noqa: E402
from streamret.engine.text import TextAssembler  # noqa: E402
from streamret.model import tokenizer as TK  # noqa: E402
from streamret.model.spec import load_model  # noqa: E402


def old_word_spans(b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    word = ~TK._WHITESPACE.take(b)
    edges = np.flatnonzero(np.diff(np.concatenate([[False], word, [False]]).view(np.int8)))
    return edges[::2], edges[1::2]


tok = load_model("default", "cpu", None).tokenizer
params = EngineConfig().text_params
raw = gzip.open(ROOT / ".device/text/man.txt.gz", "rb").read(2_000_000)
chunks = [raw[i:i + 2048] for i in range(0, len(raw), 2048)][:400]
pieces = [TextAssembler(**params).feed_rows(c)[0] for c in chunks]
new_word_spans = TK._word_spans
for p in pieces:
    TK.encode_pieces(tok, [p])  # warm
for S in (1, 4, 32):
    calls = [pieces[i:i + S] for i in range(0, len(pieces), S)]
    TK._word_spans = old_word_spans
    want = [TK.encode_pieces(tok, c) for c in calls]
    TK._word_spans = new_word_spans
    got = [TK.encode_pieces(tok, c) for c in calls]
    assert all((a[0] == b[0]).all() and (a[1] == b[1]).all() for a, b in zip(want, got))
    for pair in range(3):
        out = {}
        for name, f in (("old", old_word_spans), ("new", new_word_spans)) if pair % 2 == 0 else (
                ("new", new_word_spans), ("old", old_word_spans)):
            TK._word_spans = f
            times = []
            for _ in range(3):
                for c in calls:
                    t0 = time.perf_counter()
                    TK.encode_pieces(tok, c)
                    times.append(time.perf_counter() - t0)
            out[name] = 1e6 * float(np.median(times))
        print(f"S={S:2d} pair {pair}: encode old {out['old']:7.1f} new {out['new']:7.1f} us a call")
TK._word_spans = new_word_spans
