"""The model runner: one packed forward per step, pooled sums per text span, greedy decoding.

The scheduler decides what runs; the state store provides the gathered states; this file only
turns token lists plus states into new states and the sums the outputs are built from.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from streamret_kernels import segment_sum

from ..model.graphs import GraphedForward
from ..model.retnet import RetNet, RetNetState, pooled_embedding


@dataclass
class StepOutput:
    state: RetNetState  # the streams' new states, on the model's device
    span_sums: torch.Tensor  # [n_spans, d_model] float64 on the CPU: sum of final hidden states per span
    embeddings: torch.Tensor  # [n_streams, embed_dim] float32 on the CPU: stream embeddings after the step
    ready: torch.cuda.Event | None = None  # on a GPU: recorded after the copies to the CPU were queued

    def wait(self) -> None:
        """Block until span_sums and embeddings hold their values."""
        if self.ready is not None:
            self.ready.synchronize()


class ModelRunner:
    def __init__(self, model: RetNet, chunk_size: int = 64, cuda_graphs: bool = True):
        """cuda_graphs: on a GPU, replay each step's forward from a CUDA graph of its shape bucket
        (model/graphs.py): a step is then a few launches instead of hundreds, so the step thread needs
        the GIL a few times a step rather than once per kernel, while callers' threads want it too."""
        self.model = model
        self.chunk_size = chunk_size
        self.device = model.device
        # 64 graphs hold every bucket an engine's steps use in practice (rows 2..512 x tokens 64..16384 are
        # 90, but a workload keeps to a few): a capture costs a few forwards, so evicting one to capture
        # another would stall steps over and over
        self.graphed = GraphedForward(model, max_graphs=64, chunk_size=chunk_size) \
            if cuda_graphs and model.device.type == "cuda" else None
        # embeddings on the CPU, through a float64 copy of the embedding head: booking a step then
        # never waits on the device, which is already running the next step
        head = model.embed_head
        self._host_head = None if head is None else head.weight.detach().to("cpu", torch.float64)

    @torch.inference_mode()
    def run(self, tokens: np.ndarray, lens: np.ndarray, state: RetNetState, span_lens: np.ndarray) -> StepOutput:
        """Advance N streams by their tokens from `state` [N].

        tokens: int64 [T], the N streams' tokens packed one after the other; lens: int64 [N], tokens per
        stream (they become cu_seqlens). span_lens: int64 [S], consecutive token counts that partition the
        packed tokens (text pieces, in stream order); each span's hidden states are summed for its
        segment embedding.
        """
        if int(lens.sum()) != len(tokens) or int(np.sum(span_lens)) != len(tokens):
            raise ValueError(f"{len(tokens)} packed tokens, but the streams' lens add up to {int(lens.sum())} and "
                             f"the spans' to {int(np.sum(span_lens))}: pass the lens of the packed tokens")
        if self.graphed is not None:  # inputs go from pinned memory straight into the graph's buffers
            ids = torch.from_numpy(np.ascontiguousarray(tokens, dtype=np.int64)).pin_memory()
            cu = torch.from_numpy(np.concatenate([[0], np.cumsum(lens)]).astype(np.int32)).pin_memory()
            hidden, new_state = self.graphed(ids, cu, state, clone_hidden=False)  # read below, before the next step
        else:
            ids = self._to_device(np.ascontiguousarray(tokens, dtype=np.int64))
            cu = torch.from_numpy(np.concatenate([[0], np.cumsum(lens)]))  # the model reads it on the CPU
            hidden, new_state = self.model(ids, mode="chunkwise", state=state, cu_seqlens=cu,
                                           chunk_size=self.chunk_size)
        span_cu = self._to_device(np.concatenate([[0], np.cumsum(span_lens, dtype=np.int64)]))
        sums = segment_sum(hidden, span_cu)  # spans are consecutive: one float64 sum per span
        embeddings = self.model.stream_embedding(new_state)
        if self.device.type != "cuda":
            return StepOutput(new_state, sums, embeddings)
        # queue the copies and return: the engine books the previous step while this one runs
        host = [torch.empty(t.shape, dtype=t.dtype, pin_memory=True).copy_(t, non_blocking=True)
                for t in (sums, embeddings)]
        ready = torch.cuda.Event()
        ready.record()
        return StepOutput(new_state, *host, ready)

    def _to_device(self, a: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(a)
        if self.device.type == "cuda":
            return t.pin_memory().to(self.device, non_blocking=True)
        return t

    @torch.inference_mode()
    def embed(self, pool_sum: torch.Tensor, pool_count: torch.Tensor) -> np.ndarray:
        """`RetNet.embed` of pooled sums [n, d] (float64, any device), computed on the CPU: float32 [n, e]."""
        return pooled_embedding(pool_sum.cpu(), pool_count.cpu(), self._host_head).numpy()

    @torch.inference_mode()
    def generate(self, state: RetNetState, prompt: list[int], max_new_tokens: int, eos_id: int | None) -> list[int]:
        """Greedy decoding after `prompt`, from `state` [1] (which is not modified: forward copies)."""
        if not prompt:
            raise ValueError("generation needs a non-empty prompt to read the first logits from")
        ids = torch.tensor(prompt, dtype=torch.long, device=self.device)
        hidden, state = self.model(ids, mode="chunkwise", state=state, chunk_size=self.chunk_size)
        out: list[int] = []
        for _ in range(max_new_tokens):
            token = int(self.model.logits(hidden[-1]).argmax())
            if token == eos_id:
                break
            out.append(token)
            hidden, state = self.model(torch.tensor([token], device=self.device), mode="recurrent", state=state)
        return out
