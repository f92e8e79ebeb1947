"""Session 59 (workplace VM): the word cache's small calls through its dict of words against its table, in one
process, alternated: the manual pages of bench/e2e.py's text (.device/text/man.txt.gz) in calls of S chunks of
2 KB (TextAssembler.feed_rows of each chunk, then encode_pieces of the call's pieces; the encode alone is timed),
first with the caches empty (cold: the first 4 MB), then over the same text again (warm). "table" sets
SMALL_CALL_CHARS to 0 (every call through the table, as before session 59), "dict" leaves it at its default.
The ids of both are checked equal. Prints us a token of the encode, per mode and pass.

    python3 bench/results/2026-12-08-s59/small_calls_ab.py [S ...]
Runs on commit 5c0724f's tree (`SMALL_CALL_CHARS` and the dict were taken out again after it).
"""
import gzip, os, sys, time
from pathlib import Path
os.environ["TOKENIZERS_PARALLELISM"] = "false"
ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))
import numpy as np
import streamret.model.tokenizer as T
from streamret.engine.config import EngineConfig
from streamret.engine.text import TextAssembler
from streamret.model.spec import load_model

tok = load_model("default", "cpu", None).tokenizer
cache = tok._prenormalized.words
params = EngineConfig().text_params
raw = gzip.open(ROOT / ".device/text/man.txt.gz", "rb").read(4_000_000)
chunks = [raw[i:i + 2048] for i in range(0, len(raw), 2048)]
DEFAULT = T.SMALL_CALL_CHARS


def calls(S: int) -> list[list[str]]:
    streams = [TextAssembler(**params) for _ in range(S)]
    return [[streams[j].feed_rows(chunks[c0 + j])[0] for j in range(S)] for c0 in range(0, len(chunks) - S + 1, S)]


for S in [int(a) for a in sys.argv[1:]] or [1, 2, 4, 8]:
    items = calls(S)
    ref = None
    for rnd in range(2):
        for mode in ("table", "dict"):
            T.SMALL_CALL_CHARS = 0 if mode == "table" else DEFAULT
            cache.clear()
            out = []
            for label in ("cold", "warm"):
                t, n, got = 0.0, 0, []
                for pieces in items:
                    t0 = time.perf_counter()
                    ids, ends = tok.encode_pieces(pieces)
                    t += time.perf_counter() - t0
                    n += len(ids)
                    if rnd == 0 and label == "cold":
                        got.append((ids, ends))
                out.append(f"{label} {1e6 * t / n:.3f}")
                if got:
                    if ref is None:
                        ref = got
                    else:
                        assert all(np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) for a, b in zip(ref, got))
            print(f"S={S} round {rnd + 1} {mode:5s}: " + ", ".join(out) + " us a token (encode)", flush=True)
T.SMALL_CALL_CHARS = DEFAULT
