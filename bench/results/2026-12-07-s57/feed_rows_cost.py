"""Session 57 (workplace VM): what the text front's sentence cuts cost (TextAssembler.feed_rows, as a tokenizer process
runs it for each chunk), over 800 chunks of 2 KB of the manual pages of one stream, the second of two passes; with
any argument, also a line profile of feed_rows, sentences.ends, _segment_pieces and _line_break_candidates (needs
line_profiler).

    python3 bench/results/2026-12-07-s57/feed_rows_cost.py [lines]
"""
import gzip
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from streamret.engine import sentences as SN  # noqa: E402
from streamret.engine import text as T  # noqa: E402
from streamret.engine.config import EngineConfig  # noqa: E402

raw = gzip.open(".device/text/man.txt.gz", "rb").read(3_000_000)
chunks = [raw[i:i + 2048] for i in range(0, len(raw), 2048)][:800]
params = EngineConfig().text_params


def run() -> int:
    a = T.TextAssembler(**params)
    n = 0
    for c in chunks:
        texts, _ = a.feed_rows(c)
        n += len(texts)
    return n


run()
best = float("inf")
for _ in range(3):
    t0 = time.thread_time()
    n = run()
    best = min(best, time.thread_time() - t0)
print(f"feed_rows: {1e6 * best / len(chunks):.1f} us of CPU a 2 KB chunk (best of 3), {n / len(chunks):.1f} pieces a "
      f"chunk, {1e6 * best / n:.2f} us a piece")
if len(sys.argv) > 1:
    from line_profiler import LineProfiler

    lp = LineProfiler(SN.ends, T.TextAssembler._segment_pieces, SN._line_break_candidates, T.TextAssembler.feed_rows)
    lp.runcall(run)
    lp.print_stats(output_unit=1e-3)
