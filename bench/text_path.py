"""The engine's text path alone: chunks -> tokenizer-safe pieces (TextAssembler) -> token ids, with the
tokenizer called once per piece, once per chunk on its pieces (`encode_batch`), or once per chunk on its
pieces as one input (`encode_pieces`: ids as one array and the pieces' ends, what the engine does). For
models with a real tokenizer (`default`) this is host work every chunk pays before the model sees it.

    python bench/text_path.py --model default --mb 4 --chunk-bytes 65536

Text: this repository's Markdown files (English prose and code), repeated to --mb. Prints M tokens/s
(best of --repeats) and writes DIR/text_path.json (DIR: --out, else $OUT, else .).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from streamret.engine.text import TextAssembler  # noqa: E402
from streamret.model.spec import load_model  # noqa: E402
from streamret.model.tokenizer import encode_pieces  # noqa: E402


def corpus(n_bytes: int) -> bytes:
    files = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md"), *(ROOT / "bench").glob("*.md")])
    text = "\n\n".join(f.read_text(encoding="utf-8") for f in files if f.is_file()).encode()
    return (text * (n_bytes // len(text) + 1))[:n_bytes]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--mb", type=float, default=4.0, help="megabytes of text")
    ap.add_argument("--chunk-bytes", type=int, default=65536)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    args = ap.parse_args(argv)

    tokenizer = load_model(args.model, "cpu", "float32").tokenizer
    raw = corpus(int(args.mb * 1e6))
    chunks = [raw[i : i + args.chunk_bytes] for i in range(0, len(raw), args.chunk_bytes)]
    started = time.perf_counter()
    assembler = TextAssembler()
    pieces = [assembler.feed(c) for c in chunks] + [assembler.close()]
    split_s = time.perf_counter() - started

    ways = {"per_piece": lambda ps: [tokenizer.encode(p.text) for p in ps],
            "encode_batch": lambda ps: tokenizer.encode_batch([p.text for p in ps]),
            "encode_pieces": lambda ps: encode_pieces(tokenizer, [[p.text for p in ps]])}
    best, ids = {}, {}
    for _ in range(args.repeats):
        for name, encode in ways.items():
            started = time.perf_counter()
            ids[name] = [encode(ps) for ps in pieces]
            best[name] = min(best.get(name, float("inf")), time.perf_counter() - started)
    if ids["per_piece"] != ids["encode_batch"]:
        raise SystemExit("encode_batch gave other ids than encode: the tokenizer is broken")
    by_piece = [[a.tolist() for a in np.split(t, e[:-1])] if len(e) else [] for t, e in ids["encode_pieces"]]
    if by_piece != ids["per_piece"]:
        raise SystemExit("encode_pieces gave other ids than encode")
    n_tokens = sum(len(x) for chunk in ids["per_piece"] for x in chunk)
    rows = {name: n_tokens / s for name, s in best.items()}
    result = dict(bench="text_path", model=args.model, tokenizer=tokenizer.name, bytes=len(raw), tokens=n_tokens,
                  chunk_bytes=args.chunk_bytes, pieces=sum(map(len, pieces)), cpus=os.cpu_count(),
                  machine=platform.processor() or platform.machine(), python=platform.python_version(),
                  tokenizers_parallelism=os.environ.get("TOKENIZERS_PARALLELISM", "(unset)"),
                  text_split_tokens_per_s=n_tokens / split_s, tokens_per_s=rows, command=" ".join(sys.argv))
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "text_path.json").write_text(json.dumps(result, indent=1))
    print(f"{args.model} ({tokenizer.name}): {len(raw) / 1e6:.1f} MB, {n_tokens:,} tokens, {len(chunks)} chunks of "
          f"{args.chunk_bytes} B, {result['pieces']:,} pieces, {os.cpu_count()} CPUs")
    print(f"  text split alone   {n_tokens / split_s / 1e6:6.2f} M tok/s")
    for name, rate in rows.items():
        print(f"  {name:17s}  {rate / 1e6:6.2f} M tok/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
