"""Who holds the engine lock, per call site, while chunks of real text are appended (CPU or GPU).

    python bench/lock_holders.py --text .device/text/man.txt.gz --device cpu --chunks 800 --streams 16

Runs an in-process Engine with STREAMRET_LOCK_PROFILE=1 (streamret/engine/lock_profile.py), appends --chunks
chunks of --chunk-bytes of the text round-robin over --streams streams (at most 64 unacknowledged), and prints
the sites that held the lock longest: takes and ms held per take. bench/e2e.py reports the same books per part
for the whole pipeline (`lock_sites` in its JSON when the variable is set).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from text_file import read_text_file  # noqa: E402  (bench/text_file.py)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--text", required=True, help="a text file (.gz read as gzip)")
    ap.add_argument("--model", default="default")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--chunks", type=int, default=800)
    ap.add_argument("--chunk-bytes", type=int, default=2048)
    ap.add_argument("--streams", type=int, default=16)
    ap.add_argument("--top", type=int, default=6)
    args = ap.parse_args(argv)
    os.environ["STREAMRET_LOCK_PROFILE"] = "1"  # before the engine makes its lock
    from streamret.engine import Engine

    text = read_text_file(args.text, args.chunks * args.chunk_bytes)
    chunks = [text[i:i + args.chunk_bytes] for i in range(0, len(text), args.chunk_bytes)]
    with Engine.from_model(args.model, args.device) as eng:
        waiting = []
        for k, chunk in enumerate(chunks):
            waiting.append(eng.submit_append(f"s{k % args.streams}", k // args.streams + 1, chunk))
            if len(waiting) > 64:
                waiting.pop(0).result()
        for fut in waiting:
            fut.result()
        sites = eng.stats()["lock_sites"]
    print(f"{len(chunks)} chunks of {args.chunk_bytes} B over {args.streams} streams, {args.model} on {args.device}")
    for site, b in sorted(sites.items(), key=lambda kv: -kv[1]["held_s"])[: args.top]:
        print(f"{site:48s} takes {b['takes']:6d}  held {1e3 * b['held_s'] / max(1, b['takes']):8.3f} ms a take"
              f"  waited {1e3 * b['wait_s'] / max(1, b['takes']):8.3f} ms a take")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
