"""The step loop overlaps a step with the booking of the one before only when it holds enough tokens
(EngineConfig.min_overlapped_step_tokens): smaller ones wait for that booking and take in what came meanwhile."""

import pytest
from test_scheduler import item, sched

from streamret.engine import EngineConfig
from streamret.engine.core import EngineCore


def queued(*works: tuple[str, int]):
    s = sched(max_step_tokens=100_000)
    for sid, n in works:
        s.add(item(sid, n))  # (accepted and queued: tokenized)
    return s


def test_queued_tokens_counts_the_streams_not_excluded_and_stops_at_enough():
    s = queued(("a", 30), ("b", 50), ("c", 20))
    assert s.queued_tokens() == 100 and s.queued_tokens({"b"}) == 50
    assert 50 <= s.queued_tokens(enough=40) < 100  # stops counting once there are enough
    s.schedule(max_streams=1)  # hands a's tokens to a step
    assert s.queued_tokens() == 70


class _Planned(Exception):
    """_next_step went on to plan a step."""


class _Loop:
    """What _next_step reads of an engine before it plans: planning itself stops the test (_Planned)."""

    _abort = False

    def __init__(self, scheduler, config: EngineConfig):
        self.scheduler, self.config = scheduler, config

    @property
    def _max_step_streams(self):
        raise _Planned


class _InFlight:
    def __init__(self, *sids: str):
        self.sids = set(sids)

    def stream_ids(self) -> set[str]:
        return self.sids


@pytest.mark.parametrize("least, budget, work, inflight, plans", [
    (4096, 16384, [("a", 1000), ("b", 2000)], _InFlight("c"), False),  # too little beside a step in flight
    (4096, 16384, [("a", 1000), ("b", 2000)], None, True),  # nothing in flight: it runs whatever there is
    (4096, 16384, [("a", 3000), ("b", 2000)], _InFlight("c"), True),  # enough to overlap
    (4096, 16384, [("a", 3000), ("b", 2000)], _InFlight("a"), False),  # a is in flight: b's alone are too few
    (4096, 1024, [("a", 1000), ("b", 30)], _InFlight("c"), True),  # a step's budget is enough
    (0, 16384, [("a", 1)], _InFlight("c"), True),  # 0: always overlap
])
def test_a_small_step_waits_for_the_booking_of_the_one_in_flight(least, budget, work, inflight, plans):
    loop = _Loop(queued(*work), EngineConfig(max_step_tokens=budget, min_overlapped_step_tokens=least))
    if plans:
        with pytest.raises(_Planned):
            EngineCore._next_step(loop, inflight)
    else:
        assert EngineCore._next_step(loop, inflight) is None


def test_a_negative_threshold_is_refused():
    with pytest.raises(ValueError, match="min_overlapped_step_tokens must be >= 0 .*got -1"):
        EngineConfig(min_overlapped_step_tokens=-1)
