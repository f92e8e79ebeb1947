"""Chaos: the server is killed with SIGKILL at random points while streams run through the client library,
and restarted on the same state folder and port. Every stream must end with applied_seq equal to its chunk
count, no chunk applied twice, and the embedding of an undisturbed run (rel. error <= 1e-5, float32 CPU,
random:tiny). The long version is `python bench/chaos.py`."""

import asyncio

import pytest
from helpers_chaos import ReferenceEmbeddings, kill_and_restart, run_chaos, stream_text
from helpers_server import ServeProcess

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def reference():
    with ReferenceEmbeddings() as embed:
        yield embed


@pytest.mark.parametrize("durable_every, kills", [(1, 3), (4, 2)], ids=["record-per-chunk", "record-per-4-chunks"])
def test_kill_9_at_random_points_loses_nothing_and_applies_nothing_twice(tmp_path, reference, durable_every, kills):
    """With a record per chunk an ack means durable, so no chunk may be acked as applied twice. With a record
    per 4 chunks a kill rolls streams back to their last record (some never had one: the client creates them
    again) and the client resends what it kept; the final state must still hold each chunk once. A stream the
    client has finished is safe in both: its last chunk asks for a record (Client.stream's durable=True)."""
    texts = {f"chaos-{i}": stream_text(i, 900) for i in range(6)}  # ~25 chunks each, cut anywhere
    with ServeProcess(tmp_path / "states", "--durable-every-chunks", str(durable_every), cwd=tmp_path) as server:
        server.start()
        report = asyncio.run(run_chaos(server.target, texts, reference, kill_and_restart(server), kills=kills,
                                       seed=8 + durable_every))
        print(report.line())
        assert server.kills == kills and server.starts == kills + 1
        for sid, out in report.streams.items():
            assert out.applied_seq == out.chunks, (sid, server.log())
            assert out.tokens == out.bytes_sent, sid
            assert out.rel_err <= 1e-5, (sid, out.rel_err)
            if durable_every == 1:
                assert out.acked_twice == 0, (sid, out.applied.most_common(3))
        assert report.lost == 0 and report.applied_twice == 0
