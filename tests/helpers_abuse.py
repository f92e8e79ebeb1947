"""One tenant abuses a served process while another measures how long its one-chunk appends take.

The driver of tests/test_abuse.py (CI-sized) and bench/abuse.py (long runs). Each abuse runs in its own
threads as tenant "abuser" until `stop` is set; the victim ("victim") opens a fresh Append call every
`every_s` with one chunk of a new stream and times it until its ack. The server's peak RSS is the kernel's
(VmHWM, reset as the abuse starts, read as it stops); its RSS after is taken once the abuse's calls ended.

Abuses:
  events      AppendEvents tables of `event_rows` tiny rows over 1,000 streams, each call given up by its
              client after `deadline_s` (the server must stop queueing its rows)
  embed       EmbedTable of `embed_rows` documents, given up after `deadline_s` (the server must stop, and
              must not write a record per row)
  idle        `idle_calls` Append calls opened and never sent a chunk
  busy        `busy_streams` streams appending 256-byte chunks as fast as acked, `busy_window` unacked each
  imports     ImportState of an almost message-sized record that is not one, over and over
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

import grpc
import pyarrow as pa

from streamret.batch.arrow_table import table_to_ipc
from streamret.service.proto_gen import streamret_pb2 as pb
from streamret.service.proto_gen import streamret_pb2_grpc as pb_grpc

ABUSES = ("events", "embed", "idle", "busy", "imports")
VICTIM_TEXT = "The harbour froze early that year; the boats stayed in. "


@dataclass
class AbuseConfig:
    abuses: tuple[str, ...] = ABUSES
    seconds: float = 8.0  # how long the victim measures while the abuse runs
    every_s: float = 0.25
    event_rows: int = 300_000
    embed_rows: int = 20_000
    deadline_s: float = 1.5
    idle_calls: int = 400
    busy_streams: int = 100
    busy_window: int = 4  # chunks a busy stream has sent and not seen acked (the client's default window)
    import_bytes: int = 8 << 20
    settle_s: float = 1.0  # after the abuse stops, before rss_after is taken


@dataclass
class AbuseReport:
    latencies_s: list[float] = field(default_factory=list)  # the victim's one-chunk appends, in order
    victim_errors: list[str] = field(default_factory=list)
    outcomes: Counter = field(default_factory=Counter)  # (abuse, status name) -> calls
    rss_before: int = 0
    rss_peak: int = 0  # the server's peak RSS from the abuse's start to its end
    rss_after: int = 0  # AbuseConfig.settle_s after the abuse's calls ended

    @property
    def worst_s(self) -> float:
        return max(self.latencies_s, default=float("inf"))

    def percentile(self, q: float) -> float:
        xs = sorted(self.latencies_s)
        return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("inf")

    def describe(self) -> str:
        mib = 1 << 20
        return (f"victim: {len(self.latencies_s)} one-chunk appends, p50 {self.percentile(0.5) * 1e3:.0f} ms, "
                f"p99 {self.percentile(0.99) * 1e3:.0f} ms, worst {self.worst_s * 1e3:.0f} ms, "
                f"{len(self.victim_errors)} errors; server RSS {self.rss_before / mib:.0f} MiB before, "
                f"peak {self.rss_peak / mib:.0f}, after {self.rss_after / mib:.0f}; abuser calls "
                + ", ".join(f"{a} {s}: {n}" for (a, s), n in sorted(self.outcomes.items())))


class ServedProcess(Protocol):  # helpers_server.ServeProcess
    target: str

    def rss_bytes(self) -> int: ...
    def reset_peak_rss(self) -> None: ...
    def peak_rss_bytes(self) -> int: ...


class _Tenant:
    def __init__(self, target: str, name: str):
        self.channel = grpc.insecure_channel(target, options=[("grpc.max_send_message_length", 256 << 20),
                                                              ("grpc.max_receive_message_length", 256 << 20)])
        self.streams = pb_grpc.StreamRetStub(self.channel)
        self.batch = pb_grpc.BatchStub(self.channel)
        self.md = (("authorization", f"Bearer tok-{name}"),)


def _status(call: Callable[[], object]) -> str:
    try:
        call()
        return "OK"
    except grpc.RpcError as e:
        return e.code().name


def _events_payload(rows: int) -> pb.AppendEventsRequest:
    streams = 1000
    ids = [f"ev-{i % streams}" for i in range(rows)]
    seqs = [i // streams + 1 for i in range(rows)]
    return pb.AppendEventsRequest(arrow_ipc=table_to_ipc(pa.table({"stream_id": ids, "seq": seqs,
                                                                    "text": ["e "] * rows})))


def _embed_payload(rows: int) -> pb.EmbedTableRequest:
    text = "Small rows cost the server a stream each. " * 4
    return pb.EmbedTableRequest(arrow_ipc=table_to_ipc(pa.table({"id": list(range(rows)), "text": [text] * rows})))


def _abuse(kind: str, cfg: AbuseConfig, target: str, stop: threading.Event, report: AbuseReport,
           lock: threading.Lock) -> list[threading.Thread]:
    t = _Tenant(target, "abuser")

    def count(status: str) -> None:
        with lock:
            report.outcomes[(kind, status)] += 1

    def loop(body: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            while not stop.is_set():
                body()
        return run

    if kind == "events":
        payload = _events_payload(cfg.event_rows)
        run = loop(lambda: count(_status(lambda: list(t.batch.AppendEvents(
            iter([payload]), metadata=t.md, timeout=cfg.deadline_s)))))
        return [threading.Thread(target=run, daemon=True)]
    if kind == "embed":
        payload = _embed_payload(cfg.embed_rows)
        run = loop(lambda: count(_status(lambda: t.batch.EmbedTable(payload, metadata=t.md, timeout=cfg.deadline_s))))
        return [threading.Thread(target=run, daemon=True)]
    if kind == "imports":
        request = pb.ImportStateRequest(stream_id="imp", state=pb.ExportStateResponse(data=b"\x07" * cfg.import_bytes))
        run = loop(lambda: count(_status(lambda: t.streams.ImportState(request, metadata=t.md, timeout=30))))
        return [threading.Thread(target=run, daemon=True)]
    if kind == "idle":
        def idle() -> None:
            def nothing() -> Iterator[pb.AppendRequest]:
                stop.wait()
                return
                yield
            calls = [t.streams.Append(nothing(), metadata=t.md) for _ in range(cfg.idle_calls)]
            for c in calls:  # the refused ones end at once; the others when `stop` ends their requests
                count(_status(lambda c=c: list(c)))
        return [threading.Thread(target=idle, daemon=True)]
    if kind == "busy":
        run_id = time.monotonic_ns()

        def busy(i: int) -> None:
            chunk = (f"busy stream {i} says: " + "lorem ipsum " * 30)[:256]
            window = threading.Semaphore(cfg.busy_window)  # chunks sent and not acked, as streamret.client keeps

            def chunks() -> Iterator[pb.AppendRequest]:
                for seq in itertools.count(1):
                    while not window.acquire(timeout=0.1):
                        if stop.is_set():
                            return
                    if stop.is_set():
                        return
                    yield pb.AppendRequest(stream_id=f"busy-{run_id}-{i}", seq=seq, text=chunk)

            def drain() -> None:
                for _ in t.streams.Append(chunks(), metadata=t.md):
                    window.release()
            count(_status(drain))
        return [threading.Thread(target=busy, args=(i,), daemon=True) for i in range(cfg.busy_streams)]
    raise ValueError(f"unknown abuse {kind!r}; use some of {ABUSES}")


def run_abuse(server: ServedProcess, cfg: AbuseConfig) -> AbuseReport:
    """Start every abuse of cfg, measure the victim for cfg.seconds, stop the abuse; the report."""
    report, lock, stop = AbuseReport(), threading.Lock(), threading.Event()
    target = server.target
    victim = _Tenant(target, "victim")
    report.rss_before = server.rss_bytes()
    server.reset_peak_rss()
    threads = [th for kind in cfg.abuses for th in _abuse(kind, cfg, target, stop, report, lock)]
    for th in threads:
        th.start()
    time.sleep(1.0)  # let the abuse take hold
    try:
        began = time.monotonic()
        for n in itertools.count():  # cfg.seconds, and at least 3 appends (within 4 x cfg.seconds)
            elapsed = time.monotonic() - began
            if (elapsed >= cfg.seconds and n >= 3) or elapsed >= 4 * cfg.seconds:
                break
            sid = f"v-{n}-{time.monotonic_ns()}"
            started = time.monotonic()
            try:
                acks = list(victim.streams.Append(iter([pb.AppendRequest(stream_id=sid, seq=1, text=VICTIM_TEXT)]),
                                                  metadata=victim.md, timeout=60))
                if len(acks) != 1 or acks[0].error_code:
                    report.victim_errors.append(f"ack {acks[0].error_code}: {acks[0].error_message}"
                                                if acks else "no ack")
                report.latencies_s.append(time.monotonic() - started)
            except grpc.RpcError as e:
                report.victim_errors.append(f"{e.code().name}: {e.details()}")
            time.sleep(max(0.0, cfg.every_s - (time.monotonic() - started)))
    finally:
        stop.set()
        for th in threads:
            th.join(60)
        report.rss_peak = server.peak_rss_bytes()
    time.sleep(cfg.settle_s)
    report.rss_after = server.rss_bytes()
    return report
