"""Training and evaluation examples for distillation: token windows with their teacher targets.

Every example is one student sequence cut into spans of at most `teacher.CONTENT` tokens that tile
it; each span gets the teacher's embedding of exactly those tokens. A passage is a sequence of one
span; a long example is k consecutive spans of one document, whose document target is the mean of
its span targets (what the chunk-averaged teacher computes for a whole document). A document batch
(`Sampler.doc_batch`) holds whole document windows of thousands of tokens, distinct documents drawn a
few at a time from one folder of one source (each other's hard negatives: the Linux networking
manuals together, say), and query passages cut out of each.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .prepare import read_source
from .teacher import CLS_ID, CONTENT, SEP_ID

# a query's length in tokens, both where quality.py picks query sentences for its passage set and where the
# passage InfoNCE cuts its queries (one length a step), so that training asks what the benchmark asks
QUERY_TOKENS = (8, 64)


def draw_query_len(rng: np.random.Generator) -> int:
    """A passage InfoNCE query length in QUERY_TOKENS, log-uniform: sentence lengths are skewed short, and on the
    validation sources' query sentences a fifth falls in each of 8-12, 13-18, 19-26 and 27-39 tokens and 13% in
    40-64, near the log-uniform shares (23/18/17/19/23%); a uniform draw spent 44% of its steps at 40-64."""
    lo, hi = QUERY_TOKENS
    return min(hi, int(np.exp(rng.uniform(np.log(lo), np.log(hi + 1)))))


@dataclass
class Corpus:
    """Tokenized documents of some sources, with the sampling weight of each document."""

    docs: list[np.ndarray]  # int32 token ids per document
    source: np.ndarray  # [n_docs] index into names
    folder: np.ndarray  # [n_docs] index of the document id's folder (documents on one subject, mostly)
    names: list[str]
    starts_word: np.ndarray  # [vocab] bool: token can begin a word (not a "##" continuation)

    def n_tokens(self) -> int:
        return int(sum(len(d) for d in self.docs))


def load_corpus(data_dir: str | Path, names: list[str], tokenizer, min_tokens: int = 8) -> Corpus:
    """Tokenize the documents of the named sources (files written by `prepare`)."""
    docs, source, folders = [], [], []
    for i, name in enumerate(names):
        pairs = read_source(Path(data_dir) / f"{name}.jsonl.xz")
        for (doc_id, _), enc in zip(pairs, tokenizer.encode_batch([t for _, t in pairs], add_special_tokens=False)):
            if len(enc.ids) >= min_tokens:
                docs.append(np.asarray(enc.ids, dtype=np.int32))
                source.append(i)
                folders.append(f"{name}:{doc_id.rpartition('/')[0]}")
    vocab = tokenizer.get_vocab()
    starts_word = np.ones(max(vocab.values()) + 1, dtype=bool)
    for tok, idx in vocab.items():
        starts_word[idx] = not tok.startswith("##")
    folder_index = {f: k for k, f in enumerate(dict.fromkeys(folders))}
    return Corpus(docs, np.asarray(source), np.asarray([folder_index[f] for f in folders]), names, starts_word)


@dataclass
class Batch:
    """A packed student batch and the teacher windows of its spans.

    ids: [T] packed token ids; lengths: [N] sequence lengths; span_of_token: [T] span index;
    span_len: [S]; seq_of_span: [S]; windows: per span, its token ids (for the teacher).
    """

    ids: np.ndarray
    lengths: np.ndarray
    span_of_token: np.ndarray
    span_len: np.ndarray
    seq_of_span: np.ndarray
    windows: list[np.ndarray]

    @property
    def multi_span_seqs(self) -> np.ndarray:
        counts = np.bincount(self.seq_of_span, minlength=len(self.lengths))
        return np.nonzero(counts > 1)[0]

    def cu_seqlens(self) -> torch.Tensor:
        return torch.from_numpy(np.concatenate([[0], np.cumsum(self.lengths)]).astype(np.int64))


class Sampler:
    """Random windows of a corpus starting at word starts, documents weighted by tokens**alpha per source."""

    def __init__(self, corpus: Corpus, seed: int = 0, alpha: float = 0.7):
        self.c = corpus
        self.rng = np.random.default_rng(seed)
        lens = np.array([len(d) for d in corpus.docs], dtype=np.float64)
        per_source = np.bincount(corpus.source, weights=lens)
        # a source's share grows sub-linearly with its size, so small sources are not drowned out
        share = per_source**alpha / (per_source**alpha).sum()
        self.doc_p = share[corpus.source] * lens / per_source[corpus.source]
        self.lens = lens.astype(np.int64)
        self._cdf: dict[int, np.ndarray] = {}  # per window length: cdf over documents at least that long

    def _pick_docs(self, n: int, length: int) -> np.ndarray:
        if length not in self._cdf:
            p = np.where(self.lens >= length, self.doc_p, 0.0)
            if p.sum() == 0:
                raise ValueError(f"no document has >= {length} tokens; use shorter windows")
            self._cdf[length] = np.cumsum(p / p.sum())
        cdf = self._cdf[length]
        return np.minimum(np.searchsorted(cdf, self.rng.random(n) * cdf[-1], side="right"), len(cdf) - 1)

    def _window(self, d: int, length: int) -> np.ndarray:
        """A window of `length` tokens of document d, starting at a word start where possible."""
        doc = self.c.docs[d]
        s = int(self.rng.integers(0, self.lens[d] - length + 1))
        while s > 0 and not self.c.starts_word[doc[s]] and s + length < self.lens[d]:
            s += 1  # move to the next word start (the engine only ever starts streams at word starts)
        return doc[s : s + length]

    def doc_batch(self, n_docs: int, length: int, group: int, queries_per_doc: int, query_len: int) -> DocBatch:
        """Windows of `length` tokens from up to n_docs distinct documents, `group` at a time from one folder
        (topped up from its source; a source's share as in `batch`), and `queries_per_doc` passages of
        query_len tokens from each."""
        if query_len > min(length, CONTENT):
            raise ValueError(f"query_len {query_len} must be <= the window ({length}) and <= {CONTENT}")
        eligible = self.lens >= length
        if eligible.sum() < 2:
            raise ValueError(f"{eligible.sum()} documents have >= {length} tokens; a document batch needs 2: "
                             "use shorter doc_lengths or more data")
        n_docs = min(n_docs, int(eligible.sum()))
        left = np.where(eligible, self.doc_p, 0.0)
        picked: list[int] = []
        while len(picked) < n_docs:
            d0 = int(self.rng.choice(len(left), p=left / left.sum()))
            want = min(group, n_docs - len(picked))
            for kin in (self.c.folder == self.c.folder[d0], self.c.source == self.c.source[d0]):
                same = np.nonzero(kin & (left > 0))[0]
                if want == 0 or len(same) == 0:
                    break
                more = self.rng.choice(same, min(want, len(same)), replace=False, p=left[same] / left[same].sum())
                picked.extend(int(d) for d in more)
                left[more] = 0.0
                want -= len(more)
        ids = np.stack([self._window(d, length) for d in picked]).astype(np.int64)
        queries, query_doc = [], []
        for row, window in enumerate(ids):
            for _ in range(queries_per_doc):
                s = int(self.rng.integers(0, length - query_len + 1))
                while s < length - query_len and not self.c.starts_word[window[s]]:
                    s += 1
                queries.append(window[s : s + query_len])
                query_doc.append(row)
        return DocBatch(ids, np.asarray(picked), self.c.source[picked], np.stack(queries),
                        np.asarray(query_doc, dtype=np.int64))

    def passage_pairs(self, n: int, group: int, query_len: int) -> Batch:
        """n (passage, query) pairs for the passage InfoNCE, as quality.py's passage set makes them from sentences:
        from each CONTENT-token window a run of query_len tokens starting at a word start is cut out, and the
        passage keeps the rest. One query length per call, so that the parallel form runs the pairs as two
        equal-length groups (a length each would be a group each: 1.7 s a step on an H100, session 45). The
        windows come `group` at a time, consecutive and disjoint, from one document (each other's hard
        negatives). Sequences 0..n-1 are the passages, n..2n-1 their queries, one span each (`windows` holds the
        sequences; the loss needs no teacher)."""
        if not 1 <= query_len < CONTENT:
            raise ValueError(f"query_len {query_len} must satisfy 1 <= query_len < {CONTENT}")
        if n < 2 or group < 1:
            raise ValueError(f"passage pairs need n >= 2 (got {n}) and group >= 1 (got {group})")
        passages, queries = [], []
        for d in self._pick_docs(-(-n // group), group * CONTENT):
            run = self._window(int(d), group * CONTENT)
            for k in range(group):
                w = run[k * CONTENT : (k + 1) * CONTENT]
                s = int(self.rng.integers(0, CONTENT - query_len + 1))
                while s < CONTENT - query_len and not self.c.starts_word[w[s]]:
                    s += 1
                queries.append(w[s : s + query_len])
                passages.append(np.concatenate([w[:s], w[s + query_len :]]))
        seqs = passages[:n] + queries[:n]
        lengths = np.array([len(x) for x in seqs], dtype=np.int64)
        return Batch(ids=np.concatenate(seqs).astype(np.int64), lengths=lengths,
                     span_of_token=np.repeat(np.arange(len(seqs)), lengths), span_len=lengths,
                     seq_of_span=np.arange(len(seqs), dtype=np.int64), windows=seqs)

    def batch(self, groups: list[tuple[int, int, int]]) -> Batch:
        """groups: (n_sequences, n_spans, span_length) each; a sequence is n_spans consecutive spans."""
        seqs, lengths, span_len, seq_of_span, windows = [], [], [], [], []
        for n_seq, n_spans, span in groups:
            if span > CONTENT:
                raise ValueError(f"span length {span} > teacher window {CONTENT}")
            for d in self._pick_docs(n_seq, n_spans * span):
                w = self._window(int(d), n_spans * span)
                seqs.append(w)
                lengths.append(len(w))
                for k in range(n_spans):
                    windows.append(w[k * span : (k + 1) * span])
                    span_len.append(span)
                    seq_of_span.append(len(seqs) - 1)
        span_len_a = np.asarray(span_len, dtype=np.int64)
        return Batch(
            ids=np.concatenate(seqs).astype(np.int64),
            lengths=np.asarray(lengths, dtype=np.int64),
            span_of_token=np.repeat(np.arange(len(span_len_a)), span_len_a),
            span_len=span_len_a,
            seq_of_span=np.asarray(seq_of_span, dtype=np.int64),
            windows=windows,
        )


@dataclass
class DocBatch:
    """Distinct document windows of one length and query passages from each.

    ids: [n, L] token ids, one document window per row; doc, source: [n] its document and source;
    queries: [n * q, Lq] passages, each lying inside its row's window; query_doc: [n * q] that row.
    """

    ids: np.ndarray
    doc: np.ndarray
    source: np.ndarray
    queries: np.ndarray
    query_doc: np.ndarray

    def chunk_windows(self) -> tuple[list[np.ndarray], np.ndarray]:
        """Each row cut into teacher windows of CONTENT tokens (the last may be shorter), and their rows."""
        n, length = self.ids.shape
        windows = [row[s : s + CONTENT] for row in self.ids for s in range(0, length, CONTENT)]
        per_row = -(-length // CONTENT)
        return windows, np.repeat(np.arange(n), per_row)


@torch.no_grad()
def teacher_targets(teacher, windows: list[np.ndarray], device) -> torch.Tensor:
    """Teacher embeddings [S, d] of each span window; equal-length windows run as one padding-free batch."""
    out = torch.empty(len(windows), teacher.cfg["hidden_size"], device=device)
    by_len: dict[int, list[int]] = {}
    for i, w in enumerate(windows):
        by_len.setdefault(len(w), []).append(i)
    for idx in by_len.values():
        rows = np.stack([windows[i] for i in idx])
        ids = torch.from_numpy(np.pad(rows, ((0, 0), (1, 1)))).to(device)
        ids[:, 0], ids[:, -1] = CLS_ID, SEP_ID
        out[torch.tensor(idx, device=device)] = teacher(ids, None).float()
    return out
