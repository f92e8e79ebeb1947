"""Chaos: the server is killed with SIGKILL at random points while streams run through the client library,
and restarted on the same state folder and port. Every stream must end with applied_seq equal to its chunk
count, no chunk applied twice, and the embedding of an undisturbed run (rel. error <= 1e-5, float32 CPU,
random:tiny). The long version is `python bench/chaos.py`."""

import asyncio

import numpy as np
import pytest
from helpers_chaos import run_chaos, stream_text
from helpers_server import ServeProcess

from streamret.engine import Engine

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def reference():
    """The embedded engine's embedding of each text read in one chunk (chunk invariance makes it the reference)."""
    cache: dict[str, np.ndarray] = {}
    with Engine.from_model("random:tiny", device="cpu", dtype="float32") as engine:

        def embed(text: str) -> np.ndarray:
            if text not in cache:
                sid = f"ref-{len(cache)}"
                engine.append(sid, 1, text, flush=True)
                cache[text] = engine.embedding(sid)
                engine.close(sid)
            return cache[text]

        yield embed


def test_kill_9_at_random_points_loses_nothing_and_applies_nothing_twice(tmp_path, reference):
    texts = {f"chaos-{i}": stream_text(i, 900) for i in range(6)}  # ~25 chunks each, cut anywhere
    with ServeProcess(tmp_path / "states", cwd=tmp_path) as server:  # a durable record after every chunk
        server.start()
        report = asyncio.run(run_chaos(server, texts, reference, kills=3, seed=8))
        print(report.line())
        assert server.kills == 3 and server.starts == 4
        for sid, out in report.streams.items():
            assert out.applied_seq == out.chunks, (sid, server.log())
            assert out.tokens == out.bytes_sent, sid
            assert out.applied_twice == 0, (sid, out.applied.most_common(3))
            assert out.rel_err <= 1e-5, (sid, out.rel_err)
        assert report.lost == 0 and report.applied_twice == 0
