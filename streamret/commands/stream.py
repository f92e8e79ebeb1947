"""`streamret stream FILE --server HOST:PORT`: stream a file to a server, print its embedding and summary.

    streamret stream book.txt --server localhost:50051
    streamret stream - --server prod:443 --tls --token "$TOKEN" --stream-id logs-2024 --keep
    streamret stream report.txt --server localhost:50051 --role document   # the embedding to index a document

The file goes in numbered chunks; the client retries while the server restarts and resends what the
server had not made durable. By default the stream is closed at the end (the final embedding and
summary come with the close); --keep leaves it open on the server for more appends and queries.
--role document prints the embedding with the model's document map applied (for an index of whole documents);
a server whose model has none refuses it before closing the stream (exit 2, the stream left open).

A server that cannot be reached (nothing listens, the host does not resolve, TLS against a plaintext
server, the server gone mid-stream) is waited for --connect-timeout-s (default 5), then the command
prints one line naming the cause and exits 2; so does any error the server answers. An empty file,
or one that is not UTF-8 text, is refused before anything is sent, naming the byte offset
(streamret/textcheck.py); stdin is checked as it is read, and its bad chunk is not sent.

Progress goes to stderr as the server acknowledges chunks, in bytes against the file's size with the
ETA: a bar when stderr is a terminal, else one line every --progress-every-s seconds (10 by default),
so a redirected run shows it is working. --json or --no-progress turns it off.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING

from ..embedding_roles import ROLES

if TYPE_CHECKING:
    from streamret.client import RetryPolicy


def register(subparsers) -> None:
    p = subparsers.add_parser("stream", help="stream a file to a streamret server and print its embedding and summary")
    p.add_argument("file", metavar="FILE", help="the file to stream (- for stdin)")
    p.add_argument("--server", required=True, metavar="HOST:PORT", help="the server's address")
    p.add_argument("--stream-id", help="the stream's id (default: the file's name)")
    p.add_argument("--chunk-bytes", type=int, default=64 * 1024, help="bytes per chunk (default 65536)")
    p.add_argument("--token", default=os.environ.get("STREAMRET_TOKEN"),
                   help="bearer token (default: $STREAMRET_TOKEN)")
    p.add_argument("--tls", action="store_true", help="connect with TLS (system roots, or --ca-cert)")
    p.add_argument("--ca-cert", metavar="PEM", help="trust this CA certificate (implies --tls)")
    p.add_argument("--client-cert", metavar="PEM",
                   help="mutual TLS: this client's certificate chain, for a server with --tls-client-ca "
                        "(implies --tls)")
    p.add_argument("--client-key", metavar="PEM", help="mutual TLS: this client's private key (with --client-cert)")
    p.add_argument("--segments", type=int, default=5, help="summary segments to print (default 5)")
    p.add_argument("--keep", action="store_true", help="leave the stream open on the server instead of closing it")
    p.add_argument("--role", choices=ROLES, default="query",
                   help="the embedding's role: query (as the model computes it; the default) or document (the "
                        "model's document map applied: a whole document for an index)")
    p.add_argument("--json", action="store_true", help="print one JSON object (embedding in full); no progress")
    p.add_argument("--progress-every-s", type=float, default=10.0, metavar="S",
                   help="seconds between progress lines on stderr when it is not a terminal (default 10; on a "
                        "terminal it is a bar in bytes with the ETA)")
    p.add_argument("--no-progress", action="store_true", help="no progress on stderr")
    p.add_argument("--connect-timeout-s", type=float, default=5.0, metavar="S",
                   help="how long to wait for the server to be reachable, at the start and when it goes away "
                        "mid-stream (e.g. restarting), before giving up (default 5)")
    p.add_argument("--retry-timeout-s", type=float, default=60.0, metavar="S",
                   help="how long a reachable server may refuse chunks (busy, draining) with no progress "
                        "before giving up (default 60)")
    p.set_defaults(run=run)


_HINTS = {
    "refused": "is `streamret serve` running there? check --server",
    "dns": "check the host name in --server",
    "tls": "the server may not use TLS: drop --tls/--ca-cert, or pass --ca-cert with the CA that signed its "
           "certificate",
    "other": "check --server, and that the server is up",
}


def _one_line(e: Exception, args: argparse.Namespace) -> ConnectionError:
    """A client-side failure as one line for `streamret` to print (exit code 2)."""
    import grpc

    from streamret.client import ChunkError, RoleIgnored, ServerUnreachable

    if isinstance(e, ServerUnreachable):
        hint = _HINTS.get(e.kind, _HINTS["other"])
        return ConnectionError(f"{e}; {hint}; --connect-timeout-s waits longer")
    if isinstance(e, grpc.RpcError):
        details = " ".join((e.details() or "").split())
        hint = {grpc.StatusCode.UNAUTHENTICATED: "; pass --token (or set STREAMRET_TOKEN)",
                grpc.StatusCode.PERMISSION_DENIED: "; this token may not do that: ask for a write token"}
        return ConnectionError(f"the server at {args.server} answered {e.code().name}: {details}"
                               f"{hint.get(e.code(), '')}")
    if isinstance(e, RoleIgnored):
        return ConnectionError(f"{str(e).partition('. The answer')[0]}; drop --role for the query embedding")
    hint = "; lower --chunk-bytes" if isinstance(e, ChunkError) and "limit" in e.ack.error_message else ""
    return ConnectionError(" ".join(str(e).split()) + hint)


def _chunks(f, size: int):
    while block := f.read(size):
        yield block


def run(args: argparse.Namespace) -> int:
    # gRPC's own log would add lines to stderr (e.g. one per failed TLS handshake); errors come as one line here
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    import grpc

    from streamret.client import ChunkError, ResumeError, RetryPolicy, RoleIgnored

    if args.chunk_bytes < 1:
        raise ValueError(f"--chunk-bytes must be >= 1, got {args.chunk_bytes}")
    for flag in ("connect_timeout_s", "retry_timeout_s", "progress_every_s"):
        if not getattr(args, flag) > 0:
            raise ValueError(f"--{flag.replace('_', '-')} must be > 0 seconds, got {getattr(args, flag)}")
    retry = RetryPolicy(timeout_s=args.retry_timeout_s, connect_timeout_s=args.connect_timeout_s)
    try:
        return _run(args, retry)
    except (grpc.RpcError, ChunkError, ResumeError, RoleIgnored) as e:
        raise _one_line(e, args) from e


def _run(args: argparse.Namespace, retry: RetryPolicy) -> int:
    import json
    from pathlib import Path

    import numpy as np

    from streamret.client import Client
    from streamret.progress import ByteProgress
    from streamret.textcheck import check_file

    stdin = args.file == "-"
    path = Path(args.file)
    if not stdin:
        if path.is_dir():
            raise IsADirectoryError(f"{args.file} is a directory; stream one file (`streamret embed` reads a "
                                    "folder of Parquet files)")
        if not path.exists():
            raise FileNotFoundError(f"no such file: {args.file}")
        check_file(path)  # before connecting: an empty or non-UTF-8 file is refused with nothing sent
    stream_id = args.stream_id or ("stdin" if stdin else path.name)
    root = Path(args.ca_cert).read_bytes() if args.ca_cert else None
    if (args.client_cert is None) != (args.client_key is None):
        raise ValueError("mutual TLS needs both --client-cert and --client-key")
    cert = Path(args.client_cert).read_bytes() if args.client_cert else None
    key = Path(args.client_key).read_bytes() if args.client_key else None

    with Client(args.server, token=args.token, tls=args.tls or root is not None or cert is not None,
                root_certificates=root, client_cert=cert, client_key=key, retry=retry) as client:
        first = client.open(stream_id).applied_seq + 1
        sizes: list[int] = []
        counted = [first - 1]
        bar = ByteProgress(stream_id, None if stdin else path.stat().st_size,
                           enabled=not (args.json or args.no_progress), every_s=args.progress_every_s)

        def on_ack(ack) -> None:
            while counted[0] < ack.seq and counted[0] - first + 1 < len(sizes):
                counted[0] += 1
                bar.update(sizes[counted[0] - first])

        def chunks():
            with (sys.stdin.buffer if stdin else path.open("rb")) as f:
                for block in _chunks(f, args.chunk_bytes):
                    sizes.append(len(block))
                    yield block

        try:
            last = client.stream(stream_id, chunks(), on_ack=on_ack)
        except BaseException:
            bar.close(leave=False)  # clear the bar: the error is the one line left on stderr
            raise
        bar.close()
        if args.keep:
            emb = client.embedding(stream_id, role=args.role)
            summary = client.summarize(stream_id, max_segments=args.segments)
        else:
            closed = client.close_stream(stream_id, max_segments=args.segments, role=args.role)
            emb, summary = closed.embedding, closed.summary

    values = np.asarray(emb.values, dtype=np.float32)
    segments = [{"text": s.text, "start_byte": s.start_byte, "end_byte": s.end_byte, "score": round(s.score, 4)}
                for s in summary.segments[: args.segments]]
    if args.json:
        print(json.dumps({"stream_id": stream_id, "applied_seq": emb.applied_seq, "tokens": emb.tokens,
                          "durable_seq": last.durable_seq if last else 0, "embedding": values.tolist(),
                          "role": args.role, "summary": segments, "kept": args.keep}))
        return 0
    head = ", ".join(f"{v:+.4f}" for v in values[:8]) + (", ..." if values.size > 8 else "")
    print(f"stream     {stream_id}: {emb.tokens:,} tokens, applied_seq {emb.applied_seq}, "
          f"{'kept open' if args.keep else 'closed'}")
    print(f"embedding  dim {values.size}, norm {np.linalg.norm(values):.4f}, role {args.role}: [{head}]")
    print("summary")
    for s in segments:
        text = " ".join(s["text"].split())
        print(f"  [{s['start_byte']}:{s['end_byte']}] {s['score']:.3f}  {text[:200]}")
    return 0
