"""The engine process's share of a tokenizer process's answer, on the CPU: a batch of chunks cut and tokenized
(`cut_and_encode`), sent as the pieces' columns (what tokenizer processes send now) or as one tuple per piece
(session 22's first version), then unpickled and made into layouts as a tokenize thread does.

    python bench/piece_columns.py --chunks 200 --chunk-bytes 2048

Text: .device/text/man.txt.gz if present, else this repository's Markdown. Default model's tokenizer. Prints
ns a token (best of --repeats) for each form.
"""

from __future__ import annotations

import argparse
import gzip
import pickle
import sys
import time
from itertools import chain, starmap
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.text_path import corpus  # noqa: E402
from streamret.engine.config import EngineConfig  # noqa: E402
from streamret.engine.scheduler import PieceLayout  # noqa: E402
from streamret.engine.text import TextSnapshot, _piece, piece_columns, pieces_of_columns  # noqa: E402
from streamret.engine.tokenize_stage import in_process_cut  # noqa: E402
from streamret.model.spec import load_model  # noqa: E402


def best_of(f, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        f()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--chunks", type=int, default=200)
    ap.add_argument("--chunk-bytes", type=int, default=2048)
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args()
    man = ROOT / ".device" / "text" / "man.txt.gz"
    n = args.chunks * args.chunk_bytes
    raw = gzip.open(man).read()[:n] if man.exists() else corpus(n)
    cut = in_process_cut(load_model("default", "cpu").tokenizer, EngineConfig().text_params)
    got = cut([(TextSnapshot(b"", 0), raw[i : i + args.chunk_bytes], "") for i in range(0, n, args.chunk_bytes)])
    tokens = sum(len(r.ids) for r in got)
    lens = np.concatenate([r.lens for r in got])
    pieces = [pieces_of_columns(*r.columns[:2]) for r in got]
    as_columns = pickle.dumps([(piece_columns(p), r.ids, r.lens) for p, r in zip(pieces, got)])
    as_rows = pickle.dumps([([(p.text, p.start_byte, p.end_byte, p.starts_segment, p.ends_segment, p.carry_chars,
                               p.carry_bytes) for p in ps], r.ids, r.lens) for ps, r in zip(pieces, got)])

    def from_columns() -> list[PieceLayout]:
        columns = [c for c, _, _ in pickle.loads(as_columns)]
        return PieceLayout.of_columns(list(chain.from_iterable(c[0] for c in columns)),
                               np.concatenate([c[1] for c in columns]), np.concatenate([c[2] for c in columns]),
                               np.array([len(c[0]) for c in columns]), lens)

    def from_rows() -> list[PieceLayout]:
        items = [list(starmap(_piece, rows)) for rows, _, _ in pickle.loads(as_rows)]
        return PieceLayout.of_items(items, lens)

    for a, b in zip(from_columns(), from_rows(), strict=True):  # the two forms give the same layouts
        assert a.pieces == b.pieces and a.starts == b.starts and a.step_spans.text == b.step_spans.text
        assert np.array_equal(a.step_spans.facts, b.step_spans.facts) and np.array_equal(a.char_offsets, b.char_offsets)

    for name, f in (("columns", from_columns), ("a tuple per piece", from_rows)):
        print(f"{name}: {best_of(f, args.repeats) / tokens * 1e9:.1f} ns a token ({tokens:,} tokens)")


if __name__ == "__main__":
    main()
