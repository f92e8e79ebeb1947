"""The tokenize stage in a closed loop on the CPU: how many streams a step holds with one thread, two, and two with
`join_bytes` (and `split_bursts`), without a GPU.

--streams streams each keep --window chunks of --chunk-bytes in flight. The stage's tokenizer takes
--tok-us-per-byte a byte (about 1 us a token on English text at 0.25); one step thread takes everything delivered
so far as a step (at most --step-chunks of a stream), spins --step-ms plus --step-us-per-byte (the host's work)
and sleeps --device-ms plus --device-us-per-byte (the GPU's), then acks each chunk, whose stream sends its next one.
With 6 streams an engine (64 streams over 12 engine processes) and 85 (1,024), this is the shape of session 25's
engine parts on the H200. With --tok-wait spin (the default) the tokenizer spins in the stage's threads, which
share one GIL: the question is then the steps' width, not the tokens/s. With --tok-wait sleep it sleeps instead,
holding no GIL, as a stage thread waits for its tokenizer process (EngineConfig.tokenize_procs, a GPU's default):
the threads' batches then run side by side as on a host with cores to spare, and MB/s and a chunk's round trip
(submitted to acked) say what the stage's batching costs or buys.

    python bench/tokenize_join_loop.py --streams 6,85
    python bench/tokenize_join_loop.py --streams 6 --tok-wait sleep --configs 2:32,2:32:split,4:32:split
    python bench/tokenize_join_loop.py --streams 6 --tok-wait sleep --tok-us-per-byte 0.22 --step-ms 1.4 \
        --step-us-per-byte 0.062 --device-ms 1.0 --device-us-per-byte 0.1 --configs 2:32:split --step-chunks 2

Prints streams a step, MB/s and the round trip's p50 per configuration (threads:join KiB, ":split" for
split_bursts) and writes DIR/tokenize_join_loop.json (DIR: --out, else $OUT, else .).
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


class PacedTokenizer(ByteTokenizer):
    """The byte tokenizer taking us_per_byte a byte: spinning (holding the GIL), or sleeping (holding none, as a
    stage thread waiting for its tokenizer process)."""

    def __init__(self, us_per_byte: float, sleep: bool = False):
        self.us_per_byte, self.wait = us_per_byte, time.sleep if sleep else spin

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        self.wait(self.us_per_byte * 1e-6 * sum(map(len, texts)))
        return super().encode_batch(texts)


def chunk(stream_id: str, raw: bytes) -> WorkItem:
    """A flushed chunk that starts its stream's text (each chunk stands alone: its front does not matter here)."""
    return WorkItem(stream_id, 1, None, None, None, None, len(raw), raw=raw, ending="flush",
                    text_before=TextSnapshot(b"", 0))


