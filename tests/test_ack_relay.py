"""AckRelay (tenant_engine.py): engine outcomes known on other threads (futures done, or batches that arrive)
reach the event loop, all of them, with one wakeup of the loop for those done meanwhile; cancelling the loop's
side leaves the engine's alone. And check_name's printable fast path against the per-character rule it stands
for."""

import asyncio
import threading
import unicodedata
from concurrent.futures import Future

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamret.errors import InvalidArgument
from streamret.service.auth import check_name
from streamret.service.tenant_engine import AckRelay


def _set_all(futures: list[Future], threads: int) -> None:
    def work(part):
        for i, fut in part:
            if i % 7 == 0:
                fut.set_exception(ValueError(f"chunk {i}"))
            else:
                fut.set_result(i)

    items = list(enumerate(futures))
    workers = [threading.Thread(target=work, args=(items[t::threads],)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()


def test_every_engine_future_reaches_the_loop_with_one_wakeup_for_those_done_meanwhile():
    async def main():
        loop = asyncio.get_running_loop()
        relay = AckRelay(loop)
        wakeups = 0
        deliver = relay._deliver

        def counted():
            nonlocal wakeups
            wakeups += 1
            deliver()

        relay._deliver = counted
        engine = [Future() for _ in range(500)]
        settled = [relay.follow(f) for f in engine]
        _set_all(engine, threads=4)  # the loop cannot run meanwhile: every one is done before it wakes
        got = [await s for s in settled]
        # each asyncio future holds its own engine future's outcome: (value, None) or (None, error)
        assert [value for value, _ in got] == [None if i % 7 == 0 else i for i in range(500)]
        assert [str(error) if error else None for _, error in got] == [
            f"chunk {i}" if i % 7 == 0 else None for i in range(500)]
        assert wakeups == 1
        # done one at a time while the loop waits: each wakes it, none is lost
        more = [Future() for _ in range(20)]
        later = [relay.follow(f) for f in more]
        for i, f in enumerate(more):
            await asyncio.to_thread(f.set_result, i)
        assert [await s for s in later] == [(i, None) for i in range(20)]
        # batches that arrive from several threads at once (as ShardedEngine's readers hand them over): each
        # future gets its own outcome, the loop is woken once for all that came before it ran
        expected = [relay.expect() for _ in range(300)]
        pairs = [(out, (i, None)) for i, out in enumerate(expected)]
        wakeups = 0
        threads = [threading.Thread(target=lambda part=pairs[t::3]: [relay.arrive(part[k:k + 7])
                                                                     for k in range(0, len(part), 7)])
                   for t in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert [await s for s in expected] == [(i, None) for i in range(300)]
        assert wakeups == 1

    asyncio.run(main())


def test_after_turn_runs_once_after_the_callbacks_of_this_turn():
    async def main():
        loop = asyncio.get_running_loop()
        relay = AckRelay(loop)
        order = []
        release = lambda: order.append("release")  # noqa: E731

        def chunk(i):
            order.append(i)
            relay.after_turn(release)

        for i in range(3):
            loop.call_soon(chunk, i)
        await asyncio.sleep(0)  # this turn runs the three, the next their one release
        await asyncio.sleep(0)
        assert order == [0, 1, 2, "release"]
        relay.after_turn(release)
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert order == [0, 1, 2, "release", "release"]

    asyncio.run(main())


def test_cancelling_the_loop_side_leaves_the_engine_future_alone():
    async def main():
        relay = AckRelay(asyncio.get_running_loop())
        engine = Future()
        settled = relay.follow(engine)
        settled.cancel()
        await asyncio.to_thread(engine.set_result, 1)
        await asyncio.sleep(0)
        assert engine.result() == 1 and not engine.cancelled()
        gone = relay.expect()
        gone.cancel()
        relay.arrive([(gone, (2, None))])  # an outcome for a future the call gave up on: dropped
        await asyncio.sleep(0)
        assert gone.cancelled()

    asyncio.run(main())


def test_an_engine_future_done_after_the_loop_closed_is_dropped_quietly(caplog):
    loop = asyncio.new_event_loop()
    relay = AckRelay(loop)

    async def follow():
        return relay.follow(engine)

    engine = Future()
    loop.run_until_complete(follow())
    loop.close()
    with caplog.at_level("ERROR", logger="concurrent.futures"):
        engine.set_result(1)  # call_soon_threadsafe on a closed loop raises RuntimeError: the relay ignores it
    assert not caplog.records  # a callback that raised would be logged here ("exception calling callback")


def _reference_bad(value: str) -> str | None:
    return next((c for c in value if unicodedata.category(c) in ("Cc", "Cs")), None)


@given(st.text(min_size=1, max_size=40))
def test_check_name_refuses_exactly_the_ids_with_control_or_surrogate_characters(value):
    bad = _reference_bad(value)
    if bad is None:
        assert check_name(value) == value
    else:
        with pytest.raises(InvalidArgument, match=f"U\\+{ord(bad):04X}"):
            check_name(value)


def test_a_relay_does_not_keep_its_loop_alive():
    """The server keeps a relay per event loop it has seen: a relay holding its loop would keep every loop
    that ever sent an Append alive (tests, asyncio.run per call)."""
    import gc
    import weakref

    loop = asyncio.new_event_loop()
    relay, gone = AckRelay(loop), weakref.ref(loop)
    loop.close()
    del loop
    gc.collect()
    assert gone() is None and relay.loop is None
    done = Future()
    done.set_result(1)
    relay._arrived(None, done)  # a future done after its loop went: dropped quietly
