"""Host-side helpers shared by the Triton ops (no Triton code here: each op keeps its kernels in its own file)."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator

import torch

KERNEL_DTYPES = (torch.bfloat16, torch.float16, torch.float32)


def next_pow2(x: int) -> int:
    return 1 << max(0, int(x) - 1).bit_length()


@functools.cache
def _device_sms(index: int) -> int:
    return torch.cuda.get_device_properties(index).multi_processor_count


def num_sms(device: torch.device) -> int:
    """Streaming multiprocessors of a CUDA device; 8 for the CPU interpreter (only plans work, never times it)."""
    if device.type != "cuda":
        return 8
    return _device_sms(device.index if device.index is not None else torch.cuda.current_device())


def check_inputs(dtype_of: torch.Tensor, **tensors: torch.Tensor) -> None:
    """All tensors share `dtype_of`'s dtype and device, and the dtype is one the kernels support."""
    if dtype_of.dtype not in KERNEL_DTYPES:
        raise ValueError(f"triton retention kernels take {KERNEL_DTYPES}, got {dtype_of.dtype}; cast the inputs")
    for name, t in tensors.items():
        if t.dtype != dtype_of.dtype:
            raise ValueError(f"{name} is {t.dtype} but q is {dtype_of.dtype}; pass q, k, v in one dtype")
        if t.device != dtype_of.device:
            raise ValueError(f"{name} is on {t.device} but q is on {dtype_of.device}; move them to one device")


@contextlib.contextmanager
def poisoned_allocations() -> Iterator[None]:
    """Inside this block torch.empty / torch.empty_like return float tensors full of NaN (integers full of -1),
    so an output element (or scratch buffer) that a kernel forgets to write shows up in tests and benchmarks."""
    empty, empty_like = torch.empty, torch.empty_like

    def poison(t: torch.Tensor) -> torch.Tensor:
        return t.fill_(float("nan")) if t.is_floating_point() else t.fill_(-1)

    torch.empty = lambda *a, **kw: poison(empty(*a, **kw))
    torch.empty_like = lambda *a, **kw: poison(empty_like(*a, **kw))
    try:
        yield
    finally:
        torch.empty, torch.empty_like = empty, empty_like


@contextlib.contextmanager
def interpreter_bf16_like_gpu() -> Iterator[None]:
    """Inside this block Triton's CPU interpreter treats bfloat16 as the GPU does: tl.dot multiplies the bf16 values
    in float32 and float32 -> bfloat16 rounds to nearest even. Without it the interpreter multiplies bf16 as the
    raw 16-bit integers it stores them as (outputs off by 1e10) and truncates, so a bf16 run on the CPU checks
    nothing. For tests and bench smoke runs under TRITON_INTERPRET=1; patches the interpreter's builder class."""
    import numpy as np
    from triton import language as tl
    from triton.runtime import interpreter

    builder = interpreter.InterpreterBuilder
    cast_impl, create_dot = builder.cast_impl, builder.create_dot

    def as_f32(h):
        return (h.data.astype(np.uint32) << 16).view(np.float32) if h.dtype.scalar == tl.bfloat16 else h.data

    def rtne_cast(self, src, dst_type):
        if src.dtype.scalar == tl.float32 and dst_type.scalar == tl.bfloat16:
            bits = src.data.astype(np.float32).view(np.uint32).astype(np.uint64)
            bits = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
            return interpreter.TensorHandle(bits.astype(np.uint16), tl.bfloat16)
        return cast_impl(self, src, dst_type)

    def f32_dot(self, a, b, d, *args):
        if tl.bfloat16 in (a.dtype.scalar, b.dtype.scalar):
            a = interpreter.TensorHandle(as_f32(a), tl.float32)
            b = interpreter.TensorHandle(as_f32(b), tl.float32)
        return create_dot(self, a, b, d, *args)

    builder.cast_impl, builder.create_dot = rtne_cast, f32_dot
    try:
        yield
    finally:
        builder.cast_impl, builder.create_dot = cast_impl, create_dot