def loop(threads: int, join_bytes: int, args: argparse.Namespace, streams: int, split: bool = False) -> dict:
    ready: queue.SimpleQueue = queue.SimpleQueue()
    idle = [False]  # the step thread waits for a delivery (with --hungry: the stage's `hungry`, as the engine's)
    stage = TokenizeStage(PacedTokenizer(args.tok_us_per_byte, args.tok_wait == "sleep"), 260, ready.put,
                          TEXT_PARAMS, threads=threads, join_bytes=join_bytes, split_bursts=split,
                          join_wait_s=args.join_wait_ms / 1e3, hungry=(lambda: idle[0]) if args.hungry else None)
    raw = ("word " * (args.chunk_bytes // 5 + 1)).encode()[: args.chunk_bytes]
    sent: dict[int, float] = {}  # id(item) -> when it was submitted
    trips: list[float] = []

    def submit(items: list[WorkItem]) -> None:
        now = time.perf_counter()
        sent.update((id(item), now) for item in items)
        stage.submit_many(items)
    submit([chunk(f"s{s}", raw) for s in range(streams) for _ in range(args.window)])
    widths, nbytes = [], 0
    held: list[WorkItem] = []  # delivered, left for a later step by --step-chunks
    start = time.perf_counter()
    while time.perf_counter() - start < args.seconds:
        if held:
            delivered = []
        else:
            try:
                delivered = [ready.get_nowait()]
            except queue.Empty:
                idle[0] = True
                if args.hungry:
                    stage.wake()  # (as the engine's loop wakes the stage when it starts to wait)
                delivered = [ready.get()]
                idle[0] = False
        while True:
            try:
                delivered.append(ready.get_nowait())
            except queue.Empty:
                break
        waiting = [*held, *(item for batch in delivered for item, _ in batch)]
        items, held, per_stream = [], [], {}
        for item in waiting:
            n = per_stream[item.stream_id] = per_stream.get(item.stream_id, 0) + 1
            (items if not args.step_chunks or n <= args.step_chunks else held).append(item)
        widths.append(len({item.stream_id for item in items}))
        size = sum(item.nbytes for item in items)
        nbytes += size
        spin(args.step_ms * 1e-3 + args.step_us_per_byte * 1e-6 * size)
        time.sleep(args.device_ms * 1e-3 + args.device_us_per_byte * 1e-6 * size)  # the GPU: no GIL held
        acked = time.perf_counter()
        trips.extend(acked - sent.pop(id(item)) for item in items)
        submit([chunk(item.stream_id, raw) for item in items])
    wall = time.perf_counter() - start
    stage.close()
    return {"threads": threads, "join_bytes": join_bytes, "split_bursts": split, "streams": streams,
            "join_wait_ms": args.join_wait_ms, "hungry": args.hungry,
            "steps": len(widths), "streams_per_step": round(statistics.mean(widths), 2),
            "mb_per_s": round(nbytes / wall / 1e6, 3), "round_trip_ms_p50": round(1e3 * statistics.median(trips), 2)}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--streams", default="6,85", help="streams of one engine, comma-separated")
    ap.add_argument("--configs", default="1:0,2:0,2:8,2:32",
                    help="threads:join KiB, comma-separated; threads:join KiB:split with split_bursts")
    ap.add_argument("--window", type=int, default=4)
    ap.add_argument("--chunk-bytes", type=int, default=2048)
    ap.add_argument("--tok-us-per-byte", type=float, default=0.25)
    ap.add_argument("--tok-wait", choices=["spin", "sleep"], default="spin",
                    help="the tokenizer's time spent spinning (GIL held) or sleeping (as tokenizer processes)")
    ap.add_argument("--step-ms", type=float, default=1.5)
    ap.add_argument("--step-us-per-byte", type=float, default=0.05)
    ap.add_argument("--device-ms", type=float, default=0.0, help="a step's device time, sleeping (no GIL held)")
    ap.add_argument("--device-us-per-byte", type=float, default=0.0)
    ap.add_argument("--step-chunks", type=int, default=0,
                    help="a step takes at most this many chunks of a stream, the rest waits for the next (0: all; "
                         "EngineConfig.draining_step_chunks, whose condition, fewer than a step's tokens queued, "
                         "holds here at --streams 6)")
    ap.add_argument("--join-wait-ms", type=float, default=1e3 * EngineConfig.tokenize_join_wait_s,
                    help="EngineConfig.tokenize_join_wait_s in ms: how long a chunk waits for a busy thread at most")
    ap.add_argument("--hungry", action="store_true",
                    help="the stage hands chunks over at once while the step thread waits for them (the engine's "
                         "`hungry`, its loop waiting for work)")
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    args = ap.parse_args(argv)
    rows = []
    for streams in (int(s) for s in args.streams.split(",")):
        for config in args.configs.split(","):
            threads, join_kb, *split = config.split(":")
            if split not in ([], ["split"]):
                raise SystemExit(f"--configs: {config!r} is not threads:join KiB or threads:join KiB:split")
            rows.append(loop(int(threads), int(join_kb) << 10, args, streams, bool(split)))
            r = rows[-1]
            print(f"streams {streams:4d}  threads {threads}  join {int(join_kb):3d} KiB{'  split' if split else ''}  "
                  f"streams a step {r['streams_per_step']:6.2f}  MB/s {r['mb_per_s']:.2f}  round trip p50 ms "
                  f"{r['round_trip_ms_p50']:.2f}", flush=True)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    out = Path(args.out) / "tokenize_join_loop.json"
    out.write_text(json.dumps({"args": vars(args), "rows": rows}, indent=1))
    print(f"results: {out}")


if __name__ == "__main__":
    main()
