"""Session 59 (workplace VM): what a tokenizer process's word cache costs while it is cold. The manual pages of
bench/e2e.py's text (.device/text/man.txt.gz, 8 MB) go through one process's work (TextAssembler.feed_rows of each
2 KB chunk, then the encode of a call's pieces) in calls of S chunks, as a stream's chunks would: first with the
caches empty (the first pass), then again over the same text (warm). Per 1 MB stretch: us a token and the words held.

    python3 bench/results/2026-12-08-s59/cold_cache.py [S]
"""
import gzip, os, sys, time
from pathlib import Path
os.environ["TOKENIZERS_PARALLELISM"] = "false"
ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))
from streamret.engine.config import EngineConfig
from streamret.engine.text import TextAssembler
from streamret.model.spec import load_model
from streamret.model.tokenizer import encode_pieces

S = int(sys.argv[1]) if len(sys.argv) > 1 else 8
tok = load_model("default", "cpu", None).tokenizer
params = EngineConfig().text_params
raw = gzip.open(ROOT / ".device/text/man.txt.gz", "rb").read()
chunks = [raw[i:i + 2048] for i in range(0, len(raw), 2048)]
cache = tok._fast._words if hasattr(tok, "_fast") else None
def find_cache(obj, depth=0):
    from streamret.model import tokenizer as T
    if isinstance(obj, T._WordCache):
        return obj
    if depth > 3:
        return None
    for v in getattr(obj, "__dict__", {}).values():
        c = find_cache(v, depth + 1)
        if c is not None:
            return c
    return None
cache = find_cache(tok)
print("word cache:", type(cache).__name__ if cache else None, flush=True)
streams = [TextAssembler(**params) for _ in range(S)]  # S streams, each taking every S-th chunk in turn
for label in ("cold", "warm"):
    stretch, t_sum, n_tok, n_bytes = 1, 0.0, 0, 0
    rows = []
    for c0 in range(0, len(chunks) - S + 1, S):
        t0 = time.perf_counter()
        pieces = [streams[j].feed_rows(chunks[c0 + j])[0] for j in range(S)]
        ids, ends = encode_pieces(tok, pieces)
        t_sum += time.perf_counter() - t0
        n_tok += len(ids)
        n_bytes += S * 2048
        if n_bytes >= stretch * 1_000_000:
            rows.append(f"{label} MB {stretch}: {1e6 * t_sum / n_tok:.3f} us a token ({n_tok} tokens), words held "
                        f"{cache.words_held if cache else '-'}")
            print(rows[-1], flush=True)
            stretch += 1
            t_sum, n_tok = 0.0, 0
