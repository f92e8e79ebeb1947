"""The step loop's time by part, on two clocks: wall seconds, and the step thread's own CPU seconds over the
same spans. Their difference is time the thread spent off the CPU inside a part: waiting for the GIL, for the
device, for a lock, or for a core. On the H200 with 12 engine processes a step's "launch" took 4.8-5.8 ms of
wall time at 64 streams and 11.3-12.9 ms at 1,024 whatever the GIL switch interval (bench/RESULTS.md, session
11); the CPU clock tells work from waiting there. Reading both clocks costs about 0.6 us a read of
time.thread_time on the CPU machine (timeit), some 20 reads a step."""

from __future__ import annotations

import time

# idle: waiting for work with no step in flight (the engine had nothing to run); the rest: a step's parts (apply_items:
# each chunk the step completed applied to its stream, after book_spans; acks: deciding which of its acks wait for a
# record and handing the others to the ack thread, before book_segments)
PARTS = ("idle", "lock", "schedule", "gather", "launch", "wait", "scatter", "book_spans", "apply_items",
         "book_segments", "book_items", "acks")

Stamp = tuple[float, float]  # (perf_counter, thread_time)


class PartClock:
    def __init__(self) -> None:
        self.wall = dict.fromkeys(PARTS, 0.0)
        self.cpu = dict.fromkeys(PARTS, 0.0)
        # a part under way, begun at a wall time (`begin`): the loop's wait for work, which can last seconds (a
        # bench's next load starting), is counted by `wall_now` as it goes, not all at once when it ends
        self.open: tuple[str, float] | None = None

    @staticmethod
    def now() -> Stamp:
        return time.perf_counter(), time.thread_time()

    def add(self, part: str, since: Stamp) -> Stamp:
        """Count the time from `since` to now in `part` (on the thread that took `since`); returns now. Ends `part`
        if it was begun."""
        now = self.now()
        self.wall[part] += now[0] - since[0]
        self.cpu[part] += now[1] - since[1]
        if self.open is not None and self.open[0] == part:
            self.open = None
        return now

    def begin(self, part: str, since: Stamp) -> None:
        """`part` is under way since `since` (until `add(part, since)` counts it): `wall_now` counts it so far."""
        self.open = (part, since[0])

    def wall_now(self) -> dict[str, float]:
        """The wall seconds by part, with the part under way counted up to now: two readings then split a long
        wait between the spans they bound, as it fell (read under the lock the loop counts its parts under)."""
        out = dict(self.wall)
        if self.open is not None:
            part, since = self.open
            out[part] += time.perf_counter() - since
        return out
