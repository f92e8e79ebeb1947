"""The whole-document objective: one embedding for a document thousands of tokens long, as the engine makes it.

The student reads each document window of a `DocBatch` from its first token to its last, state carried,
and pools it exactly as the engine does (`model.embed` of the sum of all final hidden states). That
embedding D must
  (a) find its document from passages of it: InfoNCE over the batch's documents (distinct documents,
      a few per folder, so each other's hard negatives) and a bank of the last steps' document
      embeddings (more negatives than one step holds, as a search among hundreds of documents has;
      an entry of the query's own document is left out), with the teacher's embeddings of the query
      passages and the student's own (what a search with the student compares) as queries;
  (b) point where the teacher's chunk embeddings of the same window, averaged, point (the
      chunk-averaged teacher that the quality benchmark compares against).

Memory: a window of 16k tokens in the parallel form would keep every block's activations for the
backward. Instead the forward runs without a graph, block by block, keeping only the state at each
block start; the loss gives the gradient of the pooled sum, and the blocks are re-run in reverse with
a graph, each from its saved state, the gradient of its input state handed to the block before. The
gradient is exact (the whole document is differentiated), with one block's activations in memory.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from streamret.model.retnet import RetNet, RetNetState

from .data import DocBatch, teacher_targets


def autocast(device: torch.device):
    """bf16 autocast on a GPU (as all of training), nothing on the CPU."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


def _wide(hidden: torch.Tensor) -> torch.Tensor:
    """At least float32 (bf16 under autocast; float64 stays, for exact checks)."""
    return hidden.to(torch.promote_types(hidden.dtype, torch.float32))


def _blocks(length: int, block: int) -> list[tuple[int, int]]:
    return [(s, min(s + block, length)) for s in range(0, length, block)]


DOC_FORWARDS = ("parallel", "chunkwise")


def pooled_without_graph(model: RetNet, ids: torch.Tensor, block: int,
                         mode: str = "parallel") -> tuple[torch.Tensor, list[RetNetState]]:
    """Sum of final hidden states per row of ids [n, L] ([n, d], float32 or wider) and the state at each block start.

    mode "parallel": the layout the backward re-runs (what every run up to 2026-12-03 used); "chunkwise": the
    engine's own inference path (on a GPU the fused layers and the Triton chunk kernels), so the pooled sum is
    what the engine serves; the blocks' re-run with a graph stays parallel, from the states saved here."""
    if mode not in DOC_FORWARDS:
        raise ValueError(f"doc forward mode={mode!r}; use one of {DOC_FORWARDS}")
    state = model.init_state(ids.shape[0], ids.device)
    starts, pooled = [], None
    with torch.no_grad(), autocast(ids.device):
        for s, e in _blocks(ids.shape[1], block):
            starts.append(state)
            hidden, state = model(ids[:, s:e], mode=mode, state=state, fused=None if mode == "chunkwise" else False)
            part = _wide(hidden).sum(1)
            pooled = part if pooled is None else pooled + part
    return pooled, starts


def backward_through_blocks(model: RetNet, ids: torch.Tensor, block: int, starts: list[RetNetState],
                            pooled_grad: torch.Tensor) -> None:
    """Accumulate into the parameters' .grad the gradient of a loss whose gradient w.r.t. the pooled
    sum is pooled_grad [n, d]: blocks re-run in reverse from their saved start states."""
    state_grad: list[torch.Tensor] | None = None
    for (s, e), start in reversed(list(zip(_blocks(ids.shape[1], block), starts, strict=True))):
        first = s == 0
        layers = [t.detach().requires_grad_(not first) for t in start.layers]
        with autocast(ids.device):
            hidden, end = model(ids[:, s:e], mode="parallel", fused=False,
                                state=RetNetState(layers, start.positions, start.pool_sum, start.pool_count))
        surrogate = (_wide(hidden).sum(1) * pooled_grad).sum()
        if state_grad is not None:  # what the later blocks' loss owes to this block's end state
            surrogate = surrogate + sum((t * g).sum() for t, g in zip(end.layers, state_grad, strict=True))
        surrogate.backward()
        state_grad = None if first else [t.grad for t in layers]


