"""Where one thread spends its time, by sampling its Python stack every few milliseconds.

cProfile cannot time one thread among several on Python 3.12 (it profiles them all). A sample needs the GIL, so a
thread that runs C code without it (a torch call, a wait for the device) shows up at the Python line that called
that code, which is what tells a step's parts apart. The engine samples its step thread when
STREAMRET_STEP_SAMPLES is set (milliseconds between samples; `step_sample_interval`); its stats() then carry the
counts (`counts()`), which add up across engine processes and subtract between two stats() calls.
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Any


class StackSampler:
    """Counts, per sample of `thread`: its innermost frame ("own", with the line number when `lines`) and every
    function on its stack once ("inside")."""

    def __init__(self, thread: threading.Thread, every_s: float, lines: bool = False):
        self.target, self.thread_name, self.every_s, self.lines = thread, thread.name, every_s, lines
        self.own: dict[str, int] = {}
        self.inside: dict[str, int] = {}
        self.samples = 0
        self._stop = threading.Event()
        # (a name of its own role in thread_cpu.role: ending in "-step" would book its CPU as the step thread's)
        self._thread = threading.Thread(target=self._run, name=f"streamret-sampler[{thread.name}]", daemon=True)

    def start(self) -> StackSampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join()

    def __enter__(self) -> StackSampler:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @staticmethod
    def _name(frame: Any, line: bool = False) -> str:
        code = frame.f_code
        path = code.co_filename
        short = path.split("/streamret/")[-1] if "/streamret/" in path else path.split("/")[-1]
        return f"{short}:{code.co_name}" + (f":{frame.f_lineno}" if line else "")

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            if self.target.ident is not None and not self.target.is_alive():
                return  # the thread ended (and a new thread may reuse its id): nothing more to sample
            frame = sys._current_frames().get(self.target.ident)
            if frame is None:
                continue
            own = self._name(frame, self.lines)
            seen = set()
            while frame is not None:
                seen.add(self._name(frame))
                frame = frame.f_back
            self.samples += 1  # (only this thread writes the counts; readers copy them)
            self.own[own] = self.own.get(own, 0) + 1
            for name in seen:
                self.inside[name] = self.inside.get(name, 0) + 1

    def counts(self) -> dict:
        """A copy of the counts: {"samples": n, "every_s": s, "own": {frame: n}, "inside": {function: n}}."""
        return {"samples": self.samples, "every_s": self.every_s, "own": dict(self.own), "inside": dict(self.inside)}

    def summary(self, rows: int) -> dict:
        return summarize(self.counts(), rows, self.thread_name)

    def table(self, rows: int) -> str:
        return format_table(self.summary(rows))


def summarize(counts: dict, rows: int, thread: str = "") -> dict:
    """The top `rows` of counts() (or of a difference of two, or a sum over engines) as shares of the samples."""
    samples = counts.get("samples", 0)

    def top(c: dict[str, int]) -> list[dict]:
        best = sorted(((k, v) for k, v in c.items() if v > 0), key=lambda kv: -kv[1])[:rows]
        return [{"function": k, "share": round(v / max(1, samples), 4)} for k, v in best]

    return {"thread": thread, "samples": samples, "every_s": counts.get("every_s"), "own": top(counts.get("own", {})),
            "inside": top(counts.get("inside", {}))}


def format_table(summary: dict) -> str:
    every = summary["every_s"]
    lines = [f"\nstack samples of thread {summary['thread']}: {summary['samples']}"
             + (f" every {every * 1e3:g} ms" if every else ""), f"{'share':>7s}  innermost frame"]
    lines += [f"{r['share']:7.1%}  {r['function']}" for r in summary["own"]]
    lines += [f"\n{'share':>7s}  anywhere on the stack"]
    lines += [f"{r['share']:7.1%}  {r['function']}" for r in summary["inside"]]
    return "\n".join(lines) + "\n"


def counts_between(before: dict | None, after: dict | None) -> dict | None:
    """after - before of two counts() (None when sampling is off)."""
    if not after:
        return None
    before = before or {}

    def minus(key: str) -> dict[str, int]:
        old = before.get(key, {})
        return {k: v - old.get(k, 0) for k, v in after.get(key, {}).items() if v - old.get(k, 0) > 0}

    own = minus("own")
    # an engine process started again between the two counts from zero: never fewer samples than a frame got
    samples = max(after.get("samples", 0) - before.get("samples", 0), max(own.values(), default=0))
    return {"samples": samples, "own": own, "inside": minus("inside"), "every_s": after.get("every_s")}


def step_sample_interval() -> float | None:
    """Seconds between samples of the engine's step thread from STREAMRET_STEP_SAMPLES (milliseconds, e.g. 1);
    None when it is unset or empty. A bad value raises, naming it."""
    value = os.environ.get("STREAMRET_STEP_SAMPLES", "")
    if not value:
        return None
    try:
        ms = float(value)
    except ValueError:
        ms = -1.0
    if not 0.1 <= ms <= 1000:
        raise ValueError(f"STREAMRET_STEP_SAMPLES={value!r}: give milliseconds between samples in [0.1, 1000], e.g. 1")
    return ms / 1e3
