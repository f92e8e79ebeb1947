"""One tenant abuses `streamret serve` (random:tiny or --model, CPU, a state folder, a record per chunk) while
another appends one chunk per new call; prints the victim's ack latencies and the server's RSS.

    python bench/abuse.py                              # every abuse at once, 30 s
    python bench/abuse.py --abuses events,embed --seconds 60 --event-rows 300000

The abuses and the victim are in tests/helpers_abuse.py (tests/test_abuse.py runs each one for a few seconds).
Exits 1 when the victim's worst ack passes --bound-s or the RSS growth passes --rss-bound-mib.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from helpers_abuse import ABUSES, AbuseConfig, run_abuse  # noqa: E402
from helpers_server import MiB, ServeProcess  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so `with ServeProcess` stops the served process
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--abuses", default=",".join(ABUSES), help=f"comma-separated, of {', '.join(ABUSES)}")
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--event-rows", type=int, default=300_000)
    p.add_argument("--embed-rows", type=int, default=20_000)
    p.add_argument("--idle-calls", type=int, default=400)
    p.add_argument("--busy-streams", type=int, default=100)
    p.add_argument("--model", default="random:tiny")
    p.add_argument("--bound-s", type=float, default=10.0)
    p.add_argument("--rss-bound-mib", type=float, default=384.0)
    p.add_argument("--out", help="write the figures as JSON here")
    args = p.parse_args(argv)
    cfg = AbuseConfig(abuses=tuple(a for a in args.abuses.split(",") if a), seconds=args.seconds,
                      event_rows=args.event_rows, embed_rows=args.embed_rows, idle_calls=args.idle_calls,
                      busy_streams=args.busy_streams)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "tokens").write_text("tok-abuser abuser\ntok-victim victim\n")
        with ServeProcess(root / "states", "--auth-tokens", str(root / "tokens"), cwd=root, model=args.model) as s:
            s.start()
            report = run_abuse(s, cfg)
    print(report.describe())
    growth = (report.rss_peak - report.rss_before) / MiB
    ok = not report.victim_errors and report.worst_s <= args.bound_s and growth <= args.rss_bound_mib
    if args.out:
        figures = {**asdict(cfg), "worst_s": report.worst_s, "p50_s": report.percentile(0.5),
                   "p99_s": report.percentile(0.99), "rss_growth_mib": growth, "victim_errors": report.victim_errors,
                   "outcomes": {f"{a} {c}": n for (a, c), n in report.outcomes.items()}}
        Path(args.out).write_text(json.dumps(figures, indent=1))
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
