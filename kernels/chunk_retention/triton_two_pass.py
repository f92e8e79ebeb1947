"""Two-pass Triton forward of chunkwise retention, for wide heads (K256 / V512: the fla-hub 1.3B layout).

The one-pass kernel (triton_fwd.py) keeps a [K, BV] state slice in registers while it walks a
sequence; at K = 256 that slice caps BV at 32, one program fills a multiprocessor's shared memory,
and each of the V / BV programs of a head recomputes q k^T. Here the work is split in two launches:

  1. states: one program per (sequence, head, K-block, V-block) walks the sequence (chunks of
     state_BT tokens, which may differ from the output pass's row blocks) with a small
     [BK, BV] float32 state (the recurrence never mixes K rows or V columns, so K splits freely)
     and stores the state entering every STATE_EVERY tokens (in bf16 for bf16 inputs: the one-pass
     kernel rounds the state to bf16 for its q S product too), and the final state in float32; a
     zero state (a fresh sequence's first span, a segment's) is neither stored nor read: at N64 x
     L512 that is a quarter of the span states' round trip;
  2. outputs: one program per (block of BT rows, head), all independent: the block's decayed scores
     against its span's keys up to itself (causal inside a span, as in attention), worked out once
     as one [BT, BT] product per key sub-block of BT keys up to the block (STATE_EVERY // BT at
     most; those past it are skipped); then for each V-block, q times the span's stored state,
     scaled by its decay, plus each sub-block's scores times its v rows. Neither q k^T nor the q
     and k loads repeat per V-block (the one-pass kernel and fla's output kernel do both).
     Sub-blocks bound the k tile at [BT, K] and the scores at [BT, BT] tiles whatever the span;
     the V loop's v tiles still cover the span up to the block, a [BT, BV] tile per sub-block a
     stage (what fills shared memory at K256 / BV 64 / 3 stages: TwoPassConfig.span_stages).

The output pass has a second form, "keys" (TwoPassConfig.output_form, _attn_outputs_kernel): one program
per (row block, head, V-block) walks the span's keys up to the block as attention does, recomputing the
scores for each V-block, so that spans can be long (state_every 512: no span state inside a 512-token
sequence) at the price of more key products.

When the state pass's programs are too few to fill the GPU (a handful of long sequences), the
sequences are cut into segments as in triton_fwd.py: the state pass runs once per segment, from
zero, storing span states local to the segment and the segment's own final state; a scan over
segments gives each segment's incoming state (float32) and the final states; the output pass adds
the incoming state's part, g^(tokens from the segment's start to the span's) times it, to each
span's state (TwoPassConfig.segment_fix; "off" runs the state pass a second time from the
incoming states instead, storing true span states).

Storing a state every STATE_EVERY tokens instead of every chunk (fla) trades state bytes for
intra-span work: at STATE_EVERY = 128 the state traffic halves against states every 64 tokens,
and with 128-row blocks each score product covers one span (causal: half of it masked). At
STATE_EVERY = 2 BT it halves again; a span's first row block then has one score product and one
v tile a V-block, its second two (each row block runs the V loop compiled for its count).

Sequences are packed without a host sync: sequence n's row block i is virtual row block
cu[n] // BT + n + i (strictly increasing in n, at most T // BT + N of them; a device-side
searchsorted maps each to its sequence); its span j has state slot cu[n] // STATE_EVERY + n + j
(T // STATE_EVERY + N slots).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..utils import next_pow2, num_sms
from .triton_fwd import (
    OUTPUT_FORMS,
    SEGMENT_FIXES,
    TwoPassConfig,
    plan_segment_len,
    segment_slot,
    segment_slots,
    work_item_slot,
)


@triton.jit
def _span_states_kernel(
    k, v, log_decay, h0, hs, ht, cu_seqlens, seg_len, n_seg, stride_qk, stride_v,
    H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
    NK: tl.constexpr, NV: tl.constexpr, STATE_EVERY: tl.constexpr, SEGMENTED: tl.constexpr,
    HAS_H0: tl.constexpr, STORE_SPANS: tl.constexpr,
):
    """One (work item, head, K-block, V-block): with STORE_SPANS stores the state entering each span
    into hs; stores the final state into ht (float32). A work item is sequence `item`, or with
    SEGMENTED segment item % n_seg of sequence item // n_seg (seg_len tokens, a multiple of
    STATE_EVERY; empty past the sequence's end). h0 / ht are indexed by sequence, or with SEGMENTED by the
    segment's slot (triton_fwd.segment_slot)."""
    pid = tl.program_id(0)
    iv = pid % NV
    ik = (pid // NV) % NK
    h = (pid // (NV * NK)) % H
    item = pid // (NV * NK * H)
    if SEGMENTED:
        n = item // n_seg
        first = (item % n_seg).to(tl.int64) * seg_len  # the segment's first token inside its sequence
        seq_bos = tl.load(cu_seqlens + n).to(tl.int64)
        L = tl.maximum(tl.minimum(tl.load(cu_seqlens + n + 1).to(tl.int64) - seq_bos - first, seg_len), 0)
        L = L.to(tl.int32)
        item = work_item_slot(n, seq_bos, seg_len, item % n_seg, L)
    else:
        n = item
        first = 0
        seq_bos = tl.load(cu_seqlens + n).to(tl.int64)
        L = (tl.load(cu_seqlens + n + 1) - seq_bos).to(tl.int32)
    bos = seq_bos + first
    lg = tl.load(log_decay + h).to(tl.float32)

    it = tl.arange(0, BT)
    rk = ik * BK + tl.arange(0, BK)
    rv = iv * BV + tl.arange(0, BV)
    m_state = (rk < K)[:, None] & (rv < V)[None, :]
    state_tile = rk[:, None] * V + rv[None, :]
    if HAS_H0:
        S = tl.load(h0 + (item * H + h).to(tl.int64) * (K * V) + state_tile, mask=m_state, other=0.0)
    else:
        S = tl.zeros([BK, BV], dtype=tl.float32)

    fi = it.to(tl.float32)
    k_tile = it[:, None] * stride_qk + rk[None, :]
    v_tile = it[:, None] * stride_v + rv[None, :]
    k_seq = k + bos * stride_qk + h * K
    v_seq = v + bos * stride_v + h * V
    # the first span's slot (64-bit: slots * H * K * V passes 2^31 at real sizes), advanced a slot a span
    hs_seq = hs + ((segment_slot(n, seq_bos, STATE_EVERY) + first // STATE_EVERY) * H + h) * (K * V) + state_tile
    for i0 in range(0, L, BT):
        if STORE_SPANS:  # a masked store rather than a branch: the loop stays one block for the pipeliner
            # (a work item's first span starts from zero without h0: not stored, the output pass reads none)
            tl.store(hs_seq, S.to(hs.dtype.element_ty), mask=m_state & (i0 % STATE_EVERY == 0) & ((i0 > 0) | HAS_H0))
            hs_seq += tl.where((i0 + BT) % STATE_EVERY == 0, H * K * V, 0)
        mt = (i0 + it) < L
        kc = tl.load(k_seq + k_tile, mask=mt[:, None] & (rk < K)[None, :], other=0.0)
        vc = tl.load(v_seq + v_tile, mask=mt[:, None] & (rv < V)[None, :], other=0.0)
        n_rows = tl.minimum(L - i0, BT).to(tl.float32)
        v_decay = tl.where(mt, tl.exp(lg * tl.maximum(n_rows - 1.0 - fi, 0.0)), 0.0)
        vd = (vc * v_decay[:, None]).to(vc.dtype)
        S = tl.dot(tl.trans(kc), vd, acc=S * tl.exp(lg * n_rows), input_precision="ieee")
        k_seq += BT * stride_qk
        v_seq += BT * stride_v
    if SEGMENTED:  # an empty segment stores nothing (no one reads its slot)
        m_state = m_state & (rk * 0 + L > 0)[:, None]
    tl.store(ht + (item * H + h).to(tl.int64) * (K * V) + state_tile, S, mask=m_state)


@triton.jit
def _q_state_product(qc, hc, F32_STATE_DOT: tl.constexpr):
    """qc @ hc: in float32 for float16 / float32 inputs (their states are float32), else in bf16."""
    if F32_STATE_DOT:  # (an else: Triton compiles a statement after a return inside a constexpr if)
        out = tl.dot(qc.to(tl.float32), hc, input_precision="ieee")
    else:
        out = tl.dot(qc, hc)
    return out


@triton.jit
def _row_block(cu_seqlens, seq_of_block, r, BT: tl.constexpr, STATE_EVERY: tl.constexpr):
    """Virtual row block r of an output pass: its sequence n, the sequence's first token and length, the block's
    first row inside the sequence (past its end for one block a sequence at most: the caller returns), its span
    and its first row inside the span."""
    n = tl.load(seq_of_block + r)
    bos = tl.load(cu_seqlens + n).to(tl.int64)
    L = (tl.load(cu_seqlens + n + 1) - bos).to(tl.int32)
    i0 = (r - bos // BT - n).to(tl.int32) * BT
    span = i0 // STATE_EVERY
    return n, bos, L, i0, span, i0 - span * STATE_EVERY


@triton.jit
def _incoming_state(
    hs, seg_init, lg, h, n, bos, i0, span, p0, seg_len, has_h0,
    H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, STATE_EVERY: tl.constexpr, SEGMENT_FIX: tl.constexpr,
):
    """Where the state entering row i0's span lies, for both output passes: head h's [K, V] block of the
    stored span state (hs_head) and how many of its rows to load, 0 where nothing was stored (a span
    that starts a work item of the state pass from zero: a sequence's first span without h0, or with a
    segment fix any segment's first span); with a fix, the segment's incoming state (si_head), its rows
    to load (0 for a first segment without h0, or where g^n underflows) and g^(tokens from the
    segment's start to the span's)."""
    slot = segment_slot(n, bos, STATE_EVERY) + span
    hs_head = hs + (slot * H + h) * (K * V)
    if SEGMENT_FIX == "off":
        zero_state = (span == 0) & (has_h0 == 0)
    else:
        zero_state = (i0 - p0) % seg_len == 0
    hs_rows = tl.where(zero_state, 0, K)
    si_head = seg_init
    fix_rows = 0
    seg_decay = 0.0
    if SEGMENT_FIX != "off":
        seg = i0 // seg_len
        seg_decay = tl.exp(lg * (i0 - p0 - seg * seg_len).to(tl.float32))
        fix_rows = tl.where(((seg > 0) | (has_h0 != 0)) & (seg_decay > 0.0), K, 0)
        si_head = seg_init + ((segment_slot(n, bos, seg_len) + seg) * H + h) * (K * V)
    return hs_head, hs_rows, si_head, fix_rows, seg_decay


@triton.jit
def _block_outputs(
    q, k, v, o, hs, seg_init, scale, lg, bos, n, L, i0, span, p0, stride_qk, stride_v, seg_len, has_h0,
    H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
    STATE_EVERY: tl.constexpr, NS: tl.constexpr, F32_STATE_DOT: tl.constexpr, SPLIT: tl.constexpr,
    SEGMENT_FIX: tl.constexpr, LOOP_STAGES: tl.constexpr,
):
    """The BT rows of o from row i0 (p0 inside its span) of head h, whose span's keys up to the
    block are NS sub-blocks of BT keys (p0 = (NS - 1) * BT): their scores, a [BT, BT] 16-bit tile
    pair each (with SPLIT, a value and its rounding residue: triton_fwd's _dot_f32_left), held in
    registers through the V loop (recomputing them per V-block would repeat q k^T and the k loads
    V / BV times; holding two pairs at BT 128 / 8 warps costs 64 more registers a thread, and the
    sm90 compile spills about 220 bytes a thread at state_every 256); then for each V-block, q
    times the span's stored state plus each sub-block's scores times its [BT, BV] v tile (a tile a
    stage each in the pipeline), pipelined LOOP_STAGES deep (None: the launch's num_stages)."""
    h = tl.program_id(0) % H
    it = tl.arange(0, BT)
    ik = tl.arange(0, BK)
    mk = ik < K
    mt = (i0 + it) < L
    fi = it.to(tl.float32)
    q_rows = q + (bos + i0) * stride_qk + h * K
    qc = tl.load(q_rows + it[:, None] * stride_qk + ik[None, :], mask=mt[:, None] & mk[None, :], other=0.0)

    # intra-span scores: g^(row - key) for keys up to the row (sub-blocks before the last: every key)
    span_first = bos + (i0 - p0)
    k_rows = k + span_first * stride_qk + h * K + it[:, None] * stride_qk + ik[None, :]
    A_his = ()
    A_los = ()
    m_keys = ()
    for j in tl.static_range(NS):
        kj = it + j * BT if j > 0 else it  # sub-block j's keys inside the span
        m_keys_j = (kj < p0 + BT) & ((i0 - p0) + kj < L)
        kc = tl.load(k_rows + j * BT * stride_qk if j > 0 else k_rows, mask=m_keys_j[:, None] & mk[None, :],
                     other=0.0)
        diff = (p0 + fi)[:, None] - kj.to(tl.float32)[None, :]
        D = tl.where(diff >= 0, scale * tl.exp(lg * tl.maximum(diff, 0.0)), 0.0)
        A = tl.dot(qc, tl.trans(kc), input_precision="ieee") * D
        A_hi = A.to(v.dtype.element_ty)
        if SPLIT:
            A_lo = (A - A_hi.to(tl.float32)).to(v.dtype.element_ty)
        else:
            A_lo = A_hi
        A_his = A_his + (A_hi,)
        A_los = A_los + (A_lo,)
        m_keys = m_keys + (m_keys_j,)
    q_decay = scale * tl.exp(lg * (p0 + fi + 1.0))

    hs_head, hs_rows_n, si_head, fix_rows, seg_decay = _incoming_state(
        hs, seg_init, lg, h, n, bos, i0, span, p0, seg_len, has_h0, H, K, V, STATE_EVERY, SEGMENT_FIX)
    hs_rows = hs_head + ik[:, None] * V
    m_hs = (ik < hs_rows_n)[:, None]
    if SEGMENT_FIX != "off":
        m_fix = (ik < fix_rows)[:, None]
        si_rows = si_head + ik[:, None] * V
    v_rows = v + span_first * stride_v + h * V + it[:, None] * stride_v
    o_rows = o + ((bos + i0) * H + h) * V + it[:, None] * (H * V)
    for v0 in tl.range(0, V, BV, num_stages=LOOP_STAGES):
        jv = v0 + tl.arange(0, BV)
        mv = jv < V
        hc = tl.load(hs_rows + jv[None, :], mask=m_hs & mv[None, :], other=0.0)
        oc = _q_state_product(qc, hc, F32_STATE_DOT)
        if SEGMENT_FIX == "product":  # shared memory for a third tile in the pipeline, not registers
            sc = tl.load(si_rows + jv[None, :], mask=m_fix & mv[None, :], other=0.0)
            oc += seg_decay * _q_state_product(qc, sc, F32_STATE_DOT)
        oc = oc * q_decay[:, None]
        for j in tl.static_range(NS):
            vc = tl.load((v_rows + j * BT * stride_v if j > 0 else v_rows) + jv[None, :],
                         mask=m_keys[j][:, None] & mv[None, :], other=0.0)
            oc = tl.dot(A_his[j], vc, acc=oc, input_precision="ieee")
            if SPLIT:
                oc = tl.dot(A_los[j], vc, acc=oc)
        tl.store(o_rows + jv[None, :], oc.to(o.dtype.element_ty), mask=mt[:, None] & mv[None, :])


@triton.jit
def _span_outputs_kernel(
    q, k, v, o, log_decay, hs, cu_seqlens, seq_of_block, scale, stride_qk, stride_v,
    H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
    STATE_EVERY: tl.constexpr, F32_STATE_DOT: tl.constexpr, SPLIT: tl.constexpr,
    seg_init, seg_len, has_h0, SEGMENT_FIX: tl.constexpr, SPAN_STAGES: tl.constexpr,
):
    """One (virtual row block, head): BT rows of o (_block_outputs). The block's decayed scores
    against its span's keys up to itself are worked out once, one [BT, BT] product over K per key
    sub-block of BT keys; then a loop over V-blocks adds q times the span's stored state and each
    sub-block's scores times its v rows. Row blocks past their span's first (more sub-blocks, more v
    tiles a stage) pipeline that loop SPAN_STAGES deep (0: num_stages).

    SEGMENT_FIX ("product"; "off": hs holds true states): hs holds states local to seg_len-token
    segments (from zero at each segment's start), and the state entering the span is
    hs + g^(tokens from the segment's start to the span's) * seg_init[segment] (indexed by the segment's
    slot, as the state pass stores it, in hs's dtype): q times seg_init is added as a second product.
    A sequence's first segment has no incoming state unless has_h0: its programs load nothing."""
    NJ: tl.constexpr = STATE_EVERY // BT  # key sub-blocks a span
    pid = tl.program_id(0)
    h = pid % H
    n, bos, L, i0, span, p0 = _row_block(cu_seqlens, seq_of_block, pid // H, BT, STATE_EVERY)
    if i0 >= L:  # a row block past its sequence's end (one per sequence at most): nothing to do
        return
    lg = tl.load(log_decay + h).to(tl.float32)
    if NJ == 1:
        _block_outputs(q, k, v, o, hs, seg_init, scale, lg, bos, n, L, i0, span, p0, stride_qk, stride_v, seg_len,
                       has_h0, H, K, V, BT, BK, BV, STATE_EVERY, 1, F32_STATE_DOT, SPLIT, SEGMENT_FIX, None)
    else:  # the block's (p0 // BT + 1) sub-blocks up to itself as a constant: one V loop for each count,
        # branch-free inside (a branch around a sub-block's loads or dots there would take them out of the
        # software pipeline), so sub-blocks past the block cost nothing, at the price of code size
        for ns in tl.static_range(1, NJ + 1):
            if p0 == (ns - 1) * BT:
                _block_outputs(q, k, v, o, hs, seg_init, scale, lg, bos, n, L, i0, span, p0, stride_qk, stride_v,
                               seg_len, has_h0, H, K, V, BT, BK, BV, STATE_EVERY, ns, F32_STATE_DOT, SPLIT,
                               SEGMENT_FIX, SPAN_STAGES if ns > 1 and SPAN_STAGES > 0 else None)


@triton.jit
def _attn_outputs_kernel(
    q, k, v, o, log_decay, hs, cu_seqlens, seq_of_block, scale, stride_qk, stride_v, seg_init, seg_len, has_h0,
    H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
    NV: tl.constexpr, BKEY: tl.constexpr, KS: tl.constexpr, STATE_EVERY: tl.constexpr,
    F32_STATE_DOT: tl.constexpr, SEGMENT_FIX: tl.constexpr,
):
    """The output pass in the "keys" form (TwoPassConfig.output_form): one (virtual row block, head,
    V-block) a program, with a [BT, BV] float32 accumulator. It starts as q times the span's stored
    state (over K in KS-wide slices: a whole [K, BV] state tile beside the key loop's tiles would fill
    shared memory), then walks the span's keys up to the block, BKEY at a time, as attention does:
    decayed scores q k^T, then scores times the keys' v rows. Scores are recomputed for each of the
    V / BV programs of a row block, and the state product is the only state traffic, so long spans
    (state_every 512: none stored inside a 512-token sequence) cost key work, not state bytes."""
    pid = tl.program_id(0)
    iv = pid % NV
    h = (pid // NV) % H
    n, bos, L, i0, span, p0 = _row_block(cu_seqlens, seq_of_block, pid // (NV * H), BT, STATE_EVERY)
    if i0 >= L:  # a row block past its sequence's end (one per sequence at most): nothing to do
        return
    lg = tl.load(log_decay + h).to(tl.float32)
    it = tl.arange(0, BT)
    fi = it.to(tl.float32)
    mt = (i0 + it) < L
    jv = iv * BV + tl.arange(0, BV)
    mv = jv < V
    q_rows = q + (bos + i0) * stride_qk + h * K + it[:, None] * stride_qk

    hs_head, hs_rows, si_head, fix_rows, seg_decay = _incoming_state(
        hs, seg_init, lg, h, n, bos, i0, span, p0, seg_len, has_h0, H, K, V, STATE_EVERY, SEGMENT_FIX)
    acc = tl.zeros([BT, BV], dtype=tl.float32)
    if hs_rows + fix_rows > 0:  # no state (a fresh sequence's first span): no product at all
        for k0 in tl.range(0, K, KS, num_stages=2):  # (2: the key loop below takes the shared memory)
            ks = k0 + tl.arange(0, KS)
            qs = tl.load(q_rows + ks[None, :], mask=mt[:, None] & (ks < K)[None, :], other=0.0)
            hc = tl.load(hs_head + ks[:, None] * V + jv[None, :], mask=(ks < hs_rows)[:, None] & mv[None, :],
                         other=0.0)
            acc += _q_state_product(qs, hc, F32_STATE_DOT)
            if SEGMENT_FIX == "product":
                sc = tl.load(si_head + ks[:, None] * V + jv[None, :], mask=(ks < fix_rows)[:, None] & mv[None, :],
                             other=0.0)
                acc += seg_decay * _q_state_product(qs, sc, F32_STATE_DOT)
        acc = acc * (scale * tl.exp(lg * (p0 + fi + 1.0)))[:, None]  # scale g^(row + 1) from the span's start

    ik = tl.arange(0, BK)
    qc = tl.load(q_rows + ik[None, :], mask=mt[:, None] & (ik < K)[None, :], other=0.0)
    span_first = bos + (i0 - p0)
    kb = tl.arange(0, BKEY)
    for j0 in range(0, p0 + BT, BKEY):  # the span's keys up to the block's last row
        kj = j0 + kb
        m_keys = (i0 - p0) + kj < L
        kc = tl.load(k + (span_first + kj)[:, None] * stride_qk + h * K + ik[None, :],
                     mask=m_keys[:, None] & (ik < K)[None, :], other=0.0)
        vc = tl.load(v + (span_first + kj)[:, None] * stride_v + h * V + jv[None, :],
                     mask=m_keys[:, None] & mv[None, :], other=0.0)
        diff = (p0 + fi)[:, None] - kj.to(tl.float32)[None, :]
        D = tl.where(diff >= 0, scale * tl.exp(lg * tl.maximum(diff, 0.0)), 0.0)
        A = tl.dot(qc, tl.trans(kc), input_precision="ieee") * D
        acc = tl.dot(A.to(v.dtype.element_ty), vc, acc=acc, input_precision="ieee")
    o_rows = o + ((bos + i0) * H + h) * V + it[:, None] * (H * V)
    tl.store(o_rows + jv[None, :], acc.to(o.dtype.element_ty), mask=mt[:, None] & mv[None, :])

def plan_state_pass(
    cfg: TwoPassConfig, N: int, T: int, H: int, K: int, V: int, sms: int, segment_len: int | None
) -> tuple[tuple[int, int, int, int, int], int]:
    """The state pass's ([BK, BV] tile, warps, tokens a step, stages) and the segment length (0: no cuts).

    segment_len None plans both: the wide tiling (cfg.state_*) when its N * H * K/BK * V/BV programs
    give each of the `sms` multiprocessors two or more; else the narrow one (cfg.narrow_*), uncut
    while its programs give each one or more, else cut into plan_segment_len's segments (their
    incoming states then cost the output pass a second product: worth it only when too few
    programs would leave multiprocessors idle). A given segment_len is kept: 0 takes the wide tiling
    where it fills the GPU, a cut the narrow one."""
    def tiling(BK: int, BV: int, warps: int, BT: int, stages: int) -> tuple[tuple[int, int, int, int, int], int]:
        BK, BV = min(BK, max(16, next_pow2(K))), min(BV, max(16, next_pow2(V)))
        return (BK, BV, warps, BT, stages), N * H * triton.cdiv(K, BK) * triton.cdiv(V, BV)

    wide, wide_programs = tiling(cfg.state_BK, cfg.state_BV, cfg.state_warps, cfg.state_BT, cfg.state_stages)
    if N * H == 0:  # nothing to run: no cuts
        return wide, 0
    narrow, narrow_programs = tiling(cfg.narrow_state_BK, cfg.narrow_state_BV, cfg.narrow_state_warps,
                                     cfg.narrow_state_BT, cfg.narrow_state_stages)
    if not segment_len and wide_programs >= 2 * sms:
        return wide, 0
    if segment_len is None:
        if narrow_programs >= sms:
            return narrow, 0
        segment_len = plan_segment_len(N, T, H, narrow_programs // max(N * H, 1), cfg.narrow_state_BT, sms)
    return narrow, segment_len


def chunk_retention_two_pass(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    lg: torch.Tensor,
    cu: torch.Tensor,
    h0: torch.Tensor | None,
    scale: float,
    cfg: TwoPassConfig,
    segment_len: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The launches, on inputs that chunk_retention_triton has already checked and laid out (q, k, v
    rows of heads; cu int on q's device; lg float32; h0 float32 contiguous or None).

    segment_len: as in chunk_retention_triton (None: planned from the state pass's programs).
    When sequences are cut, the state pass runs once per segment from zero, storing the span states
    local to the segment and its own final state; a scan over segments (_segment_scan_kernel) gives
    each segment's incoming state and the final states; the output pass adds the incoming state's
    part (cfg.segment_fix; "off": the state pass runs again from each incoming state instead)."""
    from .triton_fwd import _segment_scan_kernel

    T, H, K = q.shape
    V = v.shape[-1]
    N = cu.numel() - 1
    dev = q.device
    SE = cfg.state_every
    if SE <= 0 or SE % cfg.BT:  # the output pass walks a span in key sub-blocks of BT
        raise ValueError(f"state_every={SE} must be a positive multiple of the output pass's BT={cfg.BT}")
    if cfg.span_stages < 0:
        raise ValueError(f"span_stages={cfg.span_stages} must be >= 1, or 0 for the output pass's own depth")
    if cfg.output_form not in OUTPUT_FORMS:
        raise ValueError(f"output_form={cfg.output_form!r}; use one of {OUTPUT_FORMS}")
    if cfg.output_form == "keys" and (cfg.key_block < 16 or cfg.BT % cfg.key_block):
        raise ValueError(f"key_block={cfg.key_block} must be >= 16 and divide the output pass's BT={cfg.BT}")
    if cfg.segment_fix not in SEGMENT_FIXES:
        raise ValueError(f"segment_fix={cfg.segment_fix!r}; use one of {SEGMENT_FIXES}")
    o = torch.empty(T, H, V, device=dev, dtype=q.dtype)
    final = torch.empty(N, H, K, V, device=dev, dtype=torch.float32)
    if T == 0:
        return o, final.zero_() if h0 is None else final.copy_(h0)
    # bf16 inputs: the q S product runs in bf16 anyway; float16 / float32: float32 states (no overflow)
    hs_dtype = torch.bfloat16 if q.dtype == torch.bfloat16 else torch.float32
    hs = torch.empty(segment_slots(N, T, SE), H, K, V, device=dev, dtype=hs_dtype)
    if segment_len is not None and segment_len < 0:
        raise ValueError(f"segment_len={segment_len}; pass None (planned), 0 (no cuts) or a positive length")
    (SK, SV, warps, SBT, stages), segment_len = plan_state_pass(cfg, N, T, H, K, V, num_sms(dev), segment_len)
    if SE % SBT:
        raise ValueError(f"state_every={SE} must be a multiple of the state pass's step ({SBT} tokens: "
                         f"state_BT={cfg.state_BT} or narrow_state_BT={cfg.narrow_state_BT}, the tiling that runs)")
    NSK, NSV = triton.cdiv(K, SK), triton.cdiv(V, SV)
    segment_len = segment_len and triton.cdiv(segment_len, SE) * SE  # whole spans
    states = dict(H=H, K=K, V=V, BT=SBT, BK=SK, BV=SV, NK=NSK, NV=NSV, STATE_EVERY=SE,
                  num_warps=warps, num_stages=stages)
    strides = dict(stride_qk=q.stride(0), stride_v=v.stride(0))
    fix = cfg.segment_fix if segment_len else "off"
    # the output pass's incoming states: none (hs holds true states), or per segment (float32)
    seg_init = final
    if not segment_len:
        _span_states_kernel[(N * H * NSK * NSV,)](
            k, v, lg, final if h0 is None else h0, hs, final, cu, 0, 1, **strides,
            SEGMENTED=False, HAS_H0=h0 is not None, STORE_SPANS=True, **states,
        )
    else:
        n_seg = triton.cdiv(T, segment_len)  # segments a sequence may have: programs past its end do nothing
        local = torch.empty(segment_slots(N, T, segment_len), H, K, V, device=dev, dtype=torch.float32)
        seg_init = torch.empty_like(local)
        grid = (N * n_seg * H * NSK * NSV,)
        _span_states_kernel[grid](
            k, v, lg, local, hs, local, cu, segment_len, n_seg, **strides,
            SEGMENTED=True, HAS_H0=False, STORE_SPANS=fix != "off", **states,
        )
        CK, CV = min(SK, 32), min(SV, 64)
        NCK, NCV = triton.cdiv(K, CK), triton.cdiv(V, CV)
        _segment_scan_kernel[(N * H * NCK * NCV,)](
            local, seg_init, final if h0 is None else h0, final, cu, lg, segment_len,
            H=H, K=K, V=V, BK=CK, BV=CV, NK=NCK, NV=NCV, HAS_H0=h0 is not None, num_warps=4,
        )
        if fix == "off":
            _span_states_kernel[grid](
                k, v, lg, seg_init, hs, local, cu, segment_len, n_seg, **strides,
                SEGMENTED=True, HAS_H0=True, STORE_SPANS=True, **states,
            )
        else:  # "product": the second q S product's operand, as the span states are stored
            seg_init = seg_init.to(hs_dtype)
    # virtual row block r belongs to the last sequence n with cu[n] // BT + n <= r (device ops, no sync)
    seqs = torch.arange(N, device=dev, dtype=torch.int64)
    blocks = torch.arange(segment_slots(N, T, cfg.BT), device=dev, dtype=torch.int64)
    seq_of_block = torch.searchsorted(cu[:-1].long() // cfg.BT + seqs, blocks, right=True, out_int32=True) - 1
    if cfg.output_form == "keys":
        BV = min(cfg.BV, max(16, next_pow2(V)))
        NV = triton.cdiv(V, BV)
        BK = max(16, next_pow2(K))
        _attn_outputs_kernel[(blocks.numel() * H * NV,)](
            q, k, v, o, lg, hs, cu, seq_of_block, scale, **strides, seg_init=seg_init, seg_len=segment_len,
            has_h0=int(h0 is not None), H=H, K=K, V=V, BT=cfg.BT, BK=BK, BV=BV, NV=NV, BKEY=cfg.key_block,
            KS=min(BK, 64), STATE_EVERY=SE, F32_STATE_DOT=q.dtype != torch.bfloat16, SEGMENT_FIX=fix,
            num_warps=cfg.num_warps, num_stages=cfg.num_stages,
        )
        return o, final
    _span_outputs_kernel[(blocks.numel() * H,)](
        q, k, v, o, lg, hs, cu, seq_of_block, scale, **strides,
        H=H, K=K, V=V, BT=cfg.BT, BK=max(16, next_pow2(K)),
        BV=min(cfg.BV if fix == "off" else cfg.segment_fix_BV, max(16, next_pow2(V))),
        STATE_EVERY=SE, F32_STATE_DOT=q.dtype != torch.bfloat16, SPLIT=cfg.split_bf16 and q.dtype == torch.bfloat16,
        seg_init=seg_init, seg_len=segment_len, has_h0=int(h0 is not None), SEGMENT_FIX=fix,
        SPAN_STAGES=cfg.span_stages, num_warps=cfg.num_warps,
        num_stages=cfg.num_stages if fix == "off" else cfg.segment_fix_stages,
    )
    return o, final
