"""A client that writes chunks and never reads its acks, against `streamret serve` (random:tiny, CPU).

    python bench/flood.py --chunks 60000

For each client setting (HTTP/2 BDP probing off, then on, then off again), one Append call writes up to
--chunks chunks of 256 B to a new stream, each write given 3 s; a write that does not complete in time
means flow control holds the client back. Then another channel asks how many chunks the server
applied. Prints one line per setting; writes DIR/flood.json (DIR: --out, else $OUT, else .).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import grpc

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
from helpers_server import ServeProcess  # noqa: E402

from streamret.service.proto_gen import streamret_pb2 as pb  # noqa: E402
from streamret.service.proto_gen import streamret_pb2_grpc as pb_grpc  # noqa: E402

CHUNK = ("flood " * 43)[:256]


async def flood(target: str, bdp_probe: bool, max_chunks: int, sid: str) -> dict:
    options = [] if bdp_probe else [("grpc.http2.bdp_probe", 0)]
    channel = grpc.aio.insecure_channel(target, options=options)
    call = pb_grpc.StreamRetStub(channel).Append()
    written, stalled, started = 0, False, time.monotonic()
    for seq in range(1, max_chunks + 1):
        try:
            await asyncio.wait_for(call.write(pb.AppendRequest(stream_id=sid, seq=seq, text=CHUNK)), 3.0)
        except TimeoutError:
            stalled = True
            break
        written = seq
    seconds = time.monotonic() - started
    async with grpc.aio.insecure_channel(target) as other:
        info = await pb_grpc.StreamRetStub(other).OpenStream(pb.OpenStreamRequest(stream_id=sid), timeout=120)
    call.cancel()
    await channel.close()
    return dict(bdp_probe=bdp_probe, written=written, stalled=stalled, seconds=round(seconds, 1),
                applied=info.applied_seq)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--chunks", type=int, default=60000, help="most chunks one client writes")
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    args = ap.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp, ServeProcess(Path(tmp) / "states") as server:
        server.start()
        for i, bdp in enumerate((False, True, False)):
            row = asyncio.run(flood(server.target, bdp, args.chunks, f"flood-{i}"))
            rows.append(row)
            print(f"BDP probing {'on ' if bdp else 'off'}: wrote {row['written']:,} chunks in {row['seconds']} s, "
                  f"{'held back' if row['stalled'] else 'never held back'}; the server applied {row['applied']:,}",
                  flush=True)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "flood.json").write_text(json.dumps(dict(bench="flood", rows=rows, command=" ".join(sys.argv)),
                                                          indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
