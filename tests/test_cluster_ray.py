"""The cluster end to end on a small local Ray (CPU workers, random:tiny, float32): the gRPC server on
a ClusterEngine, driven by streamret.client. Each stream must end with applied_seq equal to its chunk
count and the embedding the embedded engine gives for its text (rel. error <= 1e-5), through worker
kills (restarted, and dead for good), a worker added and a worker drained."""

import asyncio
import json
import time

import numpy as np
import pyarrow as pa
import pytest

ray = pytest.importorskip("ray")

from helpers_ray import start_local_ray  # noqa: E402

from streamret.cli import main  # noqa: E402
from streamret.client import AsyncClient, RetryPolicy  # noqa: E402
from streamret.cluster.coordinator import NAMESPACE  # noqa: E402
from streamret.cluster.launch import join_cluster  # noqa: E402
from streamret.cluster.wire import WorkerResources, WorkerSpec  # noqa: E402
from streamret.engine import Engine  # noqa: E402
from streamret.errors import FailedPrecondition  # noqa: E402
from streamret.service.server import ServerConfig, StreamRetServer  # noqa: E402

pytestmark = [pytest.mark.ray, pytest.mark.timeout(240)]

SENTENCES = ["The river ran north. ", "Boats carried grain to the city! ", "Every spring the floods came back; ",
             "people moved uphill. ", "Ärzte und Fähren — 渡し舟 — crossed at dawn. ", "Nobody kept count. "]
CHUNK_BYTES = 40


def text_of(i: int) -> str:
    return "".join(SENTENCES[(i + j) % len(SENTENCES)] for j in range(3 + i % 4))


def long_text(i: int, n_bytes: int) -> str:
    text = text_of(i)
    while len(text.encode()) < n_bytes:
        text += text_of(i + len(text))
    return text


def chunks_of(text: str) -> list[bytes]:
    data = text.encode()  # cuts fall inside words and inside multi-byte characters on purpose
    return [data[j : j + CHUNK_BYTES] for j in range(0, len(data), CHUNK_BYTES)]


FIFTY = {f"fifty-{i}": text_of(i) for i in range(50)}
KILL = {f"kill-{i}": long_text(i, 36 * CHUNK_BYTES) for i in range(16)}  # 36 chunks each
SCALE = {f"scale-{i}": long_text(i, 24 * CHUNK_BYTES) for i in range(24)}  # 24 chunks each
TABLE = [text_of(i) * 40 for i in range(6)]  # several batch chunks per document


@pytest.fixture(scope="module")
def reference():
    """The embedded engine's embedding of every text, read in one chunk (chunk invariance); computed
    before Ray starts, which would otherwise compete for the 2 CPUs."""
    with Engine.from_model("random:tiny", device="cpu", dtype="float32") as engine:
        texts = {*FIFTY.values(), *KILL.values(), *SCALE.values(), *TABLE}
        out = {}
        for i, text in enumerate(texts):
            engine.append(f"ref-{i}", 1, text, flush=True)
            out[text] = engine.embedding(f"ref-{i}")
    return out.__getitem__


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, reference):
    start_local_ray(num_cpus=4)
    try:
        spec = WorkerSpec(model="random:tiny", state_url=str(tmp_path_factory.mktemp("states")), device="cpu",
                          dtype="float32", threads=4)
        engine = join_cluster(None, spec, 2, WorkerResources(num_gpus=0, num_cpus=1, max_restarts=2))
        yield engine
        engine.shutdown()
    finally:
        ray.shutdown()


async def serve(engine, streams: dict[str, str], during=None, pace_s: float = 0.0,
                holds: dict[int, asyncio.Event] | None = None) -> tuple[dict, float]:
    """Stream every text through a gRPC server on `engine`; run `during(engine)` meanwhile. Each stream
    waits for holds[i] before sending its chunk i (negative: from the end), so that what `during` does
    finds the streams still running on a slow machine. Returns ({stream id: (chunks sent incl. the final
    flush, StreamInfo, embedding)}, chunks acked with an error)."""
    holds = holds or {}
    server = StreamRetServer(engine, ServerConfig(port=0))
    port = await server.start()
    try:
        async with AsyncClient(f"127.0.0.1:{port}", retry=RetryPolicy(timeout_s=90.0)) as client:

            async def paced(chunks):
                for i, c in enumerate(chunks):
                    hold = holds.get(i) or holds.get(i - len(chunks))
                    if hold is not None:
                        await hold.wait()
                    yield c
                    await asyncio.sleep(pace_s)

            async def one(sid: str, text: str):
                chunks = chunks_of(text)
                await client.stream(sid, paced(chunks))
                info = await client.open(sid, create_if_missing=False)
                return len(chunks) + 1, info, await client.embedding_array(sid)

            jobs = [one(sid, text) for sid, text in streams.items()]
            if during is not None:
                jobs.append(during(engine))
            results = await asyncio.gather(*jobs)
            errors = server.metrics.registry.get_sample_value("streamret_chunks_total", {"outcome": "error"})
            return dict(zip(streams, results)), errors or 0.0
    finally:
        await server.stop()


