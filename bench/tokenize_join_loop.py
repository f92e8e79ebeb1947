"""The tokenize stage in a closed loop on the CPU: how many streams a step holds with one thread, two, and two with
`join_bytes`, without a GPU.

--streams streams each keep --window chunks of --chunk-bytes in flight. The stage's tokenizer spins --tok-us-per-byte
a byte (about 1 us a token on English text at 0.25); one step thread takes everything delivered so far as a
step, spins --step-ms plus --step-us-per-byte, then acks each chunk, whose stream sends its next one. With 6
streams an engine (64 streams over 12 engine processes) and 85 (1,024), this is the shape of session 25's
engine parts on the H200: the question is the steps' width, not the tokens/s (the spinning threads here share
one GIL; the real tokenizer runs in processes of its own).

    python bench/tokenize_join_loop.py --streams 6,85

Prints streams a step and MB/s per configuration and writes DIR/tokenize_join_loop.json (DIR: --out, else $OUT,
else .).
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from streamret.engine.config import EngineConfig  # noqa: E402
from streamret.engine.scheduler import WorkItem  # noqa: E402
from streamret.engine.text import TextSnapshot  # noqa: E402
from streamret.engine.tokenize_stage import TokenizeStage  # noqa: E402
from streamret.model.tokenizer import ByteTokenizer  # noqa: E402

TEXT_PARAMS = EngineConfig().text_params


def spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


class SpinningTokenizer(ByteTokenizer):
    def __init__(self, us_per_byte: float):
        self.us_per_byte = us_per_byte

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        spin(self.us_per_byte * 1e-6 * sum(map(len, texts)))
        return super().encode_batch(texts)


def chunk(stream_id: str, raw: bytes) -> WorkItem:
    """A flushed chunk that starts its stream's text (each chunk stands alone: its front does not matter here)."""
    return WorkItem(stream_id, 1, None, None, None, None, len(raw), raw=raw, ending="flush",
                    text_before=TextSnapshot(b"", 0))


def loop(threads: int, join_bytes: int, args: argparse.Namespace, streams: int) -> dict:
    ready: queue.SimpleQueue = queue.SimpleQueue()
    stage = TokenizeStage(SpinningTokenizer(args.tok_us_per_byte), 260, ready.put, TEXT_PARAMS, threads=threads,
                          join_bytes=join_bytes)
    raw = ("word " * (args.chunk_bytes // 5 + 1)).encode()[: args.chunk_bytes]
    stage.submit_many([chunk(f"s{s}", raw) for s in range(streams) for _ in range(args.window)])
    widths, nbytes = [], 0
    start = time.perf_counter()
    while time.perf_counter() - start < args.seconds:
        delivered = [ready.get()]
        while True:
            try:
                delivered.append(ready.get_nowait())
            except queue.Empty:
                break
        items = [item for batch in delivered for item, _ in batch]
        widths.append(len({item.stream_id for item in items}))
        size = sum(item.nbytes for item in items)
        nbytes += size
        spin(args.step_ms * 1e-3 + args.step_us_per_byte * 1e-6 * size)
        stage.submit_many([chunk(item.stream_id, raw) for item in items])
    wall = time.perf_counter() - start
    stage.close()
    return {"threads": threads, "join_bytes": join_bytes, "streams": streams, "steps": len(widths),
            "streams_per_step": round(statistics.mean(widths), 2), "mb_per_s": round(nbytes / wall / 1e6, 3)}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--streams", default="6,85", help="streams of one engine, comma-separated")
    ap.add_argument("--configs", default="1:0,2:0,2:8,2:32", help="threads:join KiB, comma-separated")
    ap.add_argument("--window", type=int, default=4)
    ap.add_argument("--chunk-bytes", type=int, default=2048)
    ap.add_argument("--tok-us-per-byte", type=float, default=0.25)
    ap.add_argument("--step-ms", type=float, default=1.5)
    ap.add_argument("--step-us-per-byte", type=float, default=0.05)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    args = ap.parse_args(argv)
    rows = []
    for streams in (int(s) for s in args.streams.split(",")):
        for config in args.configs.split(","):
            threads, join_kb = (int(x) for x in config.split(":"))
            rows.append(loop(threads, join_kb << 10, args, streams))
            r = rows[-1]
            print(f"streams {streams:4d}  threads {threads}  join {join_kb:3d} KiB  streams a step "
                  f"{r['streams_per_step']:6.2f}  MB/s {r['mb_per_s']:.2f}", flush=True)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    out = Path(args.out) / "tokenize_join_loop.json"
    out.write_text(json.dumps({"args": vars(args), "rows": rows}, indent=1))
    print(f"results: {out}")


if __name__ == "__main__":
    main()
