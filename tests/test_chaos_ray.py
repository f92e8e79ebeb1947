"""Chaos on Ray: worker actors are killed at random points (Ray restarts them) while streams run through the
client library and a gRPC server on the cluster gateway. Every stream must end with applied_seq equal to its
chunk count, no chunk applied or acked as applied twice (workers write a record per chunk), and the embedding
of an undisturbed run (rel. error <= 1e-5). Same local Ray setup as tests/test_cluster_ray.py."""

import asyncio
import random

import pytest
from helpers_chaos import ReferenceEmbeddings, run_chaos, stream_text

ray = pytest.importorskip("ray")  # the [ray] extra; the project's own modules are imported plainly below,
# so an import error in them fails this module instead of skipping it (issue 15, item 8)

from helpers_ray import start_local_ray  # noqa: E402

from streamret.cluster import launch  # noqa: E402
from streamret.cluster.coordinator import NAMESPACE  # noqa: E402
from streamret.cluster.wire import WorkerResources, WorkerSpec  # noqa: E402
from streamret.service.server import BackgroundServer, ServerConfig  # noqa: E402

pytestmark = [pytest.mark.ray, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    start_local_ray(num_cpus=4)
    try:
        spec = WorkerSpec(model="random:tiny", state_url=str(tmp_path_factory.mktemp("states")), device="cpu",
                          dtype="float32", threads=4)
        engine = launch.join_cluster(None, spec, 2, WorkerResources(num_gpus=0, num_cpus=1, max_restarts=10))
        yield engine
        engine.shutdown()
    finally:
        ray.shutdown()


def kill_a_worker(engine):
    """A Kill that SIGKILLs a random worker actor (Ray restarts it) and waits until it serves again, so that the
    next kill finds two live workers. It asks the actor itself: the gateway reconnects at its next call to the
    worker, and when none of the running streams lives there (8 streams over 2 workers: now and then) it has no
    reason to, so its view of the worker stays the old incarnation (most likely why a CI run waited 120 s)."""

    async def hello(actor) -> dict:
        return await asyncio.wait_for(asyncio.wrap_future(actor.hello.remote().future()), timeout=5.0)

    async def kill(rng: random.Random) -> None:
        name = rng.choice(sorted(engine.workers))
        actor = ray.get_actor(name, namespace=NAMESPACE)
        before = (await hello(actor))["incarnation"]
        ray.kill(actor, no_restart=False)
        deadline = asyncio.get_running_loop().time() + 120
        while True:
            assert asyncio.get_running_loop().time() < deadline, f"worker {name} did not come back"
            try:
                if (await hello(actor))["incarnation"] != before:
                    return
            except (TimeoutError, ray.exceptions.RayError):
                pass  # dying or restarting
            await asyncio.sleep(0.05)

    return kill


def test_worker_kills_at_random_points_lose_nothing_and_apply_nothing_twice(cluster):
    texts = {f"ray-chaos-{i}": stream_text(100 + i, 700) for i in range(8)}
    server = BackgroundServer(cluster, ServerConfig(port=0))
    try:
        with ReferenceEmbeddings() as reference:
            report = asyncio.run(run_chaos(f"127.0.0.1:{server.port}", texts, reference, kill_a_worker(cluster),
                                           kills=3, seed=5, pace_s=0.02))
    finally:
        server.stop()
    print(report.line())
    assert report.kills == 3
    for sid, out in report.streams.items():
        assert out.applied_seq == out.chunks and out.tokens == out.bytes_sent, sid
        assert out.acked_twice == 0 and out.applied_twice == 0, (sid, out.applied.most_common(3))
        assert out.rel_err <= 1e-5, (sid, out.rel_err)
    assert report.lost == 0