def check(results: dict, streams: dict, reference) -> None:
    worst = 0.0
    for sid, (n_chunks, info, emb) in results.items():
        assert info.applied_seq == n_chunks, sid
        ref = reference(streams[sid])
        worst = max(worst, float(np.linalg.norm(emb - ref) / np.linalg.norm(ref)))
    assert worst <= 1e-5


def owners(engine) -> dict[str, int]:
    return {name: stats["tokens_processed"] for name, stats in engine.stats()["workers"].items()}


def test_fifty_streams_through_two_workers(cluster, reference):
    streams = FIFTY
    results, errors = asyncio.run(serve(cluster, streams))
    check(results, streams, reference)
    assert errors == 0
    assert len(cluster.workers) == 2 and all(n > 0 for n in owners(cluster).values())  # both served streams


def test_batch_tables_through_the_cluster(cluster, reference):
    texts = TABLE

    async def embed():
        server = StreamRetServer(cluster, ServerConfig(port=0))
        port = await server.start()
        try:
            async with AsyncClient(f"127.0.0.1:{port}") as client:
                return await client.embed_table(pa.table({"id": list(range(6)), "text": texts}))
        finally:
            await server.stop()

    rows = asyncio.run(embed()).to_pylist()
    assert [r["error"] for r in rows] == [None] * 6
    for row, text in zip(rows, texts):
        ref = reference(text)
        assert np.linalg.norm(np.asarray(row["embedding"]) - ref) <= 1e-5 * np.linalg.norm(ref)
    # the workers' model roles reached the gateway through their hello: random weights serve the query role only
    assert cluster.roles.available == ("query",)
    with pytest.raises(FailedPrecondition, match="random:tiny has none"):
        cluster.embedding("fifty-0", "document")


def test_killed_workers_lose_no_chunk_and_apply_none_twice(cluster, reference):
    """A worker killed mid-stream (Ray restarts it), then one killed for good (the coordinator replaces
    it and its streams move): clients get UNAVAILABLE for chunks in flight and resend from durable_seq."""
    streams = KILL  # chunks ~0.1 s apart
    first, second = cluster.workers
    incarnation = cluster.worker_info(first)["incarnation"]

    async def kill_twice(engine):
        await asyncio.sleep(0.8)
        ray.kill(ray.get_actor(first, namespace=NAMESPACE), no_restart=False)
        await asyncio.sleep(1.2)
        ray.kill(ray.get_actor(second, namespace=NAMESPACE), no_restart=True)

    results, errors = asyncio.run(serve(cluster, streams, during=kill_twice, pace_s=0.1))
    check(results, streams, reference)
    assert errors > 0  # chunks did fail (UNAVAILABLE) and were sent again
    assert asyncio.run(wait_for(lambda: second not in cluster.workers and len(cluster.workers) == 2, 60.0))
    assert first in cluster.workers and cluster.worker_info(first)["incarnation"] != incarnation


def test_a_worker_added_and_one_drained_mid_stream(cluster, reference, capsys):
    """`streamret cluster scale 3` mid-stream (streams move to the new worker), then `scale 2` (the new one
    is drained: its streams move back). 24 streams: some hash to the new worker whatever its name."""
    streams = SCALE  # chunks 0.3 s apart; each waits after its second chunk until the third worker is up,
    before = set(cluster.workers)  # and before its last one until the scale-down has begun

    async def grow_then_shrink(engine):
        await asyncio.sleep(0.5)
        assert await asyncio.to_thread(main, ["cluster", "scale", "3"]) == 0
        assert await wait_for(lambda: len(engine.workers) == 3, 120.0)
        grown.set()
        added = (set(engine.workers) - before).pop()
        assert await wait_for(lambda: owners(engine)[added] > 0, 60.0)  # streams moved to it and went on there
        shrink = asyncio.create_task(asyncio.to_thread(main, ["cluster", "scale", "2"]))  # drains the newest
        await asyncio.sleep(0.5)
        shrinking.set()
        assert await shrink == 0

    async def run():
        nonlocal grown, shrinking
        grown, shrinking = asyncio.Event(), asyncio.Event()  # made inside the loop that awaits them
        return await serve(cluster, streams, during=grow_then_shrink, pace_s=0.3, holds={2: grown, -1: shrinking})

    grown = shrinking = None
    results, _ = asyncio.run(run())
    check(results, streams, reference)
    assert set(cluster.workers) == before
    capsys.readouterr()
    assert main(["cluster", "status", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert {n for n, w in status["workers"].items() if w["state"] == "live"} == before
    assert cluster.gateway_id in status["gateways"]


async def wait_for(condition, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True
