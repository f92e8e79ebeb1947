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
import threading
import time

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--busy", type=int, default=2, help="threads running Python meanwhile")
    ap.add_argument("--calls", type=int, default=400, help="torch calls timed per interval")
    args = ap.parse_args()
    stop, rounds = threading.Event(), [0]

    def spin() -> None:
        x = 0
        while not stop.is_set():
            for i in range(1000):
                x += i
            rounds[0] += 1

    threads = [threading.Thread(target=spin, daemon=True) for _ in range(args.busy)]
    for t in threads:
        t.start()
    time.sleep(0.05)
    a = torch.zeros(1024, dtype=torch.uint8)
    base = sys.getswitchinterval()
    print(f"{args.busy} busy threads, torch {torch.__version__}, Python {sys.version.split()[0]}")
    for interval in (0.005, 0.0005, 0.0001, 0.00002):
        sys.setswitchinterval(interval)
        r0, t0 = rounds[0], time.perf_counter()
        for _ in range(args.calls):
            a[16:32].view(torch.int64)
        dt = time.perf_counter() - t0
        sys.setswitchinterval(base)
        print(f"interval {interval * 1e6:6.0f} us: {dt / args.calls * 1e6:9.1f} us a torch call; "
              f"busy threads {(rounds[0] - r0) / dt:,.0f} rounds/s")
    stop.set()
    for t in threads:
        t.join()


if __name__ == "__main__":
    main()
