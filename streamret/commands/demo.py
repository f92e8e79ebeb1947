"""`streamret demo`: read a text as a stream and print its embedding (until `serve` replaces it).

The text is tokenized once and fed to the model in pieces, each run chunkwise from the state the
previous piece left, the way the engine feeds a stream; the embedding comes from the state's
running sums.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from . import add_model_args, load_from_args

SAMPLE = (
    "A stream has no end that the reader can wait for. Logs grow by the second, a book arrives a page "
    "at a time, an event feed never closes. A retentive network keeps a fixed-size state per stream "
    "and folds each new token into it, so the cost of reading grows with the text and the memory does "
    "not. At any moment the state can answer what the stream has been about so far."
)


def register(subparsers) -> None:
    p = subparsers.add_parser("demo", help="embed a sample text (or TEXT, or --file) read as a stream")
    p.add_argument("text", nargs="?", metavar="TEXT", help="text to read (default: a built-in sample)")
    p.add_argument("--file", type=Path, help="read the text from this file instead (non-empty UTF-8)")
    add_model_args(p)
    p.add_argument("--piece-tokens", type=int, default=256, help="tokens per piece fed to the model (default: 256)")
    p.add_argument("--chunk-size", type=int, default=64, help="chunk size of the chunkwise form (default: 64)")
    p.add_argument("--show", type=int, default=8, help="how many embedding values to print (default: 8)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import torch

    if args.text is not None and args.file is not None:
        raise ValueError("pass TEXT or --file, not both")
    if args.piece_tokens < 1:
        raise ValueError(f"--piece-tokens must be >= 1, got {args.piece_tokens}")
    from streamret.textcheck import InvalidText, check_bytes

    if args.file is not None:
        if args.file.is_dir():
            raise IsADirectoryError(f"--file {args.file} is a directory; give one text file")
        text = check_bytes(args.file.read_bytes(), str(args.file))  # empty, not UTF-8: the offset, as `stream`
    else:
        text = SAMPLE if args.text is None else args.text
        if not text:
            raise InvalidText("TEXT is empty: nothing to embed")
    loaded = load_from_args(args)
    model = loaded.model
    ids = loaded.tokenizer.encode(text)
    if not ids:
        raise ValueError("the text is empty: nothing to embed")
    state = model.init_state(1)
    with torch.inference_mode():
        for start in range(0, len(ids), args.piece_tokens):
            piece = torch.tensor(ids[start:start + args.piece_tokens], device=model.device)
            _, state = model(piece, mode="chunkwise", state=state, chunk_size=args.chunk_size)
        emb = model.stream_embedding(state)[0].cpu()
    pieces = -(-len(ids) // args.piece_tokens)
    dtype = str(model.dtype).removeprefix("torch.")
    print(f"model      {loaded.spec} (fingerprint {loaded.fingerprint[:12]}) on {model.device}, {dtype}")
    print(f"read       {len(text):,} characters, {len(ids):,} tokens in {pieces} piece(s) of <= {args.piece_tokens}")
    print(f"embedding  dim {emb.numel()}, L2 norm {emb.norm().item():.6f}")
    print("first      " + " ".join(f"{v:+.4f}" for v in emb[: args.show].tolist()))
    return 0
