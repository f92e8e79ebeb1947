"""Fair batching end to end (CPU, random:tiny, byte tokenizer): tenants share steps round-robin, a
stream's share of a step is capped by the fair split, and outputs do not depend on it."""

import asyncio
import threading
import time

import numpy as np
import pytest
import torch

from streamret.engine import Engine, EngineConfig
from streamret.errors import InvalidArgument, Unavailable
from streamret.service.auth import Caller
from streamret.service.limits import ServiceLimits
from streamret.service.metrics import ServiceMetrics
from streamret.service.tenant_engine import TenantEngine

WORDS = "state stream token retention decay chunk engine summary segment model the a of and to".split()


def text(n_bytes: int, seed: int) -> str:
    rng = np.random.default_rng(seed)
    words = " ".join(rng.choice(WORDS, size=n_bytes // 3 + 2))
    return (" " + words)[:n_bytes]


def one_shot(eng: Engine, s: str) -> np.ndarray:
    with torch.no_grad():
        _, state = eng.model(torch.tensor(eng.tokenizer.encode(s), dtype=torch.long))
    return eng.model.stream_embedding(state)[0].numpy()


def rel_err(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


# The bound, derived from the step loop (core.py, _steps_forever). With overlap_steps="always" the loop
# schedules step k+1, launches it, then books step k: a chunk queued at any moment misses at most the step being
# booked (k) and the one already scheduled (k+1); the next one scheduled (k+2) picks it, because groups are
# served round-robin and B's group is the only other one, and gives it all its tokens, because a 23-token demand
# is below the fair half of the step. Its ack goes out when k+2 is booked: at most 3 steps after the submit.
# With "never" (the CPU's default) the loop books k before it schedules k+1, which picks the chunk if the
# tokenize stage has queued it by then (2 steps), else k+2 does (3). The old scheduler served the 100 streams of
# A one full step each before B: about 100 steps.
MAX_STEPS_TO_ACK = 3
# Wall clock, for a loaded 2-core CI machine: a step here (64 streams x 64 tokens of random:tiny) took
# about 0.15 s on a 2-core EPYC shared with two other busy processes (B acked 3 steps, 0.4 s after its
# submit); 20 s leaves 50x for a slower machine and still flags a stall (the old scheduler: ~100 steps).
MAX_SECONDS_TO_ACK = 20.0


# "queued" overlaps while a full step's tokens wait, as here throughout (A's queue holds 20 steps and more); with
# step_whole_chunk_tokens at budget / 64 each picked stream is first given 64 tokens of its chunk: the same steps
@pytest.mark.parametrize(("overlap", "whole"), [("always", None), ("queued", None), ("never", None), ("queued", 64)])
def test_a_small_chunk_of_one_tenant_is_not_held_up_by_another_tenants_100_busy_streams(overlap, whole):
    budget = 4096  # at most 64 streams: a busy stream's share is at least 64 tokens, as with the defaults
    # one tokenize thread: what waits is split between idle threads, and A's work must arrive as one batch
    cfg = EngineConfig(max_step_tokens=budget, max_step_streams=64, tokenizer_threads=1, overlap_steps=overlap,
                       step_whole_chunk_tokens=whole)
    e = Engine.from_model("random:tiny", device="cpu", config=cfg)
    try:
        # queue all of tenant A's work before the first step is planned: holding the tokenize stage's lock too
        # makes it take all the chunks as one batch, delivered at once
        with e._tokenize._cv, e._lock:
            a_futures = [e.submit_append(f"a{i}", seq, text(1024, 2 * i + seq), group="A")
                         for i in range(100) for seq in (1, 2)]
        deadline = time.monotonic() + 60
        while e.stats()["steps"] < 2:  # A's steps are running
            assert time.monotonic() < deadline, "the engine ran no step in 60 s"
            time.sleep(0.005)
        assert e.stats()["queue_tokens"] >= 20 * budget  # A has work for at least 20 more steps
        # every stream with work runs in every two steps: overlapped, 64 (the most per step), then the 36 that the
        # step in flight does not hold (two steps in flight never share a stream), sharing the same budget; one
        # step at a time, 64 each step, the round-robin going on where the last step stopped
        sizes = e.stats()["recent_step_batch_sizes"]
        if overlap != "never":
            assert sizes[0] == 64 and all(a + b == 100 for a, b in zip(sizes, sizes[1:])), sizes
        else:
            assert all(n == 64 for n in sizes), sizes

        seen: dict = {}
        seen_all = threading.Event()

        def on_ack(_f) -> None:  # runs on the step loop right after booking, before the next step
            seen["steps"] = e._steps
            seen["a_done"] = sum(f.done() for f in a_futures)
            seen["t"] = time.monotonic()
            seen_all.set()

        b_text = " a small chunk from B. "
        with e._lock:  # no step is booked until the callback is in place
            t0 = time.monotonic()
            s0 = e._steps
            fut = e.submit_append("b", 1, b_text, group="B")
            fut.add_done_callback(on_ack)
        ack = fut.result(timeout=120)
        # (result() returns once the future is set; its callbacks run after that, on the step loop's thread)
        assert seen_all.wait(timeout=60) and ack.applied_seq == 1
        assert seen["steps"] - s0 <= MAX_STEPS_TO_ACK, f"B waited {seen['steps'] - s0} steps"
        assert seen["t"] - t0 <= MAX_SECONDS_TO_ACK
        print(f"B acked {seen['steps'] - s0} steps, {seen['t'] - t0:.3f} s after its submit")
        # no chunk of A was done before B's: 1024 tokens at most 4096 / 36 per step, every other step (one step at a
        # time: 64 tokens a step, in 2 of every 3 steps)
        assert seen["a_done"] == 0
        e.flush("b")
        assert rel_err(e.embedding("b"), one_shot(e, b_text)) <= 1e-5
    finally:
        e.shutdown(checkpoint=False)  # drop the rest of A's work
    with pytest.raises(Unavailable):
        a_futures[-1].result(timeout=10)


def test_outputs_do_not_depend_on_the_fair_split():
    """Streams of three tenants cut into small shares per step end with the one-shot embeddings."""
    # one tokenize thread: the work submitted under the lock then arrives as one batch (two threads split it)
    cfg = EngineConfig(max_step_tokens=40, max_step_streams=6, tokenizer_threads=1)
    texts = {f"t{t}/s{i}": text(150 + 37 * i, 10 * t + i) + ". " for t in range(3) for i in range(t + 2)}
    with Engine.from_model("random:tiny", device="cpu", config=cfg) as e:
        futures = []
        with e._lock:
            for sid, s in texts.items():
                for seq, start in enumerate(range(0, len(s), 60), 1):
                    futures.append(e.submit_append(sid, seq, s[start : start + 60], group=sid.split("/")[0]))
        for f in futures:
            f.result(timeout=120)
        stats = e.stats()
        assert max(stats["recent_step_batch_sizes"]) == 6
        assert stats["steps"] < 256 and stats["step_streams"] == sum(stats["recent_step_batch_sizes"])
        for sid, s in texts.items():
            e.flush(sid)
            assert rel_err(e.embedding(sid), one_shot(e, s)) <= 1e-5, sid


def test_a_stream_keeps_its_group_and_bad_groups_are_refused():
    with Engine.from_model("random:tiny", device="cpu") as e:
        e.open("s", group="tenant-1")
        e.append("s", 1, "words ")  # None keeps the group
        assert e.store.streams["s"].group == "tenant-1"
        e.append("s", 2, "more ", group="tenant-2")
        assert e.store.streams["s"].group == "tenant-2"
        with pytest.raises(InvalidArgument, match="group must be a string.*got 5"):
            e.append("s", 3, "x ", group=5)
        with pytest.raises(InvalidArgument, match="max_stream_id_bytes"):
            e.open("s", group="g" * 2000)


def test_config_cap_reaches_the_scheduler():
    with pytest.raises(ValueError, match="max_stream_step_tokens must be >= 1, got 0"):
        EngineConfig(max_stream_step_tokens=0)
    cfg = EngineConfig(max_step_tokens=64, max_stream_step_tokens=8)
    with Engine.from_model("random:tiny", device="cpu", config=cfg) as e:
        e.append("s", 1, "x" * 40 + " ")
        assert set(e.stats()["recent_step_tokens"]) == {8}  # 40 tokens: 5 steps of 8
        assert e.stats()["steps"] == 5



def test_a_draining_step_takes_at_most_the_configured_chunks_of_a_stream_and_the_results_are_unchanged():
    """EngineConfig.draining_step_chunks=1: every chunk of three streams cut and queued (fewer tokens than a step,
    nothing left to cut) before the loop may plan a step; then each step takes one chunk of each stream (one step
    would take them all without the cap), and every stream's embedding is the one-shot one."""
    with pytest.raises(ValueError, match="draining_step_chunks must be >= 1, got 0"):
        EngineConfig(draining_step_chunks=0)
    cfg = EngineConfig(max_step_tokens=4096, draining_step_chunks=1)
    texts = {f"s{i}": " ".join(f"w{i}x{j}" for j in range(40)) + " " for i in range(3)}
    with Engine.from_model("random:tiny", device="cpu", config=cfg) as e:
        go, has_work = threading.Event(), e.scheduler.has_work
        e.scheduler.has_work = lambda: go.is_set() and has_work()  # the loop waits (lock let go) until told
        futures = [e.submit_append(sid, seq, s[start : start + 100])
                   for sid, s in texts.items() for seq, start in enumerate(range(0, len(s), 100), 1)]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (
                e._tokenize.idle() and sum(map(len, e.scheduler._queues.values())) == len(futures)):
            time.sleep(0.01)
        assert e.scheduler.queued_tokens < cfg.max_step_tokens
        go.set()
        with e._lock:
            e._has_work.notify_all()
        for f in futures:
            f.result(timeout=120)
        stats = e.stats()
        assert stats["steps"] == 3 and stats["recent_step_batch_sizes"] == [3, 3, 3]  # (no cap: one step of 687)
        for sid, s in texts.items():
            e.flush(sid)
            assert rel_err(e.embedding(sid), one_shot(e, s)) <= 1e-5, sid


def test_the_service_puts_each_tenants_streams_in_the_tenants_group():
    with Engine.from_model("random:tiny", device="cpu") as e:
        tenants = TenantEngine(e, ServiceLimits(), ServiceMetrics(), threads=2, batch_threads=1)
        try:
            async def scenario():
                acme, globex = Caller("acme"), Caller("globex")
                await tenants.open(globex, "opened", True, {})
                ack = await (await tenants.submit_append(acme, "appended", 1, b"some words ", False))
                assert ack.error_code == 0, ack.error_message
                return acme.engine_id("appended"), globex.engine_id("opened")

            appended, opened = asyncio.run(scenario())
            assert e.store.streams[appended].group == "acme"
            assert e.store.streams[opened].group == "globex"
        finally:
            tenants.shutdown()
