"""Issue 17, item 1's acceptance as a user meets it: `streamret embed` on a corpus of 50 documents of 1 KB to
2 MB (sizes log-uniform, prose with multi-byte characters), interrupted with SIGINT at a random moment, then
rerun with the command its last line prints; the output is compared with an uninterrupted run's.

    python bench/embed_resume.py                                   # the full case: default model, --part-bytes 1M
    python bench/embed_resume.py --max-bytes 64000 --part-bytes 128K   # a scaled-down case for a CPU

Prints one JSON object: sizes, the moment of the SIGINT (bytes done by then, from the progress lines), the
interrupted run's last line, the text lost (its figure, and the bytes done minus the bytes of the saved rows),
the size of the part that was in flight (the rerun's first part), the seconds of each run, and the largest
embedding difference. Exits 1 when more than one part's work was lost or the outputs differ by more than 1e-6.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from helpers_chaos import book_text  # noqa: E402
from helpers_progress import PROGRESS, to_bytes  # noqa: E402

from streamret.commands.embed import parse_size  # noqa: E402
from streamret.progress import format_bytes  # noqa: E402

MESSAGE = re.compile(r"holds (?P<rows>\d+) of \d+ documents \((?P<parts>\d+) parts? written by this run\); lost: "
                     r"(?P<lost>[\d.]+ [kMG]?B) .*resume with: (?P<cmd>.+)$")


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
            "PYTHONUNBUFFERED": "1"}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--docs", type=int, default=50)
    p.add_argument("--min-bytes", type=int, default=1000)
    p.add_argument("--max-bytes", type=int, default=2_000_000)
    p.add_argument("--model", default="default")
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default=None, help="`streamret embed --dtype` (float32 on a GPU: in bf16 how the "
                   "text is packed into steps moves embeddings by more than the 1e-6 compared)")
    p.add_argument("--part-bytes", default="1M", help="`streamret embed --part-bytes` (default 1M, its default)")
    p.add_argument("--seed", type=int, default=17, help="corpus and SIGINT moment")
    args = p.parse_args(argv)
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = random.Random(args.seed)
    sizes = [int(args.min_bytes * (args.max_bytes / args.min_bytes) ** rng.random()) for _ in range(args.docs)]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        texts = {f"doc-{i:02d}": book_text(args.seed * 1000 + i, n) for i, n in enumerate(sizes)}
        nbytes = {k: len(t.encode()) for k, t in texts.items()}
        pq.write_table(pa.table({"id": list(texts), "text": list(texts.values())}), tmp / "corpus.parquet",
                       row_group_size=8)
        total = sum(nbytes.values())

        def command(out: Path) -> list[str]:
            return ["embed", str(tmp / "corpus.parquet"), "-o", str(out), "--model", args.model, "--device",
                    args.device, "--part-bytes", args.part_bytes, "--progress-every-s", "1",
                    *(["--dtype", args.dtype] if args.dtype else [])]

        started = time.monotonic()
        full = subprocess.run([sys.executable, "-m", "streamret.cli", *command(tmp / "full")], capture_output=True,
                              text=True, env=env())
        full_s = time.monotonic() - started
        if full.returncode != 0:
            print(full.stderr, file=sys.stderr)
            return 1

        at = rng.uniform(0.05, 0.95) * total
        started = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-m", "streamret.cli", *command(tmp / "resumed")],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env())
        done_at_signal, last = None, ""
        for line in proc.stderr:
            last = line.rstrip("\n") or last
            m = PROGRESS.match(line.rstrip("\n"))
            if m and m["desc"] == "embed" and done_at_signal is None and to_bytes(m["done"]) >= at:
                done_at_signal = to_bytes(m["done"])
                proc.send_signal(signal.SIGINT)
        proc.wait()
        interrupted_s = time.monotonic() - started
        message = MESSAGE.search(last)
        if proc.returncode != 130 or message is None:
            print(f"the run was not interrupted as planned (exit {proc.returncode}): {last}", file=sys.stderr)
            return 1
        saved = pq.read_table(tmp / "resumed") if any((tmp / "resumed").glob("*.parquet")) else None
        saved_bytes = 0 if saved is None else sum(nbytes[i] for i in saved.column("id").to_pylist())

        started = time.monotonic()
        rerun = subprocess.run([sys.executable, "-m", "streamret.cli", *shlex.split(message["cmd"])[1:]],
                               capture_output=True, text=True, env=env())
        rerun_s = time.monotonic() - started
        if rerun.returncode != 0:
            print(rerun.stderr, file=sys.stderr)
            return 1
        parts = sorted((tmp / "resumed").glob("part-*.parquet"))
        in_flight = pq.read_table(parts[int(message["parts"])]).column("id").to_pylist()
        one_part = max(parse_size(args.part_bytes), sum(nbytes[i] for i in in_flight))

        a, b = pq.read_table(tmp / "resumed"), pq.read_table(tmp / "full")
        same_rows = all(a.column(c).to_pylist() == b.column(c).to_pylist()
                        for c in ("id", "tokens", "summary", "error"))
        diff = float(np.abs(np.array(a.column("embedding").to_pylist())
                            - np.array(b.column("embedding").to_pylist())).max())
        lost_lower = done_at_signal - saved_bytes
        report = {
            "docs": args.docs, "corpus_bytes": total, "min_doc_bytes": min(nbytes.values()),
            "max_doc_bytes": max(nbytes.values()), "model": args.model, "device": args.device, "dtype": args.dtype,
            "part_bytes": args.part_bytes, "parts": len(parts), "seed": args.seed,
            "sigint_at_bytes_done": done_at_signal, "interrupted_line": last,
            "lost_reported": message["lost"], "lost_done_minus_saved": format_bytes(max(lost_lower, 0)),
            "part_in_flight_bytes": sum(nbytes[i] for i in in_flight), "one_part_bound": one_part,
            "uninterrupted_s": round(full_s, 1), "interrupted_s": round(interrupted_s, 1),
            "rerun_s": round(rerun_s, 1), "same_rows": same_rows, "max_abs_embedding_diff": diff,
        }
        print(json.dumps(report, indent=1))
        ok = same_rows and diff <= 1e-6 and to_bytes(message["lost"]) <= one_part * 1.01 and lost_lower <= one_part
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