class DocBank:
    """The last `size` document embeddings (no gradient) and their document indices: extra negatives.
    Not in the checkpoint: a resumed run refills it within a few steps."""

    def __init__(self, size: int, dim: int, device):
        self.emb = torch.zeros(size, dim, device=device)
        self.doc = torch.full((size,), -1, dtype=torch.long, device=device)  # -1: empty
        self.next = 0

    def add(self, emb: torch.Tensor, doc: torch.Tensor) -> None:
        rows = (self.next + torch.arange(len(emb), device=self.emb.device)) % len(self.emb)
        self.emb[rows], self.doc[rows] = emb.detach().float(), doc
        self.next = int(rows[-1] + 1) % len(self.emb)

    def logits(self, queries: torch.Tensor, query_doc: torch.Tensor, temperature: float) -> torch.Tensor:
        """[q, size] scaled similarities; empty entries and those of each query's own document at -inf."""
        out = queries @ self.emb.T / temperature
        return out.masked_fill((self.doc[None, :] < 0) | (self.doc[None, :] == query_doc[:, None]), float("-inf"))


def teacher_doc_targets(teacher, batch: DocBatch, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(normalised mean of the teacher's chunk embeddings per row [n, e], teacher query embeddings [n*q, e])."""
    windows, row = batch.chunk_windows()
    chunks = teacher_targets(teacher, windows, device)
    sums = torch.zeros(len(batch.ids), chunks.shape[1], device=chunks.device)
    sums.index_add_(0, torch.from_numpy(row).to(chunks.device), chunks)
    return F.normalize(sums, dim=-1), teacher_targets(teacher, list(batch.queries), device)


def doc_step(model: RetNet, batch: DocBatch, t_docs: torch.Tensor, t_queries: torch.Tensor, bank: DocBank | None, *,
             block: int, temperature: float, mean_weight: float, nce_weight: float, device,
             forward: str = "parallel", query_grad: bool = True,
             doc_map: tuple[torch.Tensor, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """Forward and backward of the whole-document losses (gradients accumulate into .grad), then the
    documents go into the bank; returns the losses detached.

    query_grad: whether the InfoNCE with the student's own query embeddings also moves the queries (passages of
    64..128 tokens) toward their document, as every run up to 2026-12-03 did; off, they are fixed targets that
    only the documents move toward (issue 18: those runs crowded the student's passages together).

    doc_map: (mean [e], matrix [e, e]) of a fixed document map (streamret/model/document_map.py). With it the
    InfoNCE scores the documents as the `document` role serves them, normalise((d - mean) @ matrix), against plain
    queries, and the bank keeps them so; the mean loss still pulls the plain embedding toward the teacher's."""
    ids = torch.from_numpy(batch.ids).to(device)
    pooled, starts = pooled_without_graph(model, ids, block, forward)
    pooled = pooled.detach().requires_grad_()
    queries = torch.from_numpy(batch.queries).to(device)
    with torch.set_grad_enabled(query_grad):  # off: no gradient into the queries' layers nor the head through them
        with autocast(device):
            q_hidden, _ = model(queries, mode="parallel")
        # the pooled means through the head in float32, as the engine's float64 pool is
        s_queries = model.embed(q_hidden.float().sum(1), torch.full((len(queries),), queries.shape[1], device=device))
    docs = model.embed(pooled, torch.full((len(ids),), ids.shape[1], device=device))
    served = docs if doc_map is None else F.normalize((docs - doc_map[0]) @ doc_map[1], dim=-1)
    gold = torch.from_numpy(batch.query_doc).to(device)
    doc_ids = torch.from_numpy(batch.doc).to(device)

    def logits_of(q: torch.Tensor) -> torch.Tensor:
        out = q @ served.T / temperature
        if bank is not None:
            out = torch.cat([out, bank.logits(q, doc_ids[gold], temperature)], dim=1)
        return out

    t_logits = logits_of(t_queries)
    nce = 0.5 * (F.cross_entropy(t_logits, gold) + F.cross_entropy(logits_of(s_queries), gold))
    mean = (1 - (docs * t_docs).sum(-1)).mean()
    loss = mean_weight * mean + nce_weight * nce
    loss.backward()
    backward_through_blocks(model, ids, block, starts, pooled.grad)
    with torch.no_grad():
        hits = t_logits.argmax(-1) == gold  # among this step's documents and the bank's
        if bank is not None:
            bank.add(served, doc_ids)
    return {"doc_mean": mean.detach(), "doc_nce": nce.detach(), "doc_top1": hits.float().mean()}
