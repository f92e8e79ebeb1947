"""Session 45 (issue 18): the passage InfoNCE on the CPU with the shipped weights, before any GPU leg.

(a) its loss and in-batch top-1 over 128 pairs of one training source (git-doc) at three query lengths;
(b) one step's forward at 64 pairs with one query length against a length per pair (the first form, which ran
    1.7 s a step on an H100: the parallel form runs one group per distinct sequence length).

    python bench/results/2026-12-06-cpu-s45/passage_nce_probe.py [--distill .distill]
"""
import argparse
import sys
import time

sys.path.insert(0, ".")
import numpy as np  # noqa: E402
import torch  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402

from streamret.model.spec import load_model  # noqa: E402
from streamret.train.data import Batch, Sampler, load_corpus  # noqa: E402
from streamret.train.distill import passage_nce  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--distill", default=".distill")
args = ap.parse_args()
cpu = torch.device("cpu")
model = load_model("default", "cpu").model
corpus = load_corpus(f"{args.distill}/data", ["git-doc"], Tokenizer.from_file(f"{args.distill}/teacher/tokenizer.json"))


def timed(pairs: Batch) -> tuple[dict, float]:
    t = time.perf_counter()
    out = passage_nce(model, pairs, cpu, 0.05)
    return {k: round(float(v), 4) for k, v in out.items()}, time.perf_counter() - t


with torch.no_grad():
    for query_len in (8, 24, 64):
        out, secs = timed(Sampler(corpus, seed=0).passage_pairs(128, 4, query_len))
        print(f"(a) 128 pairs, group 4, query_len {query_len}: {out} ({secs:.1f} s)", flush=True)
    sampler = Sampler(corpus, seed=1)
    one = sampler.passage_pairs(64, 4, 24)
    singles = [sampler.passage_pairs(2, 1, 8 + i % 57) for i in range(32)]  # 64 pairs, 32 query lengths
    seqs = [s for b in singles for s in b.windows[:2]] + [s for b in singles for s in b.windows[2:]]
    lengths = np.array([len(s) for s in seqs], dtype=np.int64)
    each = Batch(ids=np.concatenate(seqs).astype(np.int64), lengths=lengths,
                 span_of_token=np.repeat(np.arange(len(seqs)), lengths), span_len=lengths,
                 seq_of_span=np.arange(len(seqs), dtype=np.int64), windows=seqs)
    for name, batch in (("one query length", one), ("32 query lengths", each)):
        timed(batch)  # warm
        print(f"(b) 64 pairs, {name}: {len(set(batch.lengths.tolist()))} distinct lengths, "
              f"{min(timed(batch)[1] for _ in range(3)):.2f} s a forward", flush=True)
