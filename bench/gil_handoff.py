"""What one torch call costs the calling thread while other threads run Python, by GIL switch interval.

    python bench/gil_handoff.py [--busy 2] [--calls 50]

Every torch call from Python releases the GIL and takes it back; with --busy threads running Python, taking
it back waits for the holder to give it up, at the latest at the end of its switch interval. Prints the
microseconds per call (a slice and a view of a small tensor: microseconds of work) at each interval, and the
busy threads' rounds a second meanwhile (what the short interval costs them). streamret/engine/gil.py uses
the short interval for the step thread's torch calls.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch
from cpu_threads import busy_threads  # bench/cpu_threads.py


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--busy", type=int, default=2, help="threads running Python meanwhile")
    ap.add_argument("--calls", type=int, default=400, help="torch calls timed per interval")
    args = ap.parse_args()
    print(f"{args.busy} busy threads, torch {torch.__version__}, Python {sys.version.split()[0]}")
    with busy_threads(args.busy) as (_, rounds):
        time.sleep(0.05)
        measure(args.calls, rounds)


def measure(calls: int, rounds) -> None:
    a = torch.zeros(1024, dtype=torch.uint8)
    base = sys.getswitchinterval()
    for interval in (0.005, 0.0005, 0.0001, 0.00002):
        sys.setswitchinterval(interval)
        r0, t0 = rounds(), time.perf_counter()
        for _ in range(calls):
            a[16:32].view(torch.int64)
        dt = time.perf_counter() - t0
        sys.setswitchinterval(base)
        print(f"interval {interval * 1e6:6.0f} us: {dt / calls * 1e6:9.1f} us a torch call; "
              f"busy threads {(rounds() - r0) / dt:,.0f} rounds/s")


if __name__ == "__main__":
    main()
