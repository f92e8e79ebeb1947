"""Service benchmark: gRPC load from separate processes against one server, next to the engine alone.

    python bench/service.py --model random:tiny --device cpu --streams 64 --chunks 16 --chunk-bytes 1024
    source bench/device_env.sh; python3 bench/service.py --device cuda --model random:small \\
        --streams 1000 --chunks 32 --chunk-bytes 2048 --procs 8 --out $OUT/service.json

Phases, in one run, on one engine (fresh stream ids each time):
  engine     the workload driven in-process through Engine.submit_append: the engine's own tokens/s
  saturate   the same workload through the gRPC server, load from --procs client processes, each stream
             one Append call with --window chunks in flight: the service's tokens/s, and its ratio to
             the engine's (the service overhead is 1 - ratio)
  half       every stream sends at a fixed rate adding up to --load-fraction (default 0.5) of the
             saturation rate: ack latency p50/p99 at that load. The schedule starts once a load process's
             streams are open and their Append calls set up (the server's initial metadata came back): the
             setup is timed on its own (call_setup_*_ms), not in the first chunk's ack
Each phase reports streams held, tokens, tokens/s and (service phases) ack latency from writing a
chunk to reading its ack, "ack_legs": that time split into legs between stamps of the client, the server
and the engine (streamret/service/ack_legs.py), with the leg that dominates the slowest 1% of chunks, and
the server's garbage-collector pauses and event-loop stalls (LoopLag). Results print as JSON and go to --out.
A phase whose streams fail raises naming the failure that happened first (stream, chunk, call, seconds after
the load started, status), then how many more by call and error; a failed load process stops its other
streams, which are not counted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import platform
import queue
import random
import sys
import threading
import time
from collections import Counter, deque
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from text_file import read_text_file  # noqa: E402  (bench/text_file.py)

WORDS = ("stream retention state chunk token model summary embedding server client latency batch the a of "
         "and to in is that for it with as on be by this an are or from at which").split()


TEXT = b""  # real text for chunks_of (see use_text); empty: synthetic words (make_text)


def use_text(path: str | None) -> None:
    """Cut every stream's chunks from this file's bytes instead of synthetic words (None: back to those); a .gz file
    is read decompressed (bench/text_file.py, the benches' one reader of a --text file)."""
    global TEXT
    TEXT = read_text_file(path) if path else b""


def make_text(seed: int, n_bytes: int) -> bytes:
    rng = random.Random(seed)
    out, size = [], 0
    while size < n_bytes:
        w = rng.choice(WORDS)
        out.append(w)
        size += len(w) + 1
    return (" ".join(out) + " ").encode()[:n_bytes]


def chunks_of(stream: int, n_chunks: int, chunk_bytes: int) -> list[bytes]:
    """A stream's chunks: synthetic words seeded by the stream, or, after use_text, the stream's own
    stretch of the text (stream s starts at byte s * n_chunks * chunk_bytes, wrapping around)."""
    need = n_chunks * chunk_bytes
    if TEXT:
        pos, parts = stream * need % len(TEXT), []
        while need > 0:
            parts.append(TEXT[pos : pos + need])
            need -= len(parts[-1])
            pos = 0
        data = b"".join(parts)
    else:
        data = make_text(stream, need)
    return [data[i * chunk_bytes : (i + 1) * chunk_bytes] for i in range(n_chunks)]


def percentile_ms(latencies: list[float], q: float) -> float | None:
    return round(float(np.percentile(latencies, q)) * 1e3, 3) if latencies else None


# ------------------------------------------------------------------------------------------------
# phase 1: the engine alone


def _outcome(fut) -> tuple:
    """A done Future as submit_append_to's arrivals give a chunk's outcome: (ack, None) or (None, error)."""
    error = fut.exception()
    return (None, error) if error is not None else (fut.result(), None)


def run_engine(engine, args, tag: str, first_stream: int = 0, stamps: bool = False) -> dict:
    """Every stream keeps --window chunks in flight, as the gRPC clients do. first_stream: the text of stream
    s is that of stream first_stream + s (several engines then read different text). stamps: the result also
    holds "chunk_stamps", each chunk's client_sent and client_received stages (streamret/service/ack_legs.py)."""
    from streamret.errors import TooBusy

    ids = [f"{tag}-{s}" for s in range(args.streams)]
    for sid in ids:
        engine.open(sid, create_if_missing=True)
    chunks = {sid: chunks_of(first_stream + s, args.chunks, args.chunk_bytes) for s, sid in enumerate(ids)}
    next_seq = dict.fromkeys(ids, 1)
    in_flight = dict.fromkeys(ids, 0)
    tokens = dict.fromkeys(ids, 0)
    # answered chunks, a batch at a time: [((stream, seq), (ack, None) or (None, error))], when and on which
    # clock. With engine processes the chunks go through `submit_append_to` (the service's path): acks come in
    # batches with no Future per chunk and a sending pass's chunks cross to each engine in one message, so that
    # this thread, which alone drives every engine, is not the bound at 1,024 streams (session 25: with a
    # Future per chunk, an ack took 26-76 ms p50 to become the stream's next chunk there)
    finished: queue.SimpleQueue = queue.SimpleQueue()
    submit_to = getattr(engine, "submit_append_to", None)

    def arrive(arrivals: list) -> None:
        finished.put((arrivals, time.perf_counter(), time.monotonic()))
    # streams that may send now: all at first, then those an ack freed or a full queue held back (a pass over
    # every stream per ack would cost this thread, which shares the GIL with the engine, O(streams) each time)
    ready, busy_wait = list(ids), []
    open_streams = len(ids)
    # the load's own legs: from an ack's arrival (the Future's callback, or arrive) to the next chunk of that
    # stream submitted, and a submit call's own time (with engine processes, the outbox; in this process, the
    # engine lock)
    acked_at: dict[str, deque] = {sid: deque() for sid in ids}
    turnaround, submit_s = [], []
    # each chunk's stamps on the host's monotonic clock (ack_legs.py), joined with the engine's by the caller
    sent_stamps, acked_stamps = [], []
    start = time.perf_counter()
    while open_streams:
        for sid in ready:
            while next_seq[sid] <= args.chunks and in_flight[sid] < args.window:
                seq = next_seq[sid]
                # (held chunks cross at the pass's release_held: their client_sent -> pipe_sent leg holds that wait)
                t0, sent_mono = time.perf_counter(), time.monotonic()
                try:
                    if submit_to is None:
                        engine.submit_append(sid, seq, chunks[sid][seq - 1], flush=seq == args.chunks) \
                            .add_done_callback(lambda f, key=(sid, seq): arrive([(key, _outcome(f))]))
                    else:
                        submit_to(arrive, (sid, seq), sid, seq, chunks[sid][seq - 1], flush=seq == args.chunks,
                                  hold=True)
                except TooBusy:
                    busy_wait.append(sid)
                    break
                t1 = time.perf_counter()
                if stamps:
                    sent_stamps.append((sid, seq, sent_mono))
                submit_s.append(t1 - t0)
                if acked_at[sid]:
                    turnaround.append(t1 - acked_at[sid].popleft())
                next_seq[sid] += 1
                in_flight[sid] += 1
        if submit_to is not None:
            engine.release_held()
        ready, busy_wait = busy_wait, []
        try:
            batch = finished.get(timeout=0.01)
        except queue.Empty:
            continue
        acked = set()
        while True:
            arrivals, done_at, done_mono = batch
            for (sid, seq), (ack, error) in arrivals:
                if error is not None:
                    raise RuntimeError(f"chunk {seq} of stream {sid} failed in the engine: {error!r}") from error
                if stamps:
                    acked_stamps.append((sid, seq, done_mono))
                if next_seq[sid] <= args.chunks:
                    acked_at[sid].append(done_at)
                in_flight[sid] -= 1
                tokens[sid] = max(tokens[sid], ack.tokens)
                acked.add(sid)
                if next_seq[sid] > args.chunks and in_flight[sid] == 0:
                    open_streams -= 1
            try:
                batch = finished.get_nowait()
            except queue.Empty:
                break
        ready = list(dict.fromkeys([*ready, *acked]))
    wall = time.perf_counter() - start
    for sid in ids:
        engine.close(sid)
    total = sum(tokens.values())

    def ms(values: list[float]) -> dict:
        return {f"p{q}": round(1e3 * float(np.percentile(values, q)), 3) for q in (50, 99)} if values else {}

    return {"streams": args.streams, "tokens": total, "seconds": round(wall, 3),
            "tokens_per_s": round(total / wall, 1),
            "load_legs_ms": {"ack_to_next_sent": ms(turnaround), "submit_call": ms(submit_s)},
            **({"chunk_stamps": {"client_sent": sent_stamps, "client_received": acked_stamps}} if stamps else {})}


# ------------------------------------------------------------------------------------------------
# phases 2, 3: load processes against the server


class StreamFailed(Exception):
    """A stream's failure in a load process, as a dict that pickles (`record`): when (time.time()), its stream, the
    chunk (the first one not acked; 0 before any was sent), the call ("OpenStream", "Append" or "Append ack", an
    ack that carried an error) and the error (its gRPC status and details, when it has them)."""

    def __init__(self, sid: str, seq: int, call: str, error: BaseException | str):
        self.record = {"at": time.time(), "stream": sid, "seq": seq, "call": call, "error": describe_error(error)}
        super().__init__(f"{sid} chunk {seq}, {call}: {self.record['error']}")


class LoadFailed(Exception):
    """A load process's streams failed: their StreamFailed records, earliest first."""

    def __init__(self, records: list[dict]):
        self.records = sorted(records, key=lambda r: r["at"])
        super().__init__(f"{len(records)} stream(s) failed, the first: {self.records[0]}")


def describe_error(error: BaseException | str) -> str:
    if isinstance(error, str):
        return error
    code, details = getattr(error, "code", None), getattr(error, "details", None)
    if callable(code) and callable(details):  # a grpc.RpcError: its status, not its multi-line repr
        return f"{type(error).__name__} {code().name} {details()!r}"
    return f"{type(error).__name__}: {error}"


async def _drive_stream(stub, sid: str, chunks: list[bytes], window: int, rate: float | None,
                        t0: float, latencies: list[tuple[float, int]], stamps: list[tuple], call=None) -> int:
    """One stream's Append call (at a fixed rate the stream is open and its call started already: _load).
    latencies gets (seconds from writing a chunk to reading its ack, seq); stamps (sid, seq, due, sent, received),
    time.monotonic (the clock of the server's stamps); due: when the schedule said send (at a fixed rate; else
    when it was sent). Any failure raises StreamFailed."""
    from streamret.service.proto_gen import streamret_pb2 as pb

    if call is None:
        try:
            await open_stream(stub, sid)
        except Exception as e:  # noqa: BLE001  (said with the stream it happened to)
            raise StreamFailed(sid, 0, "OpenStream", e) from None
        call = stub.Append()
    room = asyncio.Semaphore(window)
    due_at: list[float] = []
    sent_at: list[float] = []
    acked = 0

    async def send():
        for i, data in enumerate(chunks):
            await room.acquire()
            if rate:  # a fixed schedule, staggered per stream (latency counts from the write, the lag before it
                due = t0 + (i + random.random()) / rate  # is the client_due -> client_sent leg)
                await asyncio.sleep(max(0.0, due - time.monotonic()))
            sent_at.append(time.monotonic())
            due_at.append(due if rate else sent_at[-1])
            await call.write(pb.AppendRequest(stream_id=sid, seq=i + 1, data=data, flush=i == len(chunks) - 1))
        await call.done_writing()

    sender = asyncio.create_task(send())
    tokens = 0
    try:
        async for ack in call:
            received = time.monotonic()
            latencies.append((received - sent_at[ack.seq - 1], ack.seq))
            stamps.append((sid, ack.seq, due_at[ack.seq - 1], sent_at[ack.seq - 1], received))
            room.release()
            if ack.error_code:
                raise StreamFailed(sid, ack.seq, "Append ack", f"error {ack.error_code}: {ack.error_message}")
            acked, tokens = ack.seq, ack.tokens
        await sender
    except StreamFailed:
        raise
    except Exception as e:  # noqa: BLE001  (a read's or a write's error ends the call: said with its stream)
        raise StreamFailed(sid, acked + 1 if sent_at else 0, "Append", e) from None
    finally:
        sender.cancel()
        if sender.done() and not sender.cancelled():
            sender.exception()  # (a write's error ends the read too, which reports it: not logged a second time)
    return tokens


async def open_stream(stub, sid: str) -> None:
    from streamret.service.proto_gen import streamret_pb2 as pb

    await stub.OpenStream(pb.OpenStreamRequest(stream_id=sid, create_if_missing=True))


async def start_call(stub, sid: str) -> tuple[object, float]:
    """Open the stream and start its Append call: (the call, seconds from starting it to the server's initial
    metadata, i.e. until the server's handler runs)."""
    try:
        await open_stream(stub, sid)
    except Exception as e:  # noqa: BLE001
        raise StreamFailed(sid, 0, "OpenStream", e) from None
    started = time.monotonic()
    call = stub.Append()
    try:
        await call.initial_metadata()
    except Exception as e:  # noqa: BLE001
        raise StreamFailed(sid, 0, "Append", e) from None
    return call, time.monotonic() - started


async def until_first_failure(coros: list) -> list:
    """Run the coroutines as tasks: their results, in order; or, once one fails, LoadFailed with the failures of
    every task that failed by itself, the others cancelled: a stream torn down after the first failure is no
    failure of its own, and the failure asyncio sees first need not be the first that happened."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    failed = [t for t in done if t.exception() is not None]
    if not failed:
        return [t.result() for t in tasks]
    for t in pending:
        t.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    failed += [t for t in pending if not t.cancelled() and t.exception() is not None]
    raise LoadFailed([e.record if isinstance(e := t.exception(), StreamFailed) else StreamFailed("?", 0, "?", e).record
                      for t in failed])


async def _load(target: str, stream_ids: list[str], args_d: dict, rate: float | None, start_at: float) -> dict:
    import grpc

    from streamret import gc_pauses
    from streamret.service.proto_gen import streamret_pb2_grpc as pb_grpc

    use_text(args_d.get("text_file"))
    gc_pauses.watch()  # a client's own collector pauses count in the latencies it measures
    # each channel a connection of its own (gRPC shares one per target unless told): with several front processes
    # on the port (streamret serve --front-procs) the kernel spreads connections, not calls, over them
    n = args_d.get("channels") or 1
    options = [("grpc.use_local_subchannel_pool", 1)] if n > 1 else None
    channels = [grpc.aio.insecure_channel(target, options=options) for _ in range(n)]
    try:
        stubs = [pb_grpc.StreamRetStub(channel) for channel in channels]
        await asyncio.sleep(max(0.0, start_at - time.time()))  # all processes start together
        latencies: list[tuple[float, int]] = []
        stamps: list[tuple] = []
        wall0, cpu0 = time.time(), time.process_time()  # (the same window as "seconds" and the host's samples)
        calls, setup = dict.fromkeys(stream_ids), []
        if rate:  # the schedule starts once this process's streams are open and their calls accepted: counted from
            # before, the first second's chunks were overdue and went at once (a burst at saturation), and a
            # stream's first chunk waited for its call to be accepted (the call's setup, timed on its own here)
            for sid, (call, seconds) in zip(stream_ids, await until_first_failure([
                    start_call(stubs[k % n], sid) for k, sid in enumerate(stream_ids)])):
                calls[sid] = call
                setup.append(seconds)
        # (made before the schedule starts: synthetic text takes this process a while)
        chunks = {sid: chunks_of(int(sid.rsplit("-", 1)[1]), args_d["chunks"], args_d["chunk_bytes"])
                  for sid in stream_ids}
        t0 = time.monotonic()
        tokens = await until_first_failure([
            _drive_stream(stubs[k % n], sid, chunks[sid], args_d["window"], rate, t0, latencies, stamps, calls[sid])
            for k, sid in enumerate(stream_ids)])
        return {"tokens": sum(tokens), "start": wall0, "end": time.time(), "latencies": latencies,
                "cpu_seconds": time.process_time() - cpu0,  # this load process's own CPU while it drove its streams
                "stamps": stamps, "call_setup": setup, **gc_pauses.pauses()}
    finally:
        for channel in channels:
            await channel.close()


def _load_process(target: str, stream_ids: list[str], args_d: dict, rate, start_at: float, out) -> None:
    try:
        out.put(asyncio.run(_load(target, stream_ids, args_d, rate, start_at)))
    except LoadFailed as e:
        out.put({"failures": e.records})
    except BaseException as e:  # noqa: BLE001  (reported to the parent, which otherwise waits for this forever)
        out.put({"failures": [StreamFailed("?", 0, "load process", e).record]})


def first_failures(results: list[dict], start_at: float) -> str:
    """The load processes' failures, the first that happened first: stream, chunk, call, seconds after the load
    started, error; then how many more, by call and error."""
    failures = sorted(((p, f) for p, r in enumerate(results) for f in r.get("failures", [])), key=lambda x: x[1]["at"])
    p, first = failures[0]
    chunk = f"chunk {first['seq']}" if first["seq"] else "before its first chunk"
    text = (f"first: stream {first['stream']} {chunk}, {first['call']}, "
            f"{first['at'] - start_at:.2f} s after the load started (load process {p}): {first['error']}")
    later = Counter(f"{f['call']}: {f['error']}" for _, f in failures[1:])
    if later:
        text += (f"; then {len(failures) - 1} more in {len({p for p, _ in failures})} load process(es) "
                 f"(the other streams of a failed process are stopped, not counted): {dict(later.most_common(5))}")
    return text


def run_service(target: str, args, tag: str, rate: float | None, server=None, host_sampler=None) -> dict:
    """The load against the server at `target` (rate: chunks per second per stream; None: saturation). server:
    the BackgroundServer serving it, in this process: the result then has "ack_legs" (ack_legs.summarize_legs).
    host_sampler: a function sampled when the load starts and once every load process has answered; the result
    then has "host_samples" (the two samples)."""
    ids = [f"{tag}-{s}" for s in range(args.streams)]
    args_d = {"chunks": args.chunks, "chunk_bytes": args.chunk_bytes, "window": args.window,
              "text_file": getattr(args, "text_file", None), "channels": getattr(args, "channels", 1)}
    lag = None
    if server is not None:
        from streamret import gc_pauses

        gc_pauses.watch()  # the server is this process: its collector's pauses hold up every ack it routes
        lag = LoopLag(server.loop)
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    started = time.monotonic()
    start_at = time.time() + 2.0 + 0.2 * args.procs  # time for the processes to import and connect
    procs = [ctx.Process(target=_load_process, args=(target, ids[p :: args.procs], args_d, rate, start_at, out))
             for p in range(args.procs)]
    for p in procs:
        p.start()
    host_samples = []
    if host_sampler is not None:  # once the processes start their load together (start_at)
        sampler = threading.Timer(max(0.0, start_at - time.time()), lambda: host_samples.append(host_sampler()))
        sampler.start()
    results = [out.get() for _ in procs]
    if host_sampler is not None:
        sampler.cancel()  # (a load that failed before it started: no samples, and no wait for start_at)
        sampler.join()
        if host_samples:
            host_samples.append(host_sampler())
    for p in procs:
        p.join()
    late = lag.stop() if lag is not None else []
    if any("failures" in r for r in results):
        raise RuntimeError(f"load processes failed: {first_failures(results, start_at)}")
    latencies = [x for r in results for x, _ in r["latencies"]]
    # the same without each stream's first chunk (its call's start: the server opens its tenant's view of it)
    later = [x for r in results for x, seq in r["latencies"] if seq > 1]
    setup = [x for r in results for x in r["call_setup"]]
    wall = max(r["end"] for r in results) - min(r["start"] for r in results)
    total = sum(r["tokens"] for r in results)
    return {"streams": args.streams, "procs": args.procs, "channels_per_proc": args_d["channels"], "tokens": total,
            "seconds": round(wall, 3),
            "tokens_per_s": round(total / wall, 1), "chunks": len(latencies),
            "chunk_rate_per_stream": rate, "ack_p50_ms": percentile_ms(latencies, 50),
            "ack_p99_ms": percentile_ms(latencies, 99), "ack_max_ms": percentile_ms(latencies, 100),
            "ack_p99_after_first_ms": percentile_ms(later, 99),
            # at a fixed rate: from starting a stream's Append call to the server's handler taking it (before the
            # schedule starts)
            **({f"call_setup_{q}_ms": percentile_ms(setup, p) for q, p in (("p50", 50), ("p99", 99), ("max", 100))}
               if setup else {}),
            # the load processes' own garbage-collector pauses (they delay the acks they time)
            "client_gc_pause_ms": round(1e3 * sum(r["gc_pause_seconds"] for r in results), 1),
            "client_cpu_seconds": round(sum(r.get("cpu_seconds", 0.0) for r in results), 3),
            **({"host_samples": host_samples} if len(host_samples) == 2 else {}),
            "client_gc_pause_max_ms": round(1e3 * max(r["gc_pause_max_seconds"] for r in results), 1),
            **(server_side(server, [x for r in results for x in r["stamps"]], started, late) if server else {})}


class LoopLag:
    """Wakes on the server's event loop every `every_s` and records how late each wakeup was: a long turn of the
    loop (many callbacks at once) or a pause of the whole process (the collector) shows as a late wakeup. Costs
    the loop a wakeup every every_s while it runs."""

    def __init__(self, loop: asyncio.AbstractEventLoop, every_s: float = 0.002):
        self.every_s, self.late = every_s, []  # (when it was due, seconds late), time.monotonic
        self._task = asyncio.run_coroutine_threadsafe(self._run(), loop)

    async def _run(self) -> None:
        while True:
            due = time.monotonic() + self.every_s
            await asyncio.sleep(self.every_s)
            self.late.append((due, time.monotonic() - due))

    def stop(self) -> list[tuple[float, float]]:
        self._task.cancel()
        return self.late


def server_side(server, client_stamps: list[tuple], since: float, late: list[tuple[float, float]]) -> dict:
    """What the server (in this process) says of a load that started at `since` (time.monotonic): its collector's
    pauses, its loop's late wakeups (LoopLag), and the acks' legs (streamret/service/ack_legs.py) from the clients'
    stamps (sid, seq, due, sent, received) and those that the server and its engine keep of their last chunks."""
    from streamret import gc_pauses
    from streamret.service.ack_legs import summarize_legs

    pauses = [(start, s, gen) for start, s, gen in gc_pauses.recent_pauses() if start >= since]
    gc = {"server_gc_collections": len(pauses), "server_gc_pause_ms": round(1e3 * sum(s for _, s, _ in pauses), 1),
          "server_gc_pause_max_ms": round(1e3 * max((s for _, s, _ in pauses), default=0.0), 1),
          "server_gc_collections_by_generation": {g: sum(1 for *_, x in pauses if x == g) for g in (0, 1, 2)}}
    stamps = server.server.recent_chunk_times()
    stamps["client_due"] = [(sid, seq, due) for sid, seq, due, _, _ in client_stamps]
    stamps["client_sent"] = [(sid, seq, sent) for sid, seq, _, sent, _ in client_stamps]
    stamps["client_received"] = [(sid, seq, received) for sid, seq, _, _, received in client_stamps]
    lateness = [s for _, s in late]
    loop = {"server_loop_late_ms": {"p50": percentile_ms(lateness, 50), "p99": percentile_ms(lateness, 99),
                                    "max": percentile_ms(lateness, 100), "wakeups": len(lateness)}}
    stalls = {"server_gc": [(start, s) for start, s, _ in pauses],
              "server_loop_late_5ms": [(due, s) for due, s in late if s > 0.005]}
    return {**gc, **loop, "ack_legs": summarize_legs(stamps, stalls=stalls)}


def step_summary(before: dict, after: dict) -> dict:
    """Engine steps during a phase, and the mean size of its last steps that ran tokens (the engine
    remembers 256 steps; steps without tokens, e.g. closing streams, are left out)."""
    steps = after["steps"] - before["steps"]
    sizes = list(zip(after.get("recent_step_tokens") or [], after.get("recent_step_batch_sizes") or []))
    window = [(t, n) for t, n in sizes[len(sizes) - min(steps, len(sizes)):] if t]
    if not window:
        return {"engine_steps": steps}
    return {"engine_steps": steps, "mean_step_tokens": round(float(np.mean([t for t, _ in window])), 1),
            "mean_step_streams": round(float(np.mean([n for _, n in window])), 1)}


def versions() -> dict:
    import google.protobuf
    import grpc
    import torch

    out = {"python": platform.python_version(), "torch": torch.__version__, "grpcio": grpc.__version__,
           "protobuf": google.protobuf.__version__, "cpu": platform.processor() or platform.machine(),
           "cpu_count": os.cpu_count()}
    from cpu_threads import cpu_topology, python_core_ms  # (bench/cpu_threads.py)

    out["cpu_topology"] = cpu_topology()
    out["python_core_ms"] = python_core_ms()
    try:
        import triton

        out["triton"] = triton.__version__
    except ImportError:
        pass
    if torch.cuda.is_available():
        out["gpu"] = torch.cuda.get_device_name()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="random:tiny")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--streams", type=int, default=64)
    ap.add_argument("--chunks", type=int, default=16, help="chunks per stream")
    ap.add_argument("--chunk-bytes", type=int, default=1024)
    ap.add_argument("--window", type=int, default=4, help="chunks in flight per stream")
    ap.add_argument("--procs", type=int, default=2, help="load generator processes")
    ap.add_argument("--load-fraction", type=float, default=0.5, help="load of the 'half' phase, of saturation")
    ap.add_argument("--phases", default="engine,saturate,half")
    ap.add_argument("--max-step-tokens", type=int, help="EngineConfig.max_step_tokens")
    ap.add_argument("--max-step-streams", type=int, help="EngineConfig.max_step_streams")
    ap.add_argument("--warmup-chunks", type=int, default=2, help="chunks per stream in an untimed warm-up")
    ap.add_argument("--text-file", help="cut the chunks from this file (e.g. English text; .gz read "
                    "as gzip) instead of synthetic words")
    ap.add_argument("--out", help="write the results JSON here")
    args = ap.parse_args(argv)
    use_text(args.text_file)

    import dataclasses

    import torch

    from streamret.engine import Engine, EngineConfig
    from streamret.service.ack_legs import format_legs
    from streamret.service.limits import ServiceLimits
    from streamret.service.server import BackgroundServer, ServerConfig

    torch.set_num_threads(max(1, (os.cpu_count() or 2) - args.procs))
    cfg = EngineConfig(durable_every_chunks=0)  # no state dir: nothing to write; measure the serving path
    overrides = {k: v for k, v in (("max_step_tokens", args.max_step_tokens),
                                   ("max_step_streams", args.max_step_streams)) if v is not None}
    cfg = dataclasses.replace(cfg, **overrides)
    engine = Engine.from_model(spec=args.model, device=args.device, dtype=args.dtype, config=cfg)
    results: dict = {"date": time.strftime("%Y-%m-%d"), "versions": versions(), "args": vars(args), "phases": []}
    if args.warmup_chunks:
        run_engine(engine, argparse.Namespace(**{**vars(args), "chunks": args.warmup_chunks}), "warmup")

    server = BackgroundServer(engine, ServerConfig(port=0, limits=ServiceLimits(
        max_streams_per_tenant=max(10_000, 4 * args.streams), idle_evict_s=0,
        # the load opens one Append call per stream, all as one tenant: above the per-tenant default of 128
        max_calls_per_tenant=2 * args.streams + 64)))
    target = f"127.0.0.1:{server.port}"
    engine_rates, saturation = [], None
    try:
        for i, phase in enumerate(args.phases.split(",")):
            tag = f"{phase}{i}"
            before = engine.stats()
            if phase == "engine":
                result = run_engine(engine, args, tag)
                engine_rates.append(result["tokens_per_s"])
            elif phase == "saturate":
                result = saturation = run_service(target, args, tag, rate=None, server=server)
            elif phase == "half":
                if saturation is None:
                    raise SystemExit("the 'half' phase needs a 'saturate' phase before it (its rate is a fraction)")
                rate = args.load_fraction * saturation["chunks"] / saturation["seconds"] / args.streams
                result = run_service(target, args, tag, rate=rate, server=server)
                result["load_fraction"] = args.load_fraction
            else:
                raise SystemExit(f"unknown phase {phase!r}; use engine, saturate, half")
            result["phase"] = phase
            result.update(step_summary(before, engine.stats()))
            if phase == "saturate" and engine_rates:
                result["ratio_to_engine"] = round(result["tokens_per_s"] / float(np.mean(engine_rates)), 3)
            results["phases"].append(result)
            print(json.dumps({k: v for k, v in result.items() if k != "ack_legs"}), flush=True)
            if "ack_legs" in result:
                print(format_legs(result["ack_legs"]), flush=True)
        results["engine_stats"] = {k: v for k, v in engine.stats().items() if not isinstance(v, list | tuple)}
    finally:
        server.stop()
        engine.shutdown()
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
