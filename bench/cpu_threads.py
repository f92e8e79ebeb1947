"""CPU time of each thread of this process, by role: which threads of the engine use the GIL per token.

The engine's Python threads (its step loop, its tokenize stage, the callers of submit_append) share one
GIL, so the sum of their CPU time per token bounds its tokens/s whatever the GPU; native threads (the
HF tokenizer's own pool, torch's) run without it and are counted apart ("other").
"""

from __future__ import annotations

import os
import threading
import time
from contextlib import contextmanager

from streamret.thread_cpu import proc_stat, thread_cpu_seconds


def thread_cpu_s(engine=None, fronts=None) -> dict[str, float]:
    """CPU seconds (user + system) of this process's threads so far, summed by role (streamret.thread_cpu: step,
    tokenize, caller = the main thread, python = every other Python thread, other = native threads); with engine
    processes (a ShardedEngine as `engine`), "engine_procs": all their threads together (their stats() split
    it by role: "thread_cpu_seconds"); with front processes (a FrontProcesses as `fronts`), "front_procs": the
    other fronts' CPU, all their threads. From /proc (Linux); {} elsewhere."""
    out = {k: v for k, v in thread_cpu_seconds().items() if v}
    for role, pids in (("engine_procs", getattr(engine, "pids", [])), ("front_procs", getattr(fronts, "pids", []))):
        for pid in pids:
            seconds = process_cpu_s(pid)
            if seconds is not None:
                out[role] = out.get(role, 0.0) + seconds
    return out


def process_cpu_s(pid: int, task: bool = False) -> float | None:
    """CPU seconds (user + system) of a process so far, all its threads (task=True: of this process's thread
    with that native id alone); None when it is gone."""
    stat = proc_stat(f"/proc/self/task/{pid}/stat" if task else f"/proc/{pid}/stat")
    return None if stat is None else stat[2]


def cpu_between(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: v - before.get(k, 0.0) for k, v in after.items()}


def us_per_token(cpu_s: dict[str, float], tokens: int) -> dict[str, float]:
    """CPU us per token by role, plus "python_threads": the roles of this process that hold its GIL, summed."""
    us = {k: round(1e6 * v / max(1, tokens), 3) for k, v in sorted(cpu_s.items())}
    us["python_threads"] = round(sum(v for k, v in us.items()
                                     if k not in ("other", "engine_procs", "front_procs", "tokenize_procs")), 3)
    return us


def us_per_token_line(cpu_s: dict[str, float], tokens: int) -> str:
    us = us_per_token(cpu_s, tokens)
    py = us.pop("python_threads")
    return ("CPU us per token by thread (the Python threads share one GIL, so their sum bounds tokens/s): "
            + ", ".join(f"{k} {v:.3f}" for k, v in us.items())
            + f"; Python threads {py:.3f} us/token = at most {1 / max(py, 1e-9):.2f} M tok/s on this host")


def host_cpu_sample() -> tuple[int, int, int] | None:
    """(busy, all, steal) jiffies of every CPU of the host so far, from /proc/stat's first line; None off Linux.
    Idle and iowait count as not busy; steal (a VM's host running others on its cores) as busy, and apart too;
    guest time is inside user already."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    return sum(fields) - fields[3] - fields[4], sum(fields), fields[7]


def host_cores_stolen(before: tuple | None, after: tuple | None) -> float | None:
    """How many of the host's cores its VM's host gave to others on average between two host_cpu_sample()s
    (steal time; 0 on bare metal): a part's figures read on a shared host may vary for that reason alone."""
    if before is None or after is None or after[1] <= before[1]:
        return None
    return round((after[2] - before[2]) / (after[1] - before[1]) * (os.cpu_count() or 1), 2)


def cpu_topology(text: str | None = None) -> dict:
    """The host's CPU as /proc/cpuinfo (or text, its contents) gives it: model, logical CPUs, and cores and
    siblings per package (siblings above cores: two hardware threads share a core, so 16 CPUs may be 8 cores'
    worth of work); {} off Linux."""
    if text is None:
        try:
            with open("/proc/cpuinfo") as f:
                text = f.read()
        except OSError:
            return {}
    first = dict(line.split(":", 1) for line in text.split("\n\n")[0].splitlines() if ":" in line)
    first = {k.strip(): v.strip() for k, v in first.items()}
    out = {"model": first.get("model name"), "logical_cpus": text.count("processor\t:") or os.cpu_count(),
           "packages": len({line.split(":", 1)[1].strip() for line in text.splitlines()
                            if line.startswith("physical id")}) or None}
    for key, name in (("cpu cores", "cores_per_package"), ("siblings", "siblings_per_package")):
        if first.get(key, "").isdigit():
            out[name] = int(first[key])
    return out


def python_core_ms(repeats: int = 5) -> float:
    """One core's speed at Python work of the engine's kind (dict updates, string splits, small loops): the best
    of `repeats` timings of a fixed workload, in ms (lower is faster). Machines of one kind may sit on hosts of
    different speeds, and the engine's figures follow the host (session 37: two H100 machines' engine processes
    spent 0.62 and 0.30 us of step-thread CPU a token), so a run records this beside its figures."""
    words = " ".join(f"w{i % 997}" for i in range(20_000))
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        counts: dict[str, int] = {}
        for w in words.split():
            counts[w] = counts.get(w, 0) + 1
        sum(i * i for i in range(100_000))
        best = min(best, time.perf_counter() - t0)
    return round(best * 1e3, 2)


def host_cores_busy(before: tuple | None, after: tuple | None) -> float | None:
    """How many of the host's cores were busy on average between two host_cpu_sample()s: whether a part was
    bound by the host's CPU (every process on it: engines, fronts, load generators, anything else)."""
    if before is None or after is None or after[1] <= before[1]:
        return None
    return round((after[0] - before[0]) / (after[1] - before[1]) * (os.cpu_count() or 1), 2)


@contextmanager
def busy_threads(n: int):
    """n threads running Python (no I/O, no torch) until the block ends: they want the GIL all the time, as an
    engine's tokenize and reader threads do under load. Yields (cpu_s, rounds): their CPU seconds so far
    (Linux; 0 elsewhere) and how many rounds of 1,000 additions they have run."""
    stop, done = threading.Event(), [0]

    def spin() -> None:
        x = 0
        while not stop.is_set():
            for i in range(1000):
                x += i
            done[0] += 1

    threads = [threading.Thread(target=spin, name=f"busy-{i}", daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    try:
        yield (lambda: sum(process_cpu_s(t.native_id, task=True) or 0.0 for t in threads)), (lambda: done[0])
    finally:
        stop.set()
        for t in threads:
            t.join()
