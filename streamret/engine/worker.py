"""The model runner: one packed forward per step, pooled sums and embeddings per segment run, greedy decoding.

The scheduler decides what runs; the state store provides the gathered states; this file only
turns token lists plus states into new states and the sums the outputs are built from.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
from streamret_kernels import pool_runs

from ..model.graphs import GraphedForward, all_buckets, padded_inputs
from ..model.retnet import RetNet, RetNetState, mean_embedding, pooled_embedding
from .config import EngineConfig
from .segments import StepRuns
from .staging import Staging

log = logging.getLogger("streamret.engine")


@dataclass
class StepOutput:
    """What the step loop books from a step: numpy arrays on the host (on a GPU, views of one pinned buffer
    that a single copy fills: valid once `wait` returns)."""

    state: RetNetState  # the streams' new states, on the model's device (graphed: valid until the run after next)
    run_embeddings: np.ndarray  # float32 [runs, embed_dim]: the embedding of each run's pooled sum (StepRuns)
    # float32 [runs, embed_dim]: its stream's embedding after each run's last token (the reference a segment closed
    # by the run is kept against: `keep_segments`)
    close_embeddings: np.ndarray
    embeddings: np.ndarray  # float32 [streams, embed_dim]: stream embeddings after the step
    open_sums: np.ndarray  # float64 [streams, d_model]: each stream's last run's sum (its open segment)
    ready: torch.cuda.Event | None = None  # on a GPU: recorded after the copy to the host was queued

    @classmethod
    def of(cls, state: RetNetState, open_sums: np.ndarray, embeddings: np.ndarray, runs: int,
           ready: torch.cuda.Event | None = None) -> StepOutput:
        """From `ModelRunner._pool`'s outputs: embeddings [runs + runs + streams, e], the runs', then the
        streams' after each run, then the streams'."""
        return cls(state, embeddings[:runs], embeddings[runs : 2 * runs], embeddings[2 * runs :], open_sums, ready)

    def wait(self) -> None:
        """Block until the arrays hold their values."""
        if self.ready is not None:
            self.ready.synchronize()


class ModelRunner:
    def __init__(self, model: RetNet, chunk_size: int = 64, cuda_graphs: bool = True,
                 capture: tuple[int, int] | None = None, device_wait: str = EngineConfig.device_wait,
                 graph_token_step: int = EngineConfig.graph_token_step):
        """cuda_graphs: on a GPU, replay each step's forward from a CUDA graph of its shape bucket
        (model/graphs.py): a step is then a few launches instead of hundreds, so the step thread needs
        the GIL a few times a step rather than once per kernel, while callers' threads want it too.
        capture: (most streams, most tokens) of a step: capture every bucket such steps use now, so that no
        step waits for a capture (tens of ms each, which a latency percentile shows) later.
        device_wait: "sleep" or "spin", how `StepOutput.wait` waits for the device (EngineConfig.device_wait).
        graph_token_step: the graphs' token buckets, powers of two up to it, then its multiples
        (EngineConfig.graph_token_step)."""
        self.model = model
        self.chunk_size = chunk_size
        self.device = model.device
        # 64 graphs hold every bucket an engine's steps use in practice (rows 2..512 x tokens 64..32768 are
        # 134, but a workload keeps to a few): a capture costs a few forwards, so evicting one to capture
        # another would stall steps over and over
        self.graphed = GraphedForward(model, max_graphs=64, chunk_size=chunk_size, token_step=graph_token_step) \
            if cuda_graphs and model.device.type == "cuda" else None
        if self.graphed is not None and capture is not None:
            try:
                self.graphed.capture(all_buckets(*capture, graph_token_step))
            except Exception:  # noqa: BLE001  (steps capture what they need, as without capture=)
                log.warning("capturing the CUDA graphs of every step shape at start failed; steps capture the "
                            "graphs they need when they first run", exc_info=True)
                self.graphed.clear()  # what the failed capture holds goes back to the device
                torch.cuda.empty_cache()
        # segment embeddings through a float64 copy of the embedding head, on the model's device: the
        # pooled sums are float64, and a step embeds all the segments it closed in one call
        head = model.embed_head
        self._head = None if head is None else head.weight.detach().to(torch.float64)
        # and on the host, for sums that are there (a flush's segments): no trip to a device that runs a step
        self._head_host = None if head is None else self._head.cpu()
        self.staging = Staging(blocking=device_wait == "sleep")

    @torch.inference_mode()
    def run(self, tokens: np.ndarray, lens: np.ndarray, state: RetNetState, runs: StepRuns) -> StepOutput:
        """Advance N streams by their tokens from `state` [N].

        tokens: int64 [T], the N streams' tokens packed one after the other; lens: int64 [N], tokens per
        stream (they become cu_seqlens). runs: the packed tokens cut at the streams' segment boundaries
        (`segments.step_runs`); each run's final hidden states are summed (float64), the segments open
        before the step added to their streams' first runs, and every run is embedded, all on the device.
        """
        n_tokens = int(runs.token_cu[-1]) if len(runs.token_cu) else 0
        if int(lens.sum()) != len(tokens) or n_tokens != len(tokens) or len(runs.first) != len(lens):
            raise ValueError(f"{len(tokens)} packed tokens of {len(lens)} streams, but the streams' lens add up to "
                             f"{int(lens.sum())} and the runs' to {n_tokens} over {len(runs.first)} streams: pass "
                             "the lens and runs of the packed tokens")
        cu = np.concatenate([[0], np.cumsum(lens)])
        if self.device.type != "cuda":
            return self._run_on_host(tokens, cu, state, runs)
        slot = self.staging.take()  # every input goes to the device in one copy, every output back in one
        # with graphs, ids and cu_seqlens padded here on the host as the graph's buffers hold them
        ids, cu32 = (np.ascontiguousarray(tokens, dtype=np.int64), cu.astype(np.int32)) if self.graphed is None \
            else padded_inputs(tokens, cu, self.graphed.token_step)
        ids, cu_dev, token_cu, first, last, counts, open_sums = slot.upload(
            [ids, cu32, runs.token_cu, runs.first, runs.last, runs.counts, runs.open_sums], self.device)
        if self.graphed is not None:
            # hidden is read below, before the next step; the state is scattered by the loop before it launches
            # the step after next (core.py), so it may live in the graphs' alternating buffers
            hidden, new_state = self.graphed(ids, cu_dev, state, clone_hidden=False, fresh_state=False,
                                             tokens=len(tokens))
        else:  # the eager forward reads cu_seqlens on the host
            hidden, new_state = self.model(ids, mode="chunkwise", state=state, cu_seqlens=torch.from_numpy(cu),
                                           chunk_size=self.chunk_size)
        outputs = self._pool(hidden, new_state, token_cu, first, last, counts, open_sums)
        open_sums, embeddings = slot.download(outputs)  # queued: the engine books the previous step meanwhile
        return StepOutput.of(new_state, open_sums, embeddings, len(runs.counts), slot.release())

    def _run_on_host(self, tokens: np.ndarray, cu: np.ndarray, state: RetNetState, runs: StepRuns) -> StepOutput:
        hidden, new_state = self.model(torch.from_numpy(np.ascontiguousarray(tokens, dtype=np.int64)),
                                       mode="chunkwise", state=state, cu_seqlens=torch.from_numpy(cu),
                                       chunk_size=self.chunk_size)
        inputs = (torch.from_numpy(a) for a in (runs.token_cu, runs.first, runs.last, runs.counts, runs.open_sums))
        open_sums, embeddings = (t.numpy() for t in self._pool(hidden, new_state, *inputs))
        return StepOutput.of(new_state, open_sums, embeddings, len(runs.counts))

    def _pool(self, hidden: torch.Tensor, new_state: RetNetState, token_cu: torch.Tensor, first: torch.Tensor,
              last: torch.Tensor, counts: torch.Tensor, open_sums: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The step's runs pooled (`pool_runs`: each run's mean, the segment open before the step added to its
        stream's first run; its stream's mean after the run; the streams' after the step) and embedded, in one
        call through the float64 head (as `RetNet.stream_embedding` embeds): (open sums after the step [N, d],
        embeddings [R + R + N, e]). Two outputs to copy back, and few torch calls: each may wait for the GIL."""
        means, open_after = pool_runs(hidden, token_cu, first, last, counts, open_sums, new_state.pool_sum,
                                      new_state.pool_count)
        return open_after, mean_embedding(means, self._head)

    @torch.inference_mode()
    def embed(self, pool_sum: torch.Tensor, pool_count: torch.Tensor) -> np.ndarray:
        """`RetNet.embed` of pooled sums [n, d] (float64) through the float64 head, as a step embeds its segments,
        where the sums are (the host, or the model's device): float32 [n, e] on the host."""
        head = self._head_host if pool_sum.device.type == "cpu" else self._head
        return pooled_embedding(pool_sum, pool_count.to(pool_sum.device), head).cpu().numpy()

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

