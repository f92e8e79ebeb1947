"""Triton forward of chunkwise retention (the math is in reference.py beside this file).

One program owns one (work item, head, V-block). It walks the item's chunks in order and keeps its
[K, BV] slice of the state in float32 registers, so per-chunk states never reach device memory
(fla writes each chunk's state out and reads it back). A work item is a whole sequence. When the
sequences are too few to fill the GPU (a handful of long ones), each sequence is cut into segments
and the work takes three launches:

  1. every segment's own contribution to the state, from a zero state (parallel over segments);
  2. a short scan over each sequence's segments: each segment's incoming state, and the final state;
  3. every segment's outputs from its incoming state (parallel over segments).

Segment j of sequence n is tokens [cu[n] + j * SEG, ...) for j < J = ceil(T / SEG): programs find
their tokens from cu_seqlens alone (no host-side table, no extra launches); programs past the end of
a shorter sequence do nothing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

import torch
import triton
import triton.language as tl

from ..utils import check_inputs, next_pow2, num_sms


@triton.jit
def _dot_f32_left(a, b, acc, SPLIT: tl.constexpr):
    """acc + a @ b for a float32 `a` and a 16-bit `b`: `a` is rounded to b's dtype for the tensor
    cores; SPLIT adds the rounding residue's product, so `a` keeps about 16 bits instead of 8."""
    hi = a.to(b.dtype)
    acc = tl.dot(hi, b, acc=acc, input_precision="ieee")  # float32 `b` (float32 inputs): no tf32
    if SPLIT:
        acc = tl.dot((a - hi.to(tl.float32)).to(b.dtype), b, acc=acc)
    return acc


