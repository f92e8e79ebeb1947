"""Session 49 (workplace VM): a tokenizer call's CPU a token split into its parts, in this process (no pipe):
cutting the chunks into pieces (TextAssembler.feed_rows), encoding the pieces (encode_pieces), and the reply's
columns (tokenize_worker.batch_reply); S chunks of 2 KB of the manual pages a call, each stream's front carried.

    python bench/results/2026-12-07-s49/tokenizer_split.py 8
"""
import gzip
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))
from streamret.engine import text as textmod  # noqa: E402
from streamret.engine import tokenize_worker as tw  # noqa: E402
from streamret.engine.config import EngineConfig  # noqa: E402
from streamret.engine.text import TextAssembler  # noqa: E402
from streamret.model import tokenizer as tokmod  # noqa: E402
from streamret.model.spec import load_model  # noqa: E402

S = int(sys.argv[1])
raw = gzip.open(ROOT / ".device/text/man.txt.gz", "rb").read(2_000_000)
chunks = [raw[i:i + 2048] for i in range(0, len(raw), 2048)]
params = EngineConfig().text_params
tok = load_model("default", device="cpu").tokenizer
per = len(chunks) // S
for rep in range(3):  # the first pass fills the tokenizer's word cache
    fronts = [TextAssembler(**params).snapshot() for _ in range(S)]
    tc = te = tr = 0.0
    n = 0
    for j in range(per):
        t0 = time.process_time()
        cut = []
        for s in range(S):
            a = TextAssembler(snapshot=fronts[s], **params)
            rows = a.feed_rows(chunks[s * per + j])
            cut.append((rows, a.snapshot()))
        t1 = time.process_time()
        enc = tw._encode_each(lambda items: tokmod.encode_pieces(tok, items), [c[0][0] for c in cut])
        t2 = time.process_time()
        tw.batch_reply(textmod.columns_of_rows, [(*c, *e) for c, e in zip(cut, enc)])
        t3 = time.process_time()
        tc, te, tr = tc + t1 - t0, te + t2 - t1, tr + t3 - t2
        for s in range(S):
            fronts[s] = cut[s][1]
            n += len(enc[s][0])
    print(f"S={S} pass {rep}: us a token: cut {1e6 * tc / n:.3f} encode {1e6 * te / n:.3f} reply {1e6 * tr / n:.3f} "
          f"total {1e6 * (tc + te + tr) / n:.3f} ({n / (per * S):.0f} tokens a chunk)")
