"""The RetNet: config, layers and the three equivalent forms of retention, in one file.

Layer layout follows fla's RetNet (q, k, v, g, o projections; RoPE on q and k; per-head RMSNorm
with a swish gate; SwiGLU MLP; pre-norm), so fla-hub checkpoints map onto it key for key.

Retention convention (DESIGN.md), per head h with decay g_h, state S [K, V] in float32:

    S_t = g S_{t-1} + k_t^T v_t          o_t = scale * q_t S_t

"parallel" computes it as a decay-masked attention matrix per sequence, "chunkwise" calls
`streamret_kernels.chunk_retention`, "recurrent" calls `recurrent_retention_step` token by token.
All three agree to float32 rounding and take and return the same per-stream `RetNetState`.

The elementwise work (RMSNorm, rotary, the gated norm, SwiGLU) goes through `streamret_kernels` ops:
Triton on a GPU, their PyTorch references on the CPU and wherever autograd needs a backward. The
inference path on a GPU (`fused`) also runs q, k, v, g as one projection and gate, up as another,
with the residual adds inside the output matmuls; each pre-norm's weight is folded into the packed
projection after it, so the norm shrinks to one 1/rms per token that rotary, the gated norm and
SwiGLU apply to the projection's outputs as they read them (`fold_norms`).
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from streamret_kernels import (
    apply_rotary,
    chunk_retention,
    gated_rms_norm,
    inv_rms,
    recurrent_retention_step,
    retention_log_decays,
    rms_norm,
    segment_sum,
    swiglu,
)
from torch import nn

MODES = ("parallel", "chunkwise", "recurrent")


@dataclass(frozen=True)
class RetNetConfig:
    vocab_size: int = 260
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 2
    head_k_dim: int = 16  # q/k dim per head
    head_v_dim: int = 32  # v dim per head
    ffn_dim: int = 128  # SwiGLU inner dim
    decays: tuple[float, ...] | None = None  # per-head g; None = 1 - 2^(-5-h)
    norm_eps: float = 1e-6
    rope_base: float = 10000.0
    rope_freqs: str = "fla"  # "fla": base^(-2i/K); "torchscale": base^(-linspace(0, 1, K/2))
    tie_embeddings: bool = False
    lm_head: bool = False
    embed_dim: int | None = None  # embedding-head projection; None = the pooled hidden state itself

    def __post_init__(self) -> None:
        for name in ("vocab_size", "d_model", "n_layers", "n_heads", "head_k_dim", "head_v_dim", "ffn_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"RetNetConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.head_k_dim % 2:
            raise ValueError(f"head_k_dim must be even for rotary embeddings, got {self.head_k_dim}")
        if self.decays is not None:
            object.__setattr__(self, "decays", tuple(float(g) for g in self.decays))
            if len(self.decays) != self.n_heads:
                raise ValueError(f"decays has {len(self.decays)} entries for n_heads={self.n_heads}")
        if self.rope_freqs not in ("fla", "torchscale"):
            raise ValueError(f"rope_freqs={self.rope_freqs!r}; use 'fla' or 'torchscale'")
        if self.tie_embeddings and not self.lm_head:
            raise ValueError("tie_embeddings=True needs lm_head=True")

    @property
    def out_embed_dim(self) -> int:
        return self.embed_dim or self.d_model

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["decays"] = list(self.decays) if self.decays is not None else None
        return d

    @classmethod
    def from_dict(cls, d: dict) -> RetNetConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown RetNetConfig keys {sorted(unknown)}; known keys: {sorted(known)}")
        return cls(**d)

    def state_bytes_per_stream(self) -> int:
        """Bytes of recurrent state per stream: float32 [H, K, V] per layer plus pooling sums."""
        per_layer = self.n_heads * self.head_k_dim * self.head_v_dim * 4
        return self.n_layers * per_layer + self.d_model * 8 + 16


PRESETS: dict[str, RetNetConfig] = {
    # for tests: fast on a CPU, H != 1 and K != V on purpose
    "tiny": RetNetConfig(),
    # 6 layers at d 384: the benchmarks' mid-size model
    "small": RetNetConfig(
        vocab_size=32000, d_model=384, n_layers=6, n_heads=4, head_k_dim=96, head_v_dim=192,
        ffn_dim=1024, embed_dim=384,
    ),
    # the bundled default model's layout (streamret/assets/default/config.json) with random weights, for runs
    # that cannot take the 38 MB of weights along; with the byte tokenizer, not its WordPiece vocabulary
    "default": RetNetConfig(
        vocab_size=30522, d_model=384, n_layers=4, n_heads=4, head_k_dim=64, head_v_dim=128, ffn_dim=896,
        embed_dim=384,
    ),
    # fla-hub/retnet-1.3B-100B layout (hidden 2048, 24 layers, 8 heads, expand_k 1, expand_v 2)
    "fla-1.3b": RetNetConfig(
        vocab_size=32000, d_model=2048, n_layers=24, n_heads=8, head_k_dim=256, head_v_dim=512,
        ffn_dim=2816, lm_head=True,
    ),
}


@dataclass
class RetNetState:
    """Per-stream recurrent state for N streams, all float32/int64/float64 on one device.

    layers[l]: [N, H, K, V] float32 retention state of layer l
    positions: [N] int64 absolute position of each stream's next token
    pool_sum:  [N, d_model] float64 sum of final hidden states (for the pooled embedding)
    pool_count:[N] int64 number of tokens pooled
    """

    layers: list[torch.Tensor]
    positions: torch.Tensor
    pool_sum: torch.Tensor
    pool_count: torch.Tensor

    @property
    def n(self) -> int:
        return self.positions.shape[0]

    def tensors(self) -> dict[str, torch.Tensor]:
        out = {f"layer.{i}": s for i, s in enumerate(self.layers)}
        out.update(positions=self.positions, pool_sum=self.pool_sum, pool_count=self.pool_count)
        return out

    @classmethod
    def from_tensors(cls, t: dict[str, torch.Tensor]) -> RetNetState:
        n_layers = sum(1 for k in t if k.startswith("layer."))
        return cls([t[f"layer.{i}"] for i in range(n_layers)], t["positions"], t["pool_sum"], t["pool_count"])

    def map(self, fn) -> RetNetState:
        return RetNetState([fn(s) for s in self.layers], fn(self.positions), fn(self.pool_sum), fn(self.pool_count))

    def select(self, idx: torch.Tensor | list[int] | slice) -> RetNetState:
        """A copy holding streams idx (in that order)."""
        if isinstance(idx, list):
            idx = torch.tensor(idx, dtype=torch.long, device=self.positions.device)
        return self.map(lambda x: x[idx].clone())

    def copy_into(self, idx: torch.Tensor | list[int], src: RetNetState) -> None:
        """Write src's streams into rows idx of this state."""
        if isinstance(idx, list):
            idx = torch.tensor(idx, dtype=torch.long, device=self.positions.device)
        for a, b in zip(self.tensors().values(), src.tensors().values(), strict=True):
            a[idx] = b.to(a.device)

    def to(self, device: torch.device | str) -> RetNetState:
        return self.map(lambda x: x.to(device))

    def clone(self) -> RetNetState:
        return self.map(torch.clone)

    @staticmethod
    def cat(states: list[RetNetState]) -> RetNetState:
        fields = [list(s.tensors().values()) for s in states]
        keys = list(states[0].tensors().keys())
        return RetNetState.from_tensors({k: torch.cat([f[i] for f in fields]) for i, k in enumerate(keys)})

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.tensors().values())