@triton.jit
def _chunk_fwd_kernel(
    q, k, v, o, log_decay, h0, ht, cu_seqlens, scale, seg_len, n_seg, stride_qk, stride_v,
    H: tl.constexpr, K: tl.constexpr, V: tl.constexpr,
    BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, NV: tl.constexpr,
    SEGMENTED: tl.constexpr, HAS_H0: tl.constexpr, STORE_HT: tl.constexpr, STORE_O: tl.constexpr,
    F32_STATE_DOT: tl.constexpr, SPLIT: tl.constexpr,
):
    """One (work item, head, V-block). A work item is sequence `item`, or with SEGMENTED segment
    j = item % n_seg of sequence item // n_seg (seg_len tokens; empty past the sequence's end).
    h0 / ht are indexed by sequence, or with SEGMENTED by the segment's slot (`segment_slot`)."""
    pid = tl.program_id(0)
    iv = pid % NV
    h = (pid // NV) % H
    item = pid // (NV * H)
    if SEGMENTED:
        seq = item // n_seg
        seq_bos = tl.load(cu_seqlens + seq).to(tl.int64)
        seq_eos = tl.load(cu_seqlens + seq + 1).to(tl.int64)
        bos = seq_bos + (item % n_seg).to(tl.int64) * seg_len
        L = tl.maximum(tl.minimum(seq_eos - bos, seg_len), 0).to(tl.int32)
        item = work_item_slot(seq, seq_bos, seg_len, item % n_seg, L)
    else:
        bos = tl.load(cu_seqlens + item).to(tl.int64)
        L = (tl.load(cu_seqlens + item + 1) - bos).to(tl.int32)
    lg = tl.load(log_decay + h).to(tl.float32)

    # 64-bit scalar bases (T * H * V and N * H * K * V may pass 2^31), 32-bit tile offsets: offset
    # tiles live in registers for the whole loop, so they are kept small. Columns are masked only
    # when K or V is not a whole number of tiles.
    it = tl.arange(0, BT)
    ik = tl.arange(0, BK)
    jv = iv * BV + tl.arange(0, BV)
    mk = ik < K
    mv = jv < V
    state_tile = ik[:, None] * V + jv[None, :]
    state_base = (item * H + h).to(tl.int64) * (K * V)
    if HAS_H0:
        if K == BK and V % BV == 0:
            S = tl.load(h0 + state_base + state_tile)
        else:
            S = tl.load(h0 + state_base + state_tile, mask=mk[:, None] & mv[None, :], other=0.0)
    else:
        S = tl.zeros([BK, BV], dtype=tl.float32)

    # Decay powers in log space, the same for every chunk, with `scale` folded in:
    # scale * g^(i-j) for j <= i, and scale * g^(i+1).
    fi = it.to(tl.float32)
    diff = fi[:, None] - fi[None, :]
    D = tl.where(diff >= 0, scale * tl.exp(lg * tl.maximum(diff, 0.0)), 0.0)
    q_decay = scale * tl.exp(lg * (fi + 1.0))

    # q and k share a row stride; q, k and v may be column ranges of one fused projection output
    # (row strides wider than H * K and H * V); o is contiguous
    qk_tile = it[:, None] * stride_qk + ik[None, :]
    v_tile = it[:, None] * stride_v + jv[None, :]
    o_tile = it[:, None] * (H * V) + jv[None, :]
    q_seq, k_seq = q + bos * stride_qk + h * K, k + bos * stride_qk + h * K
    v_seq, o_seq = v + bos * stride_v + h * V, o + (bos * H + h) * V
    for i0 in range(0, L, BT):
        mt = (i0 + it) < L
        m_qk = mt[:, None] if K == BK else mt[:, None] & mk[None, :]
        m_vo = mt[:, None] if V % BV == 0 else mt[:, None] & mv[None, :]
        kc = tl.load(k_seq + qk_tile, mask=m_qk, other=0.0)
        vc = tl.load(v_seq + v_tile, mask=m_vo, other=0.0)
        if STORE_O:
            qc = tl.load(q_seq + qk_tile, mask=m_qk, other=0.0)
            A = tl.dot(qc, tl.trans(kc), input_precision="ieee") * D
            if F32_STATE_DOT:  # float32 inputs, and float16 ones (a large state would overflow float16)
                oc = tl.dot(qc.to(tl.float32), S, input_precision="ieee")
            else:
                oc = tl.dot(qc, S.to(qc.dtype))
            oc = _dot_f32_left(A, vc, oc * q_decay[:, None], SPLIT)
            tl.store(o_seq + o_tile, oc.to(o.dtype.element_ty), mask=m_vo)
        n = tl.minimum(L - i0, BT).to(tl.float32)
        # S <- g^n S + k^T (g^(n-1-j) v_j): the decay goes on v (BT x BV), so k feeds the tensor cores as loaded
        v_decay = tl.where(mt, tl.exp(lg * tl.maximum(n - 1.0 - fi, 0.0)), 0.0)  # rows past the end: 0
        vd = (vc * v_decay[:, None]).to(vc.dtype)
        S = tl.dot(tl.trans(kc), vd, acc=S * tl.exp(lg * n), input_precision="ieee")
        # advance the (64-bit) pointers: a row offset i0 * stride could pass 2^31 on a long sequence
        q_seq += BT * stride_qk
        k_seq += BT * stride_qk
        v_seq += BT * stride_v
        o_seq += BT * (H * V)
    if STORE_HT:
        if SEGMENTED:  # an empty segment stores nothing (no one reads its slot)
            mv = mv & (jv * 0 + L > 0)
        tl.store(ht + state_base + state_tile, S, mask=mk[:, None] & mv[None, :])


@triton.jit
def segment_slot(seq, seq_bos, every):
    """The slot of sequence seq's first piece when every sequence is cut into pieces of `every` tokens (its j-th
    piece's is this + j): seq + seq_bos // every. A step's pieces then number at most N + T / every
    (`segment_slots`), not N times the pieces the longest may have; the segments' scratch states, the two-pass
    span states and its output row blocks are laid out so. Distinct: the next sequence's first slot,
    seq + 1 + (seq_bos + len) // every, is past this one's last, seq + seq_bos // every + cdiv(len, every) - 1."""
    return seq + seq_bos // every


@triton.jit
def work_item_slot(seq, seq_bos, seg_len, j, L):
    """The slot of segment j (L tokens) of sequence seq in the segmented kernels' work: `segment_slot` + j, or the
    sequence's first slot for a segment past its end (L = 0: it loads its initial state and stores nothing, and
    its own slot may lie past the tensor's end; the first is always in range)."""
    return segment_slot(seq, seq_bos, seg_len) + tl.where(L > 0, j, 0)


def segment_slots(N: int, T: int, every: int) -> int:
    """Slots of N sequences of T tokens in all cut into pieces of `every` tokens (see `segment_slot`)."""
    return N + T // every


@triton.jit
def _segment_scan_kernel(
    local, seg_init, h0, ht, cu_seqlens, log_decay, seg_len,
    H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
    NK: tl.constexpr, NV: tl.constexpr, HAS_H0: tl.constexpr,
):
    """Carries one [BK, BV] tile of sequence n's state across its segments: records each segment's
    incoming state, then S <- g^len S + (the segment's own contribution); stores the final state."""
    pid = tl.program_id(0)
    iv = pid % NV
    ik = (pid // NV) % NK
    h = (pid // (NV * NK)) % H
    n = pid // (NV * NK * H)
    lg = tl.load(log_decay + h).to(tl.float32)
    rk = ik * BK + tl.arange(0, BK)
    rv = iv * BV + tl.arange(0, BV)
    m = (rk < K)[:, None] & (rv < V)[None, :]
    tile = h * (K * V) + rk[:, None] * V + rv[None, :]
    seq_off = n.to(tl.int64) * (H * K * V)
    if HAS_H0:
        S = tl.load(h0 + seq_off + tile, mask=m, other=0.0)
    else:
        S = tl.zeros([BK, BV], dtype=tl.float32)
    seq_bos = tl.load(cu_seqlens + n).to(tl.int64)
    length = (tl.load(cu_seqlens + n + 1) - seq_bos).to(tl.int32)
    seg_off = segment_slot(n.to(tl.int64), seq_bos, seg_len) * (H * K * V)
    init_ptrs = seg_init + seg_off + tile
    local_ptrs = local + seg_off + tile
    for start in range(0, length, seg_len):
        tl.store(init_ptrs, S, mask=m)
        decay = tl.exp(lg * tl.minimum(length - start, seg_len).to(tl.float32))
        S = S * decay + tl.load(local_ptrs, mask=m, other=0.0)
        init_ptrs += H * K * V
        local_ptrs += H * K * V
    tl.store(ht + seq_off + tile, S, mask=m)


@dataclass(frozen=True)
class ChunkConfig:
    """Tile sizes: BT tokens per chunk, BV state columns per program; Triton's warps and pipeline depth.

    split_bf16: with bf16 inputs, the decayed scores (float32) go to the tensor cores as a bf16
    value plus a bf16 residue (two products), the largest of the bf16 roundings that fla's numerics
    add to the output's own 1.7e-3 (relative error at K128 V256: 2.1e-3 instead of 2.5e-3 on the CPU).
    Off by default: off, the error is fla's own on the same data at every shape of the kernel bench
    (2.4e-3 to 2.8e-3; H100, session 42), on costs 4% to 10% there (2% to 17% on the H200, 2026-11-29)
    and lowers the error most on short sequences (K64 N256 x L128: 2.2e-3 against 2.5e-3), a little at 512
    tokens (2.5e-3 against 2.6e-3), not at all on long ones (bench/RESULTS.md, session 42).
    """

    BT: int = 64
    BV: int = 64
    num_warps: int = 4
    num_stages: int = 2
    split_bf16: bool = False


@dataclass(frozen=True)
class TwoPassConfig:
    """The two-pass forward (triton_two_pass.py): state stored every `state_every` tokens (a
    multiple of BT: the output pass covers a span in key sub-blocks of BT); the output pass's BT
    rows a block, V-block (its loop step), warps and pipeline depth; the state pass's steps of
    state_BT tokens, [state_BK, state_BV] tile, warps and depth (the wide tiling), and the same for
    the narrow one (narrow_*); the step of the tiling that runs must divide state_every.
    split_bf16: as in ChunkConfig (off, at N64 x L512: on the H100 1.3% faster inside one sweep and within 1%
    across two machines, error 2.7e-3 against fla's 2.8e-3, session 42; on the H200 2.7% faster with 2 output
    stages, 2026-12-01).

    Defaults for K256 V512: the output pass at BT 128 / 8 warps / BV 64 fits 227 registers with no
    spills (sm90 compile; BT 64 spills, the 64-row tiles replicated across both warp groups); the
    state pass's tilings below (before 2026-12-02: 64 tokens, 64 x 64, 4 warps for every batch). On
    the H200 (bench/issue13.py, 2026-12-01) a 3-stage output pipeline was the fastest of the tilings
    tried: 0.950 ms at N64 x L512
    (2 stages 1.028, BT 64 1.440, states every 256 1.160, state tile 32 x 64 1.450; fla 1.365).

    segment_fix: how sequences cut into segments (a few long ones) get each segment's incoming
    state: "product", the output pass adds q times it as a second product (one state pass,
    _span_outputs_kernel), "off", a second state pass from it. Adding it to each span's stored state
    instead (one product) rounds a whole state twice: bench/segment_fix_rounding.py, H8 K256 V512,
    T16384, 4096-token segments, puts o 1.95e-3 from float64 that way against 1.58e-3 for "product"
    and "off" (states rounded only); on the H200 that variant measured 3.06e-3 against float64, past
    the 3e-3 bound of the kernel tests, and slower (1.156 against 1.126 ms at B1 x T32768), and was
    removed (2026-12-02).
    With a fix the output pass runs at segment_fix_BV and segment_fix_stages: its third [K, BV]
    tile a stage needs shared memory (sm90, K256: "product" at BV 64 needs 272 KB at 3 stages, 208 KB
    at 2 on triton 3.9 and 240 KB at 2 on triton 3.6, past the 227 KB limit; at BV 32, 3 stages 168
    KB). On the H200 (bench/issue13.py, 2026-12-02, B1 x T32768): "product" at BV 32 / 3 stages
    1.107 ms, two state passes ("off") 1.216, fla 1.287. pick_config reads STREAMRET_SEGMENT_FIX (segment_fix_mode).

    Two state tilings (plan_state_pass): [state_BK, state_BV] on state_warps where its programs
    give every multiprocessor two or more, else the narrow_* tiling, uncut while its programs give
    every multiprocessor one, and only below that the sequences cut into segments. H200 sweep
    (bench/issue13.py --sections tiles, 2026-12-02, K256 V512): N64 x L512 128 x 128 / 8 warps 0.810 ms
    against 64 x 64 / 4 warps 0.867 (the state pass 0.403 against 0.456 ms: k and v read half as
    often); B1 x T32768 uncut at 64 x 64 / 4 warps / 3 stages (256 programs) 0.897 ms against 1.095
    cut into 4096-token segments (the fix product made the output pass 0.589 ms against 0.399); a
    second run: the narrow tiling at 128-token steps 0.868 ms against 0.923 at 64 (its state pass
    0.431 against 0.522 ms: half the sequential steps for 256 programs), the wide one no faster at 128.
    With an initial state (a stream's next chunk; 2026-12-02, session 10) the 128 x 128 tile's state
    pass took 0.661 ms against 0.380 fresh (N64 x L512; loading a 128 x 128 float32 h0 tile into the
    accumulator costs far more than its bytes), 128 x 64 / 8 warps / 128-token steps 0.474-0.490 and
    fresh the same as 128 x 128 (0.800 / 0.799 ms in all): the wide tiling is now 128 x 64.

    span_stages: with state_every > BT, the output pass's V loop for row blocks past their span's
    first (their scores span 2 or more key sub-blocks of BT keys: a [BT, BV] v tile each a stage)
    is pipelined span_stages deep; 0: the pass's own depth (num_stages, or segment_fix_stages on
    sequences cut into segments, which span_stages overrides likewise). sm90 compile (triton 3.9, K256 V512, BT 128, 8
    warps, state_every 256): at BV 64 / 3 stages those blocks need 272 KB of shared memory, 208 KB
    at span_stages 2 (224 KB in all, as at state_every 128); BV 32 / 3 stages 168 KB. On the H200
    (2026-12-02, session 12, N64 x L512 with h0) every 256-token span tiling was slower than the
    default: 1.030-1.058 ms against 0.924 (state pass 0.44 against 0.48, output pass 0.56-0.60
    against 0.40), so state_every stays BT.

    output_form: "scores" (the above: a row block's scores against its whole span worked out once and held
    through a loop over V-blocks, the span's state read once per V-block) or "keys" (_attn_outputs_kernel: one
    program per row block and V-block of BV columns, walking the span's keys key_block at a time as attention
    does, the scores recomputed per V-block, so a span may be long: state_every 512 stores no span state inside
    a 512-token sequence). BT, BV, num_warps and num_stages are the keys form's own when it runs."""

    BT: int = 128
    BV: int = 64
    num_warps: int = 8
    num_stages: int = 3
    state_every: int = 128
    state_BT: int = 128
    state_BK: int = 128
    state_BV: int = 64
    state_warps: int = 8
    state_stages: int = 2
    narrow_state_BK: int = 64
    narrow_state_BV: int = 64
    narrow_state_warps: int = 4
    narrow_state_BT: int = 128
    narrow_state_stages: int = 3
    split_bf16: bool = False
    segment_fix: str = "product"
    segment_fix_BV: int = 32
    segment_fix_stages: int = 3
    span_stages: int = 0
    output_form: str = "scores"
    key_block: int = 64


SEGMENT_FIXES = ("product", "off")
OUTPUT_FORMS = ("scores", "keys")


def segment_fix_mode() -> str:
    """STREAMRET_SEGMENT_FIX: `product` (default) or `off` (TwoPassConfig.segment_fix)."""
    mode = os.environ.get("STREAMRET_SEGMENT_FIX", "product") or "product"
    if mode not in SEGMENT_FIXES:
        raise ValueError(f"STREAMRET_SEGMENT_FIX={mode!r}; use one of {SEGMENT_FIXES}")
    return mode


def output_form_mode() -> str:
    """STREAMRET_TWO_PASS_FORM: `scores` (default) or `keys` (TwoPassConfig.output_form, bf16: KEYS_TILING)."""
    form = os.environ.get("STREAMRET_TWO_PASS_FORM", "scores") or "scores"
    if form not in OUTPUT_FORMS:
        raise ValueError(f"STREAMRET_TWO_PASS_FORM={form!r}; use one of {OUTPUT_FORMS}")
    return form


# the keys form's tiling for bf16 K256 V512 (sm90 compile, triton 3.9: 254 registers, 192 KiB of shared memory,
# none spilled; with a segment fix 784 bytes spilled): 128-row blocks, two 256-column V-blocks, 64 keys a step,
# spans of 512 (no span state stored inside a 512-token sequence). On an H100 (session 51, bench/kernels.py --sweep
# --sweep-forms keys) no keys tiling beat the scores form: N64 x L512 1.070 ms at best (spans of 256, 32 keys a
# step; this tiling 1.217) against 1.042, N256 x L128 1.673 against 1.624; so scores stays the default
KEYS_TILING = dict(output_form="keys", BT=128, key_block=64, BV=256, num_warps=8, num_stages=2, state_every=512)


CHUNK_ALGOS = ("auto", "one_pass", "two_pass")


def chunk_algo() -> str:
    """STREAMRET_CHUNK_ALGO: `one_pass`, `two_pass`, or `auto` (default: two-pass for bf16 at
    K >= 256 with multi-chunk sequences, where the one-pass state slice no longer fits registers;
    float16 and float32 keep the one-pass kernel there: their two-pass products run in float32 and
    spill)."""
    algo = os.environ.get("STREAMRET_CHUNK_ALGO", "auto") or "auto"
    if algo not in CHUNK_ALGOS:
        raise ValueError(f"STREAMRET_CHUNK_ALGO={algo!r}; use one of {CHUNK_ALGOS}")
    return algo


def pick_config(K: int, V: int, dtype: torch.dtype, avg_len: float) -> ChunkConfig | TwoPassConfig:
    """Heuristic table from the H200 sweeps (bench/RESULTS.md). 4 warps; the [K, BV] state slice
    lives in registers: 8192 float32 (64 a thread) was fastest for multi-chunk sequences at K = 64
    (BV 128) and K = 128 (BV 64), wider slices spill and 8 warps run one program per multiprocessor.
    One-chunk sequences (BT 16) are state traffic: 16384 float32 per program was faster (K = 128:
    2.37 ms against 3.44 at N4096 x L16). STREAMRET_CHUNK_ALGO picks the two-pass forward
    (chunk_algo), and STREAMRET_TWO_PASS_FORM its output pass's form for bf16 (output_form_mode)."""
    bk = max(16, next_pow2(K))
    bt = 16 if avg_len <= 16 else 32 if avg_len <= 32 else 64
    algo = chunk_algo()
    if algo == "two_pass" or (algo == "auto" and bk >= 256 and bt == 64 and dtype == torch.bfloat16):
        fix = segment_fix_mode()
        if dtype == torch.float32:  # twice the bytes per tile
            return TwoPassConfig(BT=32, BV=32, num_warps=4, state_every=64, state_BT=32, state_BK=32, state_BV=32,
                                 state_warps=4, narrow_state_BK=32, narrow_state_BV=32, narrow_state_BT=32,
                                 segment_fix=fix)
        if bt < 64:  # short sequences (forced two_pass): spans no longer than a sequence
            return TwoPassConfig(BT=bt, num_warps=4, state_every=bt, state_BT=bt, narrow_state_BT=bt, segment_fix=fix)
        if output_form_mode() == "keys" and dtype == torch.bfloat16:
            return TwoPassConfig(segment_fix=fix, **KEYS_TILING)
        return TwoPassConfig(segment_fix=fix)
    cfg = ChunkConfig(BT=bt, BV=max(16, min((16384 if bt == 16 else 8192) // bk, next_pow2(V))))
    if bk >= 256 and bt == 64:  # a deeper pipeline hides the longer q / k loads (H200, 2026-12-01 sweep:
        cfg = replace(cfg, num_stages=3)  # N64 x L512 1.42 ms against 1.62, B1 x T131072 5.90 against 7.05)
    if dtype == torch.float32:  # twice the bytes per tile: smaller tiles fit shared memory
        cfg = replace(cfg, BT=min(cfg.BT, 32), BV=min(cfg.BV, 32), num_stages=1)
    return cfg


def plan_segment_len(N: int, T: int, H: int, NV: int, BT: int, sms: int) -> int:
    """0 (one program walks a whole sequence) when N * H * NV programs fill the GPU's `sms`
    multiprocessors twice; otherwise segments of 4096 tokens (fastest or within 3% of it at
    B1 x T131072 and B4 x T16384, K = 64 and 128, against 1024 and 8192), shorter (a power of
    two) when that leaves fewer than 1.5 programs a multiprocessor."""
    if N * H * NV >= 2 * sms or T < 4 * N * BT:
        return 0
    fill = max(1, T * H * NV * 2 // (3 * sms))  # the longest segment giving 1.5 programs a multiprocessor
    return max(4 * BT, min(4096, 1 << (fill.bit_length() - 1)))


def chunk_retention_triton(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    log_decay: torch.Tensor,
    *,
    cu_seqlens: torch.Tensor | None = None,
    initial_state: torch.Tensor | None = None,
    scale: float | None = None,
    segment_len: int | None = None,
    config: ChunkConfig | TwoPassConfig | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Same contract as chunk_retention_reference; initial_state is only read.

    segment_len: None plans it (plan_segment_len), 0 never cuts sequences, a positive length forces
    that cut (tests and benchmarks; any length gives the same result; the two-pass forward rounds it
    up to whole spans).
    config: tile sizes (None: pick_config); a TwoPassConfig runs the two-pass forward.
    """
    check_inputs(q, k=k, v=v)
    T, H, K = q.shape
    V = v.shape[-1]
    if K > 256:
        raise ValueError(f"head K={K} > 256 does not fit one program's state tile; split heads or use backend='torch'")
    q, k, v = _rows_of_heads(q, k, v)
    dev = q.device
    cu = torch.tensor([0, T], device=dev) if cu_seqlens is None else cu_seqlens.to(dev).contiguous()
    N = cu.numel() - 1
    scale = K**-0.5 if scale is None else float(scale)
    lg = log_decay.to(device=dev, dtype=torch.float32).contiguous()
    h0 = None if initial_state is None else initial_state.to(device=dev, dtype=torch.float32).contiguous()
    cfg = config or pick_config(K, V, q.dtype, T / max(N, 1))
    if isinstance(cfg, TwoPassConfig):
        from .triton_two_pass import chunk_retention_two_pass

        return chunk_retention_two_pass(q, k, v, lg, cu, h0, scale, cfg, segment_len)
    BK, BV = max(16, next_pow2(K)), min(cfg.BV, max(16, next_pow2(V)))
    NV = triton.cdiv(V, BV)
    if segment_len is None:
        segment_len = plan_segment_len(N, T, H, NV, cfg.BT, num_sms(dev))
    if segment_len < 0:
        raise ValueError(f"segment_len={segment_len}; pass None (planned), 0 (no cuts) or a positive length")

    o = torch.empty(T, H, V, device=dev, dtype=q.dtype)
    final = torch.empty(N, H, K, V, device=dev, dtype=torch.float32)
    if T == 0:  # nothing to read: every state passes through
        return o, final.zero_() if h0 is None else final.copy_(h0)
    consts = dict(
        H=H, K=K, V=V, BT=cfg.BT, BK=BK, BV=BV, NV=NV,
        F32_STATE_DOT=q.dtype != torch.bfloat16, SPLIT=cfg.split_bf16 and q.dtype == torch.bfloat16,
        num_warps=cfg.num_warps, num_stages=cfg.num_stages,
    )
    strides = dict(stride_qk=q.stride(0), stride_v=v.stride(0))
    if not segment_len:
        _chunk_fwd_kernel[(N * H * NV,)](
            q, k, v, o, lg, final if h0 is None else h0, final, cu, scale, 0, 1, **strides,
            SEGMENTED=False, HAS_H0=h0 is not None, STORE_HT=True, STORE_O=True, **consts,
        )
        return o, final

    n_seg = triton.cdiv(T, segment_len)  # segments a sequence may have: programs past its end do nothing
    local = torch.empty(segment_slots(N, T, segment_len), H, K, V, device=dev, dtype=torch.float32)
    seg_init = torch.empty_like(local)
    grid = (N * n_seg * H * NV,)
    _chunk_fwd_kernel[grid](
        q, k, v, o, lg, local, local, cu, scale, segment_len, n_seg, **strides,
        SEGMENTED=True, HAS_H0=False, STORE_HT=True, STORE_O=False, **consts,
    )
    SK, SV = min(BK, 32), min(BV, 64)
    NSK, NSV = triton.cdiv(K, SK), triton.cdiv(V, SV)
    _segment_scan_kernel[(N * H * NSK * NSV,)](
        local, seg_init, final if h0 is None else h0, final, cu, lg, segment_len,
        H=H, K=K, V=V, BK=SK, BV=SV, NK=NSK, NV=NSV, HAS_H0=h0 is not None, num_warps=4,
    )
    _chunk_fwd_kernel[grid](
        q, k, v, o, lg, seg_init, seg_init, cu, scale, segment_len, n_seg, **strides,
        SEGMENTED=True, HAS_H0=True, STORE_HT=False, STORE_O=True, **consts,
    )
    return o, final


def _rows_of_heads(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """q, k, v as the kernel reads them: [T, H, D] with heads packed in a row (strides (s, D, 1)),
    q and k with one row stride. Views of a fused projection output pass as they are; anything
    else is copied to contiguous."""

    def packed(x: torch.Tensor) -> bool:
        return x.stride(2) == 1 and x.stride(1) == x.shape[2]

    if not (packed(q) and packed(k) and q.stride(0) == k.stride(0)):
        q, k = q.contiguous(), k.contiguous()
    return q, k, v if packed(v) else v.contiguous()
