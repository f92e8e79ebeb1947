"""The chunkwise forward replayed from CUDA graphs, one graph per bucket of step shapes.

A small model (the default is d 384 with 4 layers) runs about sixty kernels a forward, each a few
microseconds of GPU work, and the host needs longer than that to launch them: the forward is bound
by Python. A graph launches all of them at once. Graphs have fixed shapes, so a batch of N
sequences and T tokens runs in the graph of bucket (Nb, Tb) with Nb > N and Tb >= T: one padding
sequence takes the tokens [T, Tb) and empty sequences fill the rows past it; their outputs and
states are dropped. Every kernel reads the sequence boundaries from cu_seqlens on the device, so
one graph serves any lengths that fit its bucket.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np
import torch

from .retnet import RetNet, RetNetState

TOKEN_STEP = 4096  # token_bucket's step by default (EngineConfig.graph_token_step)


def token_bucket(T: int, step: int = TOKEN_STEP) -> int:
    """Powers of two up to `step` tokens, then multiples of `step` (at most 1/2, then step/T, padding)."""
    if T <= step:
        return max(64, 1 << max(0, T - 1).bit_length())
    return -(-T // step) * step


def seq_bucket(N: int) -> int:
    """Rows for N sequences plus the padding one, a power of two."""
    return max(2, 1 << N.bit_length())


def padded_inputs(tokens: np.ndarray, cu_seqlens: np.ndarray, step: int = TOKEN_STEP) -> tuple[np.ndarray, np.ndarray]:
    """ids int64 [Tb] and cu_seqlens int32 [Nb + 1] on the host, padded as a graph of their bucket holds them
    (the padding sequence takes tokens [T, Tb), the rows after it are empty): a call with tokens=T then moves
    both with one copy. step: the graphs' `token_bucket` step."""
    T, N = len(tokens), len(cu_seqlens) - 1
    ids = np.zeros(token_bucket(T, step), np.int64)
    ids[:T] = tokens
    cu = np.full(seq_bucket(N) + 1, len(ids), np.int32)
    cu[: N + 1] = cu_seqlens
    return ids, cu


