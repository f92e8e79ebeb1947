"""The tokenize stage's native call on real text: the bundled tokenizer with and without its normalizer twin.

    python bench/tokenizer.py --text .device/text/man.txt.gz          # one thread, as in engine processes

The text (bench/e2e.py's --text sources) is cut into 2 KiB chunks per stream and each chunk into the
engine's pieces (TextAssembler, sentence segments), then `HFTokenizer.encode_pieces` runs on batches of
--batch chunks, as the tokenize stage calls it: once as shipped (normalized by `tokenizers`) and once with
the pieces normalized in Python and encoded by the twin without a normalizer (`_Prenormalized`), and once
more with printable ASCII pieces looked up word by word (`_WordCache`, empty at the start of the first pass).
Prints us per token of each (best of --repeats, and the first pass) and checks that all give the same ids.
Writes DIR/tokenizer.json.
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


def main(argv: list[str] | None = None) -> None:
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
    args = ap.parse_args(argv)

    text, _ = find_text(args.text, int(args.text_mb * 2**20), 1 << 16)
    data = text.encode()
    front = TextAssembler()
    items = [[p.text for p in front.feed(data[i:i + args.chunk_bytes])] for i in range(0, len(data), args.chunk_bytes)]
    batches = [items[i:i + args.batch] for i in range(0, len(items), args.batch)]
    tok = load_model("default", "cpu").tokenizer
    prenormalized = tok._prenormalized
    words = prenormalized.words if prenormalized is not None else None

    def run(pre, cache) -> tuple[float, float, list]:
        """(first pass s, best of --repeats s, ids): the first pass starts with an empty word cache."""
        tok._prenormalized = pre
        if pre is not None:
            pre.words = cache
            if cache is not None:
                cache.clear()
        times, out = [], []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            out = [tok.encode_pieces(b) for b in batches]
            times.append(time.perf_counter() - t0)
        return times[0], min(times), out

    runs = {"as_shipped": run(None, None)}
    if prenormalized is not None:
        runs["prenormalized"] = run(prenormalized, None)
        if words is not None:
            runs["word_cache"] = run(prenormalized, words)
    tok._prenormalized = prenormalized
    ref = runs["as_shipped"][2]
    same = all(all((a[0] == b[0]).all() and (a[1] == b[1]).all() for a, b in zip(ref, r[2])) for r in runs.values())
    n = sum(len(a[0]) for a in ref)
    result = {"bench": "tokenizer", "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "python": platform.python_version(),
              "tokenizers": tokenizers.__version__, "machine": platform.node(), "tokens": n, "chunks": len(items),
              "batch_chunks": args.batch, "same_ids": bool(same),
              "us_per_token": {k: round(1e6 * r[1] / n, 3) for k, r in runs.items()},
              "us_per_token_first_pass": {k: round(1e6 * r[0] / n, 3) for k, r in runs.items()},
              "word_cache_words": words.words_held if words is not None else None}
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "tokenizer.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result))
    if not same:
        sys.exit("the twin or the word cache gave other ids than the tokenizer: a bug")


if __name__ == "__main__":
    main()