# ----------------------------------------------------------------------------------------------
# building blocks


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return rms_norm(x, self.weight, self.eps)


def rotary_inv_freq(head_dim: int, base: float, style: str, device=None) -> torch.Tensor:
    """Rotation frequencies [head_dim/2], float32 as the source implementations compute them."""
    if style == "torchscale":
        exponent = torch.linspace(0, 1, head_dim // 2, dtype=torch.float32, device=device)
    else:
        exponent = torch.arange(0, head_dim, 2, dtype=torch.float32, device=device) / head_dim
    return 1.0 / (base**exponent)


def rotary_cos_sin(
    positions: torch.Tensor, head_dim: int, base: float, style: str = "fla"
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin [T, head_dim/2] for absolute positions [T] (angles in float64, then float32).

    The frequencies are widened to float64 before multiplying, so that position 10^9 keeps its
    angle to ~1e-7 rad instead of float32's ~100 rad.
    """
    inv_freq = rotary_inv_freq(head_dim, base, style, positions.device)
    angles = positions.to(torch.float64)[:, None] * inv_freq.to(torch.float64)[None, :]
    return torch.cos(angles).float(), torch.sin(angles).float()


def parallel_retention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, log_decay: torch.Tensor,
    bounds: list[int], state: torch.Tensor, scale: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Retention as one decay-masked attention matrix per sequence (the training form).

    Sequences of equal length run as one batch; ragged batches run one length group at a time.
    """
    acc = torch.float64 if q.dtype == torch.float64 else torch.float32
    lg = log_decay.to(device=q.device, dtype=acc)
    o = q.new_empty(q.shape[0], q.shape[1], v.shape[2], dtype=acc)
    new_state = torch.empty_like(state, dtype=acc)
    lengths = [b - a for a, b in zip(bounds[:-1], bounds[1:])]
    for L in sorted(set(lengths)):
        seqs = [n for n, length in enumerate(lengths) if length == L]
        rows = torch.cat([torch.arange(bounds[n], bounds[n] + L) for n in seqs]).to(q.device)
        qs, ks, vs = (x[rows].to(acc).view(len(seqs), L, *x.shape[1:]).transpose(1, 2) for x in (q, k, v))
        i = torch.arange(L, device=q.device, dtype=acc)
        diff = i[:, None] - i[None, :]
        D = torch.exp(lg[:, None, None] * diff.clamp(min=0)) * (diff >= 0)  # [H, L, L]: g^(i-j), j <= i
        S0 = state[seqs].to(acc)  # [n, H, K, V]
        out = ((qs @ ks.transpose(-1, -2)) * D) @ vs + (qs * torch.exp(lg[:, None] * (i + 1))[..., None]) @ S0
        o[rows] = (scale * out).to(acc).transpose(1, 2).reshape(-1, *o.shape[1:])  # autocast may give bf16
        k_decay = torch.exp(lg[:, None] * (L - 1 - i))[..., None]  # g^(L-1-j)
        new_state[seqs] = (torch.exp(lg * L)[:, None, None] * S0 + (ks * k_decay).transpose(-1, -2) @ vs).to(acc)
    return o.to(q.dtype), new_state.float() if acc != torch.float64 else new_state


class MultiScaleRetention(nn.Module):
    def __init__(self, cfg: RetNetConfig):
        super().__init__()
        self.cfg = cfg
        H, K, V = cfg.n_heads, cfg.head_k_dim, cfg.head_v_dim
        self.q_proj = nn.Linear(cfg.d_model, H * K, bias=False)
        self.k_proj = nn.Linear(cfg.d_model, H * K, bias=False)
        self.v_proj = nn.Linear(cfg.d_model, H * V, bias=False)
        self.g_proj = nn.Linear(cfg.d_model, H * V, bias=False)
        self.o_proj = nn.Linear(H * V, cfg.d_model, bias=False)
        self.g_norm = RMSNorm(V, cfg.norm_eps)  # per head, then swish gate
        self.register_buffer("log_decay", retention_log_decays(H, cfg.decays), persistent=False)

    def forward(
        self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, bounds: _Bounds,
        cu_seqlens: torch.Tensor, state: torch.Tensor | None, mode: str, chunk_size: int, residual: torch.Tensor | None,
        norm: RMSNorm | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Retention of x [T, d]; with `residual` (the fused path), returns residual + the output.

        norm (fused path only): x is not normalised yet; norm's weight is folded into the packed
        projection and each token's 1/rms (r) applied after it: r to q (in rotary) and to the gate
        (in the gated norm), r^2 to k, which stands for k's r and v's (retention is linear in each
        key-value pair's k v^T), so v comes out of the matmul untouched."""
        T = x.shape[0]
        H, K, V = self.cfg.n_heads, self.cfg.head_k_dim, self.cfg.head_v_dim
        r = None
        if residual is not None:  # one matmul for q, k, v, g
            if norm is not None:
                r = inv_rms(x, norm.eps)
            qkvg = F.linear(x, packed_weight(self.q_proj, self.k_proj, self.v_proj, self.g_proj,
                                             scale=None if norm is None else norm.weight))
            if compact_qk(K):  # rotary writes q and k out as contiguous [T, H, K] tensors
                q = apply_rotary(qkvg[:, : H * K].view(T, H, K), cos, sin, row_scale=r)
                k = apply_rotary(qkvg[:, H * K : 2 * H * K].view(T, H, K), cos, sin, row_scale=r, squared_tail=H)
            else:  # rotary in place on the q and k columns, which the chunk kernel reads there
                qk = apply_rotary(qkvg[:, : 2 * H * K].view(T, 2 * H, K), cos, sin, inplace=True, row_scale=r,
                                  squared_tail=H)
                q, k = qk[:, :H], qk[:, H:]
            v = qkvg[:, 2 * H * K : 2 * H * K + H * V].view(T, H, V)
            g = qkvg[:, 2 * H * K + H * V :].view(T, H, V)
        else:
            q = apply_rotary(self.q_proj(x).view(T, H, K), cos, sin)
            k = apply_rotary(self.k_proj(x).view(T, H, K), cos, sin)
            v = self.v_proj(x).view(T, H, V)
            g = self.g_proj(x).view(T, H, V)
        scale = K**-0.5
        if state is None and mode != "chunkwise":  # fresh streams (the chunk kernels take None as zeros)
            state = q.new_zeros(cu_seqlens.numel() - 1, H, K, V, dtype=torch.float32)
        if mode == "parallel":
            o, state = parallel_retention(q, k, v, self.log_decay, bounds(), state, scale)
        elif mode == "chunkwise":
            o, state = chunk_retention(
                q, k, v, self.log_decay, cu_seqlens=cu_seqlens, initial_state=state, scale=scale,
                chunk_size=chunk_size,
            )
        else:
            o, state = recurrent_retention(q, k, v, self.log_decay, bounds(), state, scale)
        o = gated_rms_norm(o, g, self.g_norm.weight, self.g_norm.eps, g_scale=r).reshape(T, H * V)
        if residual is not None:
            return add_matmul(residual, o, self.o_proj.weight), state
        return self.o_proj(o), state


QK_LAYOUTS = ("auto", "inplace", "compact")
NORM_FOLDS = ("on", "off")


def fold_norms() -> bool:
    """Whether the fused layer folds each pre-norm's weight into the packed projection after it and
    applies only the per-token 1/rms to the projection's outputs (in rotary, the gated norm and
    SwiGLU, which read them anyway): the norm's write and read of the normalised activations go.
    STREAMRET_NORM_FOLD: `on` (default) or `off` (an RMSNorm kernel before each projection)."""
    fold = os.environ.get("STREAMRET_NORM_FOLD", "on") or "on"
    if fold not in NORM_FOLDS:
        raise ValueError(f"STREAMRET_NORM_FOLD={fold!r}; use one of {NORM_FOLDS}")
    return fold == "on"


def compact_qk(head_k_dim: int) -> bool:
    """Whether the fused layer's rotary writes q and k to contiguous tensors instead of in place on
    the fused projection's columns. STREAMRET_QK_LAYOUT: `inplace`, `compact`, or `auto` (default:
    in place; at K256 the compact copy cost what the chunk kernel's strided reads did, the 1.3B
    forward 165.1 ms compact against 165.4 in place, H200, bench/issue13.py, 2026-12-01)."""
    layout = os.environ.get("STREAMRET_QK_LAYOUT", "auto") or "auto"
    if layout not in QK_LAYOUTS:
        raise ValueError(f"STREAMRET_QK_LAYOUT={layout!r}; use one of {QK_LAYOUTS}")
    return layout == "compact"


def recurrent_retention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, log_decay: torch.Tensor,
    bounds: list[int], state: torch.Tensor, scale: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Token by token: at step t, every sequence longer than t advances by one token."""
    starts = torch.tensor(bounds[:-1], device=q.device)
    lens = torch.tensor(bounds[1:], device=q.device) - starts
    state = state.clone()
    o = q.new_empty(q.shape[0], q.shape[1], v.shape[2])
    for t in range(int(lens.max()) if len(lens) else 0):
        live = (lens > t).nonzero().flatten()
        rows = starts[live] + t
        o_t, s_t = recurrent_retention_step(q[rows], k[rows], v[rows], state[live], log_decay, scale=scale)
        o[rows] = o_t
        state[live] = s_t
    return o, state


class MLP(nn.Module):
    def __init__(self, cfg: RetNetConfig):
        super().__init__()
        self.gate_proj = nn.Linear(cfg.d_model, cfg.ffn_dim, bias=False)
        self.up_proj = nn.Linear(cfg.d_model, cfg.ffn_dim, bias=False)
        self.down_proj = nn.Linear(cfg.ffn_dim, cfg.d_model, bias=False)

    def forward(
        self, x: torch.Tensor, residual: torch.Tensor | None = None, norm: RMSNorm | None = None
    ) -> torch.Tensor:
        """SwiGLU MLP of x [T, d]; with `residual` (the fused path), returns residual + the output.
        norm (fused path only): x is not normalised yet; norm's weight is folded into the packed
        gate and up projection and each token's 1/rms applied inside SwiGLU."""
        if residual is None:
            return self.down_proj(swiglu(self.gate_proj(x), self.up_proj(x)))
        F_ = self.gate_proj.out_features
        r = None if norm is None else inv_rms(x, norm.eps)
        gate_up = F.linear(x, packed_weight(self.gate_proj, self.up_proj, scale=None if norm is None else norm.weight))
        return add_matmul(residual, swiglu(gate_up[:, :F_], gate_up[:, F_:], row_scale=r), self.down_proj.weight)


class Block(nn.Module):
    def __init__(self, cfg: RetNetConfig):
        super().__init__()
        self.attn_norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.attn = MultiScaleRetention(cfg)
        self.mlp_norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.mlp = MLP(cfg)

    def forward(self, x, cos, sin, bounds, cu_seqlens, state, mode, chunk_size, fused: bool):
        if fused and fold_norms():  # norms folded into the projections, residual adds inside the output matmuls
            x, state = self.attn(x, cos, sin, bounds, cu_seqlens, state, mode, chunk_size, x, self.attn_norm)
            return self.mlp(x, x, self.mlp_norm), state
        if fused:  # residual adds inside the output matmuls
            x, state = self.attn(self.attn_norm(x), cos, sin, bounds, cu_seqlens, state, mode, chunk_size, x)
            return self.mlp(self.mlp_norm(x), x), state
        h, state = self.attn(self.attn_norm(x), cos, sin, bounds, cu_seqlens, state, mode, chunk_size, None)
        x = x + h
        return x + self.mlp(self.mlp_norm(x)), state


# ----------------------------------------------------------------------------------------------
# the model


class RetNet(nn.Module):
    def __init__(self, config: RetNetConfig):
        super().__init__()
        self.config = config
        self.embeddings = nn.Embedding(config.vocab_size, config.d_model)
        self.layers = nn.ModuleList(Block(config) for _ in range(config.n_layers))
        self.norm = RMSNorm(config.d_model, config.norm_eps)
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False) if config.lm_head else None
        if self.lm_head is not None and config.tie_embeddings:
            self.lm_head.weight = self.embeddings.weight
        self.embed_head = nn.Linear(config.d_model, config.embed_dim, bias=False) if config.embed_dim else None

    @property
    def device(self) -> torch.device:
        return self.embeddings.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.embeddings.weight.dtype

    def _apply(self, fn, recurse=True):
        # .to(bfloat16) would round the decays to 8 bits: keep them float32 on the weights' device
        super()._apply(fn, recurse)
        return self.reset_buffers()

    def reset_buffers(self) -> RetNet:
        """Recompute the non-persistent buffers (decays) on the weights' device, e.g. after a meta-device build."""
        for block in self.layers:
            attn = block.attn
            attn.log_decay = retention_log_decays(self.config.n_heads, self.config.decays).to(self.device)
        return self

    def init_weights(self, seed: int = 0, std: float = 0.02, norm_spread: float = 0.0) -> RetNet:
        """Deterministic random weights (same seed, same config -> same weights on any machine).
        Norm weights are 1, or uniform in 1 +- norm_spread (tests of code that folds them elsewhere)."""
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for name, p in self.named_parameters():
                if name.endswith("norm.weight"):  # (no draw at norm_spread 0: the other weights stay as they were)
                    p.copy_(1.0 + norm_spread * (2 * torch.rand(p.shape, generator=gen) - 1) if norm_spread else 1.0)
                else:
                    p.copy_(torch.randn(p.shape, generator=gen) * std)
        return self

    def init_state(self, n: int, device: torch.device | str | None = None, layers: bool = True) -> RetNetState:
        """Fresh state for n streams: zeros (layers=False leaves the retention states out: an empty list)."""
        c = self.config
        device = device or self.device
        shape = (n, c.n_heads, c.head_k_dim, c.head_v_dim)
        return RetNetState(
            layers=[torch.zeros(shape, device=device) for _ in range(c.n_layers)] if layers else [],
            positions=torch.zeros(n, dtype=torch.long, device=device),
            pool_sum=torch.zeros(n, c.d_model, dtype=torch.float64, device=device),
            pool_count=torch.zeros(n, dtype=torch.long, device=device),
        )

    def forward(
        self,
        input_ids: torch.Tensor,
        *,
        mode: str = "chunkwise",
        state: RetNetState | None = None,
        positions: torch.Tensor | None = None,
        cu_seqlens: torch.Tensor | None = None,
        chunk_size: int = 64,
        fused: bool | None = None,
    ) -> tuple[torch.Tensor, RetNetState]:
        """Run N sequences and return (final hidden states, new state).

        input_ids: [T] packed with cu_seqlens [N+1] (fla's varlen layout), or [B, T] (N = B equal
        lengths, no cu_seqlens). state: the streams' state (None = fresh). positions: [N] absolute
        position of each sequence's first token (default: the state's positions, 0 when fresh).
        fused: the inference layout (packed projections, residual adds in the matmuls); None = on
        a GPU when no gradient is needed. Returns hidden [T, d] (or [B, T, d]) after the final
        norm, and the advanced state; the input state is not modified.
        """
        if mode not in MODES:
            raise ValueError(f"mode={mode!r}; use one of {MODES}")
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        batched = input_ids.dim() == 2
        if batched:
            if cu_seqlens is not None:
                raise ValueError("pass either [B, T] input_ids or packed [T] input_ids with cu_seqlens, not both")
            B, L = input_ids.shape
            ids = input_ids.reshape(-1)
            bounds = _Bounds(torch.arange(0, (B + 1) * L, L), list(range(0, (B + 1) * L, L)))
        elif input_ids.dim() == 1:
            ids = input_ids
            bounds = _Bounds(torch.tensor([0, ids.shape[0]]) if cu_seqlens is None else cu_seqlens)
        else:
            raise ValueError(f"input_ids must be [T] or [B, T], got shape {tuple(input_ids.shape)}")
        n, T = bounds.n, ids.shape[0]
        bounds.check(T)
        self._check_ids(ids)
        fresh = state is None  # fresh streams: the retention kernels start from zero without reading a zeroed state
        if fresh:
            state = self.init_state(n, layers=False)
        elif state.n != n:
            raise ValueError(f"state holds {state.n} streams but the batch has {n} sequences")
        if fused is None:
            fused = ids.is_cuda and not (torch.is_grad_enabled() and self.embeddings.weight.requires_grad)
        cu_seqlens = _to_device(bounds.cu.to(torch.int32), ids.device)

        lens = cu_seqlens[1:].long() - cu_seqlens[:-1].long()
        start = state.positions.to(ids.device) if positions is None else positions.to(ids.device, torch.long)
        # output_size known on the host: on a GPU this does not wait for the device to finish its queue
        seq_of_token = torch.repeat_interleave(torch.arange(n, device=ids.device), lens, output_size=T)
        offset = torch.arange(T, device=ids.device) - cu_seqlens[:-1].long()[seq_of_token]
        cos, sin = rotary_cos_sin(
            start[seq_of_token] + offset, self.config.head_k_dim, self.config.rope_base, self.config.rope_freqs
        )

        x = self.embeddings(ids)
        new_layers = []
        for block, s in zip(self.layers, [None] * len(self.layers) if fresh else state.layers, strict=True):
            x, s = block(x, cos, sin, bounds, cu_seqlens, s, mode, chunk_size, fused)
            new_layers.append(s)
        x = self.norm(x)

        pool_sum = state.pool_sum + segment_sum(x.detach(), cu_seqlens)
        new_state = RetNetState(new_layers, start + lens, pool_sum, state.pool_count + lens)
        return (x.view(B, L, -1) if batched else x), new_state

    def _check_ids(self, ids: torch.Tensor) -> None:
        """Token ids must index the embedding table. On a GPU the check runs on the device: reading
        min/max back would make every forward wait for all the work queued before it."""
        if not ids.numel():
            return
        V = self.config.vocab_size
        if ids.device.type == "cuda":
            torch._assert_async(((ids >= 0) & (ids < V)).all(), f"token ids must lie in [0, {V})")
        elif int(ids.min()) < 0 or int(ids.max()) >= V:
            raise ValueError(f"token ids must lie in [0, {V}), got {int(ids.min())}..{int(ids.max())}")

    def embed(self, pool_sum: torch.Tensor, pool_count: torch.Tensor) -> torch.Tensor:
        """L2-normalised embeddings [N, embed_dim] from pooled sums (any span of hidden states)."""
        return pooled_embedding(pool_sum, pool_count, None if self.embed_head is None else self.embed_head.weight)

    @torch.no_grad()
    def stream_embedding(self, state: RetNetState) -> torch.Tensor:
        """Each stream's embedding from its state: the mean of all its hidden states so far."""
        return self.embed(state.pool_sum, state.pool_count)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        if self.lm_head is None:
            raise ValueError("this checkpoint has no LM head; generative summaries need one")
        return self.lm_head(hidden)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


class _Bounds:
    """A batch's sequence boundaries: cu_seqlens as given, and as a host list read only when asked
    for (the parallel and recurrent forms need it; reading a device tensor back waits for the GPU)."""

    def __init__(self, cu: torch.Tensor, host: list[int] | None = None):
        if cu.dim() != 1 or cu.numel() < 2:
            raise ValueError(f"cu_seqlens must be 1-D with N+1 >= 2 entries, got shape {tuple(cu.shape)}")
        self.cu, self._host = cu, host
        if host is None and not cu.is_cuda:
            self._host = [int(b) for b in cu.tolist()]

    @property
    def n(self) -> int:
        return self.cu.numel() - 1

    def __call__(self) -> list[int]:
        if self._host is None:
            self._host = [int(b) for b in self.cu.tolist()]
        return self._host

    def check(self, T: int) -> None:
        """cu_seqlens rises from 0 to T: checked on the host when it lives there, else on the device."""
        if self._host is None:
            cu = self.cu.long()
            ok = (cu[0] == 0) & (cu[-1] == T) & (cu[1:] >= cu[:-1]).all()
            torch._assert_async(ok, f"cu_seqlens must rise from 0 to T={T}")
            return
        b = self._host
        if b[0] != 0 or b[-1] != T or any(y < x for x, y in zip(b[:-1], b[1:])):
            raise ValueError(f"cu_seqlens must rise from 0 to T={T}, got {b}")


def add_matmul(residual: torch.Tensor, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """residual + x @ weight^T in one matmul. Without autograd the sum goes into residual itself:
    torch.addmm would first copy residual into a new tensor (a device copy of the whole residual
    stream per call), while addmm_ hands it to the matmul as its accumulator. Autocast does not cast
    the operands of an in-place op (distill.py evaluates under bf16 autocast without autograd), so
    there, as with autograd, the copy stays."""
    if torch.is_grad_enabled() or torch.is_autocast_enabled(residual.device.type):
        return torch.addmm(residual, x, weight.t())
    return residual.addmm_(x, weight.t())


def packed_weight(*linears: nn.Linear, scale: torch.Tensor | None = None) -> torch.Tensor:
    """The weights of `linears` stacked by rows, for one matmul in place of several; with `scale`
    [in_features] (a norm's weight folded in), each input column multiplied by it (in float32, or
    float64 for float64 weights, rounded once). Built once and kept on the first module, one slot
    with and one without a scale (a graph captured with either keeps reading its own); built again
    when any weight or the scale is replaced, moved or written to (its data pointer or version
    changes)."""
    tensors = [lin.weight for lin in linears] + ([] if scale is None else [scale])
    # tensors made under inference_mode have no version counter: for them only the pointer counts
    key = tuple((t.data_ptr(), 0 if t.is_inference() else t._version) for t in tensors)
    slots = linears[0].__dict__.setdefault("_packed_weights", {})
    cached = slots.get(scale is None)
    if cached is None or cached[0] != key:
        with torch.no_grad():
            w = torch.cat([lin.weight.detach() for lin in linears])
            if scale is not None:
                acc = torch.float64 if w.dtype == torch.float64 else torch.float32
                w = (w.to(acc) * scale.detach().to(acc)[None, :]).to(w.dtype)
            cached = slots[scale is None] = (key, w)
    return cached[1]


def _to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A small host tensor on `device`. A plain host-to-GPU copy waits for the GPU's queue to drain;
    from pinned memory it is queued behind the work already there, and the host goes on."""
    if device.type != "cuda" or t.device.type == "cuda":
        return t.to(device)
    return t.pin_memory().to(device, non_blocking=True)


def pooled_embedding(
    pool_sum: torch.Tensor, pool_count: torch.Tensor, head_weight: torch.Tensor | None
) -> torch.Tensor:
    """Mean of the pooled hidden states, through the embedding head if any, L2-normalised: float32 [N, e]."""
    return mean_embedding(pool_sum / pool_count.clamp(min=1).unsqueeze(1), head_weight)  # (counts promote)


def mean_embedding(mean: torch.Tensor, head_weight: torch.Tensor | None) -> torch.Tensor:
    """Pooled means [N, d] through the embedding head if any, L2-normalised: float32 [N, e]. (F.normalize's math
    in fewer torch calls: an engine step makes this call, and each call from its thread may wait for the GIL.)"""
    if head_weight is not None:
        mean = mean @ (head_weight if head_weight.dtype == mean.dtype else head_weight.to(mean.dtype)).T
    return (mean / mean.norm(dim=-1, keepdim=True).clamp_min(1e-12)).float()


def get_preset(name: str) -> RetNetConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[name]


def build_random(preset_or_config: str | RetNetConfig, seed: int = 0, norm_spread: float = 0.0) -> RetNet:
    """A RetNet with deterministic random weights (for tests and benchmarks; norm_spread: see init_weights)."""
    cfg = get_preset(preset_or_config) if isinstance(preset_or_config, str) else preset_or_config
    return RetNet(cfg).init_weights(seed, std=1.0 / math.sqrt(cfg.d_model), norm_spread=norm_spread)
