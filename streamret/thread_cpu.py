"""CPU seconds of this process's threads, by role: which threads of an engine use the CPU (and its GIL).

An engine's Python threads (its step loop, its tokenize stage, its callers) share one GIL, so the sum of
their CPU time per token bounds its tokens/s whatever the GPU; native threads (torch's, the tokenizer's,
the CUDA driver's) run without it and are counted apart. Read from /proc (Linux); zeros elsewhere.
"""

from __future__ import annotations

import os
import threading

ROLES = ("step", "tokenize", "caller", "python", "other")  # every role is always present (stats are summed)


def role(thread_name: str) -> str:
    """step (the step loop), tokenize (the tokenize stage), caller (the main thread: a bench driver, or an
    engine process's pipe reader), python (every other Python thread), other (threads Python did not start)."""
    if thread_name.endswith("-step"):
        return "step"
    if "tokenize" in thread_name:
        return "tokenize"
    if thread_name == "MainThread":
        return "caller"
    return "python" if thread_name else "other"


def thread_cpu_seconds() -> dict[str, float]:
    """CPU seconds (user + system) of this process's threads so far, summed by role (ROLES)."""
    names = {t.native_id: t.name for t in threading.enumerate()}
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    out = dict.fromkeys(ROLES, 0.0)
    try:
        tids = os.listdir("/proc/self/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/self/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the thread ended meanwhile
        out[role(names.get(int(tid), ""))] += (int(fields[11]) + int(fields[12])) / tick
    return out