def all_buckets(max_sequences: int, max_tokens: int, step: int = TOKEN_STEP) -> list[tuple[int, int]]:
    """Every (rows, tokens) bucket of a batch of at most max_sequences sequences of at least one token each
    and at most max_tokens tokens in all, smallest first (tokens by `token_bucket` with this step)."""
    tokens, t = [], 1
    while token_bucket(t, step) < token_bucket(max_tokens, step):
        tokens.append(token_bucket(t, step))
        t = token_bucket(t, step) + 1
    tokens.append(token_bucket(max_tokens, step))
    rows = sorted({seq_bucket(n) for n in range(1, max_sequences + 1)})
    return [(nb, tb) for tb in tokens for nb in rows if nb // 2 <= tb]  # N sequences hold >= N tokens


@dataclass
class _Graph:
    graph: torch.cuda.CUDAGraph
    ids: torch.Tensor  # [Tb] int64
    cu: torch.Tensor  # [Nb + 1] int32
    state: RetNetState  # Nb rows: the input buffers (the first rows of buffers every graph shares)
    hidden: torch.Tensor  # [Tb, d] output (the first rows of a buffer every graph shares)
    new_state: RetNetState  # Nb rows, output (likewise shared)
    rows: dict[int, _RowViews] = field(default_factory=dict)  # by N: the views a call of N sequences uses

    def row_views(self, N: int) -> _RowViews:
        views = self.rows.get(N)
        if views is None:
            names = list(self.state.tensors())
            views = self.rows[N] = _RowViews(
                names, [t[:N] for t in self.state.tensors().values()],
                [t[N:] for t in self.state.tensors().values()] if N < self.state.n else [],
                [t[:N] for t in self.new_state.tensors().values()])
        return views


@dataclass
class _RowViews:
    """A graph's state buffers cut at N sequences, made once per N: a call then moves every state tensor
    with one foreach op each way instead of a few ops per tensor (each torch call from the step thread may
    wait for the GIL: bench/RESULTS.md, "End to end on the H200, session 12")."""

    names: list[str]
    inputs: list[torch.Tensor]  # rows [:N] of the input state
    padding: list[torch.Tensor]  # rows [N:] of the input state (zeroed each call), [] when N fills the bucket
    outputs: list[torch.Tensor]  # rows [:N] of the output state


class _Alternating:
    """Two sets of state buffers that calls copy their output states into in turn (fresh_state=False): a
    state returned by one call stays valid until the call after next. Sized to the rows of the largest
    graph seen (grown for good, not step by step as N varies); their views per N made once."""

    def __init__(self) -> None:
        self.buffers: list[list[torch.Tensor]] = []  # two sets, each a tensor per state tensor
        self.views: dict[int, tuple[list[torch.Tensor], ...]] = {}
        self.turn = 0

    def take(self, like: list[torch.Tensor], rows: int) -> list[torch.Tensor]:
        """Views of [N] rows (N = like's rows) in the next set, shaped and typed as `like`; rows: how many the
        sets should hold if they must grow (the graph's, >= N)."""
        N = like[0].shape[0]
        if not self.buffers or self.buffers[0][0].shape[0] < N:
            self.buffers = [[torch.empty((max(rows, N), *t.shape[1:]), dtype=t.dtype, device=t.device) for t in like]
                            for _ in range(2)]
            self.views = {}
        views = self.views.get(N)
        if views is None:
            views = self.views[N] = tuple([t[:N] for t in b] for b in self.buffers)
        self.turn ^= 1
        return views[self.turn]


class GraphedForward:
    """`model(ids, cu_seqlens=..., state=...)` in chunkwise mode, replayed from CUDA graphs.

    Same contract as RetNet.forward for packed input: returns (hidden [T, d], new state), fresh
    tensors the caller owns. Graphs are captured on first use of a bucket and kept, the least
    recently used dropped past `max_graphs`. Inference only (no autograd); one caller at a time.
    """

    def __init__(self, model: RetNet, max_graphs: int = 16, chunk_size: int = 64, token_step: int = TOKEN_STEP):
        if model.device.type != "cuda":
            raise ValueError(f"CUDA graphs need the model on a GPU, got {model.device}; call the model itself")
        self.model, self.max_graphs, self.chunk_size = model, max_graphs, chunk_size
        self.token_step = token_step  # the token buckets' (`token_bucket`)
        self.graphs: OrderedDict[tuple[int, int], _Graph] = OrderedDict()
        # Graphs replay one at a time, so they share memory: their work memory comes from one pool (what a
        # capture frees, the next reuses), and their inputs and outputs are the first rows of buffers shared by
        # all of them (the states are the largest: a graph of its own per bucket would hold them per bucket)
        self.pool = torch.cuda.graph_pool_handle()
        self._states: tuple[RetNetState, RetNetState] | None = None  # input, output: as many rows as the most
        self._hidden: torch.Tensor | None = None  # [tokens of the largest bucket, d]
        self.captures = 0  # graphs captured so far (a capture costs a few eager forwards)
        # one warm-up stream for every capture: with a new stream per capture, capturing every bucket took
        # 1,009 MB against 441 (H200, 2026-12-02), most likely the cuBLAS workspace PyTorch keeps per
        # stream (32 MiB by default on Hopper; inferred, not measured alone)
        self._side = torch.cuda.Stream(device=model.device)
        self._alternating = _Alternating()  # fresh_state=False: the output states' two buffer sets

    @torch.inference_mode()  # as __call__: the model takes its fused inference path only there
    def capture(self, buckets: list[tuple[int, int]]) -> None:
        """Capture these buckets' graphs now (a server's start) rather than at a step that needs one."""
        self.max_graphs = max(self.max_graphs, len(buckets))
        if buckets:  # the shared buffers at their largest first, not grown (and left behind) bucket by bucket
            self._rows(max(nb for nb, _ in buckets))
        for nb, tb in buckets:
            self._graph(nb, tb)

    def clear(self) -> None:
        """Drop every graph: call after changing the model's weights (a graph holds the tensors it captured), or
        after a capture failed."""
        self.graphs.clear()
        # a new pool: PyTorch's allocator refuses a capture into a pool whose graphs are all gone (an INTERNAL
        # ASSERT on use_count at capture_begin, seen on an H100 after a capture at start ran out of memory)
        self.pool = torch.cuda.graph_pool_handle()
        self._states = self._hidden = None
        self._alternating = _Alternating()

    def _rows(self, Nb: int) -> tuple[RetNetState, RetNetState]:
        """The input and output state buffers of a graph of Nb rows: the first rows of the shared ones."""
        if self._states is None or self._states[0].n < Nb:  # graphs made before keep the smaller ones alive
            self._states = (self.model.init_state(Nb, self.model.device), self.model.init_state(Nb, self.model.device))
        return tuple(s.map(lambda x: x[:Nb]) for s in self._states)  # type: ignore[return-value]

    def _hidden_rows(self, like: torch.Tensor, Tb: int) -> torch.Tensor:
        if self._hidden is None or self._hidden.shape[0] < Tb or self._hidden.dtype != like.dtype:
            self._hidden = torch.empty(max(Tb, 16384), like.shape[1], dtype=like.dtype, device=like.device)
        return self._hidden[:Tb]

    @torch.inference_mode()
    def __call__(
        self, ids: torch.Tensor, cu_seqlens: torch.Tensor, state: RetNetState, clone_hidden: bool = True,
        fresh_state: bool = True, tokens: int | None = None,
    ) -> tuple[torch.Tensor, RetNetState]:
        """ids and cu_seqlens may lie on the host (pinned, for an asynchronous copy) or on the device.
        clone_hidden=False returns a view of the graph's output instead of a copy: valid until the next
        call (work queued on the current stream before that call reads it safely). fresh_state=False
        returns the new state in one of two buffer sets that calls take in turn, valid until the call after
        next (an engine books step k before it launches step k + 2): one copy op instead of a clone per
        tensor. tokens=T: ids and cu_seqlens come padded to their bucket (`padded_inputs`) for T tokens of
        state.n sequences, and are moved with one copy."""
        if tokens is None:
            T, N = ids.shape[0], cu_seqlens.numel() - 1
            want, how = (T, N + 1), "ids [T], cu_seqlens [N+1] and a state of N streams"
        else:
            T, N = tokens, state.n
            want, how = ((token_bucket(T, self.token_step), seq_bucket(N) + 1),
                         f"padded_inputs' ids and cu_seqlens for {T} tokens (step {self.token_step})")
        if ids.dim() != 1 or N < 1 or state.n != N or (ids.shape[0], cu_seqlens.numel()) != want:
            raise ValueError(f"expected {how}; got ids {tuple(ids.shape)}, cu_seqlens {tuple(cu_seqlens.shape)}, "
                             f"a state of {state.n}")
        g = self._graph(seq_bucket(N), token_bucket(T, self.token_step))
        if tokens is not None:
            torch._foreach_copy_([g.ids, g.cu], [ids, cu_seqlens], non_blocking=True)
        else:
            g.ids[:T].copy_(ids, non_blocking=True)
            g.ids[T:].zero_()
            g.cu[: N + 1].copy_(cu_seqlens, non_blocking=True)
            g.cu[N + 1 :].fill_(g.ids.shape[0])  # the padding sequence ends at Tb; the rows after it are empty
        rows = g.row_views(N)
        torch._foreach_copy_(rows.inputs, list(state.tensors().values()), non_blocking=True)
        if rows.padding:
            torch._foreach_zero_(rows.padding)
        g.graph.replay()
        hidden = g.hidden[:T].clone() if clone_hidden else g.hidden[:T]
        if fresh_state:
            out = [t.clone() for t in rows.outputs]
        else:
            out = self._alternating.take(rows.outputs, g.new_state.n)
            torch._foreach_copy_(out, rows.outputs)
        return hidden, RetNetState.from_tensors(dict(zip(rows.names, out, strict=True)))

    def _graph(self, Nb: int, Tb: int) -> _Graph:
        key = (Nb, Tb)
        if key in self.graphs:
            self.graphs.move_to_end(key)
            return self.graphs[key]
        while len(self.graphs) >= self.max_graphs:
            self.graphs.popitem(last=False)
        model, dev = self.model, self.model.device
        ids = torch.zeros(Tb, dtype=torch.long, device=dev)
        cu = torch.full((Nb + 1,), Tb, dtype=torch.int32, device=dev)
        cu[0] = 0
        state, out_state = self._rows(Nb)

        def run():
            return model(ids, cu_seqlens=cu, state=state, mode="chunkwise", chunk_size=self.chunk_size, fused=True)

        side = self._side  # warm up (Triton compiles, cuBLAS picks) off the capture
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            out_hidden = self._hidden_rows(run()[0], Tb)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        # thread_local: other threads (an engine's callers moving states) may use the GPU during a capture
        with torch.cuda.graph(graph, pool=self.pool, capture_error_mode="thread_local"):
            hidden, new_state = run()
            out_hidden.copy_(hidden)  # into the shared outputs: the forward's own go back to the pool below
            for dst, src in zip(out_state.tensors().values(), new_state.tensors().values(), strict=True):
                dst.copy_(src)
        del hidden, new_state
        self.graphs[key] = _Graph(graph, ids, cu, state, out_hidden, out_state)
        self.captures += 1
        return self.graphs[key]
