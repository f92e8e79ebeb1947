"""The tokenize stage's native call on real text: the bundled tokenizer with and without its normalizer twin.

    python bench/tokenizer.py --text .device/text/man.txt.gz          # one thread, as in engine processes

The text (bench/e2e.py's --text sources) is cut into 2 KiB chunks per stream and each chunk into the
engine's pieces (TextAssembler, sentence segments), then `HFTokenizer.encode_pieces` runs on batches of
--batch chunks, as the tokenize stage calls it: once as shipped (normalized by `tokenizers`) and once with
the pieces normalized in Python and encoded by the twin without a normalizer (`_Prenormalized`). Prints
us per token of each (best of --repeats) and checks that both give the same ids. Writes DIR/tokenizer.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # one thread, as each engine process runs it

sys.path.insert(0, str(Path(__file__).parent))


def main() -> None:
    import tokenizers
    from e2e import find_text  # bench/e2e.py

    from streamret.engine.text import TextAssembler
    from streamret.model.spec import load_model

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--text", action="append", default=[], help="a file or folder of text (bench/e2e.py's --text)")
    ap.add_argument("--text-mb", type=float, default=4.0)
    ap.add_argument("--chunk-bytes", type=int, default=2048)
    ap.add_argument("--batch", type=int, default=16, help="chunks per encode_pieces call")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    args = ap.parse_args()

    text, _ = find_text(args.text, int(args.text_mb * 2**20), 1 << 16)
    data = text.encode()
    front = TextAssembler()
    items = [[p.text for p in front.feed(data[i:i + args.chunk_bytes])] for i in range(0, len(data), args.chunk_bytes)]
    batches = [items[i:i + args.batch] for i in range(0, len(items), args.batch)]
    tok = load_model("default", "cpu").tokenizer
    twin = tok._prenormalized

    def run(prenormalized) -> tuple[float, list]:
        tok._prenormalized = prenormalized
        best, out = float("inf"), []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            out = [tok.encode_pieces(b) for b in batches]
            best = min(best, time.perf_counter() - t0)
        return best, out

    as_shipped, ids_a = run(None)
    prenormalized, ids_b = run(twin)
    tok._prenormalized = twin
    same = all((a[0] == b[0]).all() and (a[1] == b[1]).all() for a, b in zip(ids_a, ids_b))
    n = sum(len(a[0]) for a in ids_a)
    result = {"bench": "tokenizer", "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "python": platform.python_version(),
              "tokenizers": tokenizers.__version__, "machine": platform.node(), "tokens": n, "chunks": len(items),
              "batch_chunks": args.batch, "same_ids": bool(same),
              "us_per_token": {"as_shipped": round(1e6 * as_shipped / n, 3),
                               "prenormalized": round(1e6 * prenormalized / n, 3)}}
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "tokenizer.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result))
    if not same:
        sys.exit("the twin gave other ids than the tokenizer: a bug")


if __name__ == "__main__":
    main()
