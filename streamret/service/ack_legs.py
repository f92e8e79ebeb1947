"""Where an Append chunk's ack time goes: per-chunk stamps of every stage, joined into legs (benches only).

Each stage that a chunk passes is stamped with time.monotonic(), on Linux CLOCK_MONOTONIC: one clock for every
process of the host, so the client processes', the server's and the engine processes' stamps of one chunk line up.
Stages, in the order a chunk passes them:

  client_due       the load's schedule said send (at a fixed rate; else it is client_sent)
  client_sent      the client wrote the request
  server_read      the Append handler's context.read() returned it (StreamRetServicer.recent_acks)
  pipe_sent        ShardedEngine's outbox wrote it to its engine process's pipe (engine processes only)
  engine_accepted  the engine took it (its recent_items: a chunk's accepted, cutting, cut, queued and applied times)
  engine_cutting   a tokenize thread began the batch that holds it (the wait before: for a free thread, or to join)
  engine_cut       that batch's call to the tokenizer (process) and its layouts are done (after: its batch group,
                   then the engine lock to queue it)
  engine_queued    tokenized: in its stream's queue for a step
  engine_applied   its step is booked: the ack is made
  server_answered  the ack came back through the pipe to ShardedEngine's reader thread (engine processes only)
  ack_writing      the handler began the ack's context.write() (after the call's earlier acks were written: gRPC
                   takes one message of a call at a time)
  ack_written      that write returned (gRPC's completion reached the event loop)
  client_received  the client read the ack

A leg is the time between two consecutive stages that were stamped (without engine processes, server_read ->
engine_accepted is one leg). Every stamp but the last is made before the next stage can begin, so those legs are
never negative; client_received may come before ack_written (the client can read the ack before the server's
write call returns to the handler), not before ack_writing.

Stamps are keyed by (client stream id, seq): the engine's stream ids ("<tenant>\\x1f<id>") are read as the client's
id, so the join assumes one tenant per stream id, as the benches have. Each stamper keeps only its last few
thousand chunks: the chunks joined are those that every stage still holds.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from .auth import client_id, tenant_of

STAGES = ("client_due", "client_sent", "server_read", "pipe_sent", "engine_accepted", "engine_cutting", "engine_cut",
          "engine_queued", "engine_applied", "server_answered", "ack_writing", "ack_written", "client_received")
Stamp = tuple[str, int, float]  # (stream id, seq, time.monotonic())


def engine_stages(recent_items: Iterable[tuple]) -> dict[str, list[Stamp]]:
    """An engine's stats()["recent_items"] (applied at, ms accepted -> queued, ms queued -> applied, stream id,
    seq, ms accepted -> cutting, ms cutting -> cut; the last two None for an item not cut in the tokenize stage) as
    stamps of the engine_accepted, engine_cutting, engine_cut, engine_queued and engine_applied stages."""
    names = ("engine_accepted", "engine_cutting", "engine_cut", "engine_queued", "engine_applied")
    out: dict[str, list[Stamp]] = {name: [] for name in names}
    for applied, tokenize_ms, queued_ms, stream_id, seq, wait_ms, cut_ms in recent_items:
        if seq is None:  # a flush without data: no chunk of a client
            continue
        queued = applied - queued_ms / 1e3
        accepted = queued - tokenize_ms / 1e3
        out["engine_accepted"].append((stream_id, seq, accepted))
        if wait_ms is not None:
            out["engine_cutting"].append((stream_id, seq, accepted + wait_ms / 1e3))
            out["engine_cut"].append((stream_id, seq, accepted + (wait_ms + cut_ms) / 1e3))
        out["engine_queued"].append((stream_id, seq, queued))
        out["engine_applied"].append((stream_id, seq, applied))
    return out


def _by_chunk(stamps: Iterable[Stamp]) -> dict[tuple[str, int], float]:
    out = {}
    for stream_id, seq, t in stamps:
        out[(stream_id if tenant_of(stream_id) is None else client_id(stream_id), seq)] = t  # (resent: the last)
    return out


def chunk_legs(stamps: dict[str, Iterable[Stamp]]) -> tuple[list[str], list[tuple[str, int]], np.ndarray]:
    """(stages present, chunks, times [chunk, stage]) for the chunks stamped at every stage that has stamps;
    stages are given by name (STAGES), unknown names raise."""
    unknown = set(stamps) - set(STAGES)
    if unknown:
        raise ValueError(f"unknown ack stages {sorted(unknown)}; the stages are {', '.join(STAGES)}")
    stages = [s for s in STAGES if stamps.get(s)]
    tables = [_by_chunk(stamps[s]) for s in stages]
    if not tables:
        return stages, [], np.zeros((0, 0))
    keys = sorted(set(tables[0]).intersection(*tables[1:]))
    times = np.array([[table[k] for table in tables] for k in keys], dtype=np.float64).reshape(len(keys), len(stages))
    return stages, keys, times


def summarize_legs(stamps: dict[str, Iterable[Stamp]], slowest: float = 0.01,
                   stalls: dict[str, list[tuple[float, float]]] | None = None) -> dict:
    """p50 / p99 / max ms of every leg over the chunks joined, and for the `slowest` share of them (by the ack
    latency as a client sees it: from client_sent, else the first stage, to the last): how many of them each leg
    after that dominates (is the longest of), and each leg's mean ms there. stalls: intervals (start, seconds) by
    kind (e.g. the server's garbage collections): also the mean ms of each kind within the slowest chunks' time."""
    stages, keys, times = chunk_legs(stamps)
    if len(keys) == 0 or len(stages) < 2:
        return {"stages": stages, "chunks": len(keys)}
    names = [f"{a}->{b}" for a, b in zip(stages, stages[1:])]

    def ms(x: float) -> float:
        return round(float(x), 2)

    legs = 1e3 * np.diff(times, axis=1)
    first = stages.index("client_sent") if "client_sent" in stages else 0  # (client_due: the load's own lag)
    total = 1e3 * (times[:, -1] - times[:, first])
    n_slow = max(1, int(round(slowest * len(keys))))
    slow = np.argsort(total)[-n_slow:]
    dominant = first + np.argmax(legs[slow, first:], axis=1)
    overlapping = {}
    for kind, intervals in (stalls or {}).items():
        span = np.array(intervals, dtype=np.float64).reshape(-1, 2)
        starts, ends = span[:, 0], span[:, 0] + span[:, 1]
        inside = [np.clip(np.minimum(ends, times[i, -1]) - np.maximum(starts, times[i, first]), 0, None).sum()
                  for i in slow]
        overlapping[kind] = ms(1e3 * np.mean(inside))

    return {
        "stages": stages, "chunks": len(keys),
        # means too: they add up to the mean total, which Little's law ties to the chunks in flight and the rate
        "total_ms": {"p50": ms(np.percentile(total, 50)), "p99": ms(np.percentile(total, 99)), "max": ms(total.max()),
                     "mean": ms(total.mean())},
        "legs_ms": {name: {"p50": ms(np.percentile(legs[:, i], 50)), "mean": ms(legs[:, i].mean()),
                           "p99": ms(np.percentile(legs[:, i], 99)),
                           "max": ms(legs[:, i].max()), "negative": int((legs[:, i] < 0).sum())}
                    for i, name in enumerate(names)},
        "slowest": {"share": slowest, "chunks": n_slow, "total_ms_from": ms(total[slow].min()),
                    "dominated_by": {names[i]: int(n) for i, n in zip(*np.unique(dominant, return_counts=True))},
                    "mean_ms": {name: ms(legs[slow, i].mean()) for i, name in enumerate(names)},
                    "stalls_within_ms": overlapping,
                    # when they started (s after the first chunk joined) and which chunk of their stream they were
                    "started_s": {q: ms(np.percentile(times[slow, first] - times[:, first].min(), p))
                                  for q, p in (("min", 0), ("p50", 50), ("max", 100))},
                    "seq": {q: int(np.percentile([keys[i][1] for i in slow], p))
                            for q, p in (("min", 0), ("p50", 50), ("max", 100))}},
    }


def format_legs(summary: dict) -> str:
    """summarize_legs's result as a few lines of text."""
    if "legs_ms" not in summary:
        return f"  (no chunk was stamped at every stage: {summary.get('chunks', 0)} joined)"
    slow = summary["slowest"]
    overlaps = ", ".join(f"{kind} {x} ms" for kind, x in slow["stalls_within_ms"].items())
    total = summary["total_ms"]
    lines = [f"  {summary['chunks']} chunks joined; ack latency: p50 {total['p50']} ms, p99 {total['p99']} ms, "
             f"max {total['max']} ms, mean {total['mean']} ms",
             f"  {'leg':34s} {'p50 ms':>8s} {'mean ms':>8s} {'p99 ms':>8s} {'max ms':>8s}  slowest {slow['chunks']} "
             f"(>= {slow['total_ms_from']} ms): mean ms, chunks it dominates"
             + (f"; within their time, mean: {overlaps}" if overlaps else "")]
    started, seq = slow["started_s"], slow["seq"]
    lines.append(f"  the slowest were sent {started['min']}-{started['max']} s after the first chunk joined (p50 "
                 f"{started['p50']}), chunks {seq['min']}-{seq['max']} of their streams (p50 {seq['p50']})")
    for name, q in summary["legs_ms"].items():
        lines.append(f"  {name:34s} {q['p50']:8.2f} {q['mean']:8.2f} {q['p99']:8.2f} {q['max']:8.2f}  "
                     f"{slow['mean_ms'][name]:8.2f} {slow['dominated_by'].get(name, 0):5d}")
    return "\n".join(lines)
