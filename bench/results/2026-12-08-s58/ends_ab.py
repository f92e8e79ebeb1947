"""Session 58 (workplace VM): sentences.ends (and TextAssembler.feed_rows around it) of another version of
sentences.py (OLD, e.g. `git show REV:streamret/engine/sentences.py > /tmp/old.py`) against this tree's,
alternated in three pairs, over 800 chunks of 2 KB of the manual pages of one stream; the outputs checked equal.

    python3 bench/results/2026-12-08-s58/ends_ab.py OLD
"""
import gzip
import importlib.util
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))
from streamret.engine import sentences as SN  # noqa: E402
from streamret.engine import text as T  # noqa: E402
from streamret.engine.config import EngineConfig  # noqa: E402

spec = importlib.util.spec_from_file_location("sentences_old", sys.argv[1])
OLD = importlib.util.module_from_spec(spec)
spec.loader.exec_module(OLD)
raw = gzip.open(ROOT / ".device/text/man.txt.gz", "rb").read(3_000_000)
chunks = [raw[i:i + 2048] for i in range(0, len(raw), 2048)][:800]
params = EngineConfig().text_params
new_ends = SN.ends


def run() -> list:
    a = T.TextAssembler(**params)
    return [a.feed_rows(c) for c in chunks]


def best_us(f, k: int = 5) -> float:
    b = float("inf")
    for _ in range(k):
        t0 = time.thread_time()
        f()
        b = min(b, time.thread_time() - t0)
    return 1e6 * b / len(chunks)


SN.ends = OLD.ends
ref = run()
calls = []
SN.ends = lambda text, n, final, line_start_at_0=True: calls.append((text, n, final, line_start_at_0)) or new_ends(
    text, n, final, line_start_at_0)
assert run() == ref
SN.ends = new_ends
assert [OLD.ends(*c) for c in calls] == [new_ends(*c) for c in calls]
for r in range(3):
    SN.ends = OLD.ends
    a = best_us(run)
    SN.ends = new_ends
    b = best_us(run)
    print(f"pair {r}: feed_rows old {a:.1f} new {b:.1f} us a chunk")
for r in range(3):
    a = best_us(lambda: [OLD.ends(*c) for c in calls], 7)
    b = best_us(lambda: [new_ends(*c) for c in calls], 7)
    print(f"pair {r}: ends old {a:.1f} new {b:.1f} us a chunk")
