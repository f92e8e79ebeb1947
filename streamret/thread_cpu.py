"""CPU seconds of this process's threads, by role: which threads of an engine use the CPU (and its GIL).

An engine's Python threads (its step loop, its tokenize stage, its callers) share one GIL, so the sum of
their CPU time per token bounds its tokens/s whatever the GPU; native threads (torch's, the tokenizer's,
the CUDA driver's) run without it and are counted apart. Read from /proc (Linux); zeros elsewhere.
"""

from __future__ import annotations

import os
import threading

# every role is always present (stats are summed); tokenize_procs: the tokenizer processes (children, not threads)
ROLES = ("step", "tokenize", "caller", "python", "other", "tokenize_procs")
_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


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


def thread_cpu_seconds(tokenizer_children: bool = False) -> dict[str, float]:
    """CPU seconds (user + system) of this process's threads so far, summed by role (ROLES); with
    tokenizer_children, also of its live tokenizer processes (EngineConfig.tokenize_procs) as tokenize_procs
    (a scan of /proc: only where there are some)."""
    names = {t.native_id: t.name for t in threading.enumerate()}
    out = dict.fromkeys(ROLES, 0.0)
    try:
        tids = os.listdir("/proc/self/task")
    except OSError:
        return out
    for tid in tids:
        stat = proc_stat(f"/proc/self/task/{tid}/stat")
        if stat is not None:  # (None: the thread ended meanwhile)
            out[role(names.get(int(tid), ""))] += stat[2]
    if tokenizer_children:
        out["tokenize_procs"] = sum(cpu for _, cpu in child_processes(b"tokenize_worker"))
    return out


def proc_stat(path: str) -> tuple[str, int, float] | None:
    """(state, parent pid, CPU seconds user + system) from a /proc/<pid>/stat or .../task/<tid>/stat file;
    None when it cannot be read (the process or thread is gone, or this is not Linux)."""
    try:
        with open(path) as f:
            fields = f.read().rsplit(")", 1)[1].split()  # after the name, which may hold spaces and ")"
        return fields[0], int(fields[1]), (int(fields[11]) + int(fields[12])) / _TICK
    except (OSError, IndexError, ValueError):
        return None


def child_processes(marker: bytes) -> list[tuple[int, float]]:
    """(pid, CPU seconds so far) of this process's live children whose command line holds `marker` (Linux /proc;
    [] elsewhere). A child that ended is not counted (its time moves to this process's cutime once waited for)."""
    me, found = os.getpid(), []
    try:
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return found
    for pid in pids:
        stat = proc_stat(f"/proc/{pid}/stat")
        if stat is None or stat[1] != me or stat[0] == "Z":  # gone, not ours, or ended (a zombie not yet waited for)
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if marker in f.read():
                    found.append((int(pid), stat[2]))
        except OSError:
            continue  # gone meanwhile
    return found
