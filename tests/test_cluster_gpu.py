"""Ray workers on a CUDA GPU (issue 19): a StreamWorker that Ray gave one GPU serves from it (device auto
-> cuda:0, the engine's GPU state tier, CUDA graphs) what the embedded engine on the same GPU gives, and a
worker killed mid-stream comes back on the GPU with no chunk lost or applied twice. float32, so that how the
chunks were packed into steps changes the embeddings by float32 rounding only (rel. error <= 1e-5).
Skips without CUDA (conftest.py) or without Ray."""

import asyncio

import numpy as np
import pytest

ray = pytest.importorskip("ray")

from helpers_ray import start_local_ray  # noqa: E402
from test_cluster_ray import chunks_of, long_text, serve, wait_for  # noqa: E402

from streamret.cluster.coordinator import NAMESPACE  # noqa: E402
from streamret.cluster.launch import join_cluster  # noqa: E402
from streamret.cluster.wire import WorkerResources, WorkerSpec  # noqa: E402
from streamret.engine import Engine  # noqa: E402

pytestmark = [pytest.mark.gpu, pytest.mark.ray, pytest.mark.timeout(240)]

MODEL = "random:default"  # the bundled model's layout (its K 64 / V 128 heads in the kernels)
DEVICE, GPUS = "cuda", 1
SERVE = {f"gpu-{i}": long_text(i, 24 * 40) for i in range(12)}  # 24 chunks of 40 bytes each
KILL = {f"gpu-kill-{i}": long_text(i + 50, 36 * 40) for i in range(8)}


@pytest.fixture(scope="module")
def reference():
    """The embedded engine on the same GPU, each text read in one chunk; before Ray starts."""
    with Engine.from_model(MODEL, device=DEVICE, dtype="float32") as engine:
        out = {}
        for i, text in enumerate({*SERVE.values(), *KILL.values()}):
            engine.append(f"ref-{i}", 1, text, flush=True)
            out[text] = engine.embedding(f"ref-{i}")
    return out.__getitem__


@pytest.fixture(scope="module")
def gpu_cluster(tmp_path_factory, reference):
    start_local_ray(num_cpus=4, num_gpus=GPUS)
    try:
        spec = WorkerSpec(model=MODEL, state_url=str(tmp_path_factory.mktemp("states")), device="auto",
                          dtype="float32", threads=4)
        engine = join_cluster(None, spec, 1, WorkerResources(num_gpus=GPUS, num_cpus=1, max_restarts=3))
        yield engine
        engine.shutdown()
    finally:
        ray.shutdown()


def check(results: dict, streams: dict, reference) -> None:
    for sid, (n_chunks, info, emb) in results.items():
        assert info.applied_seq == n_chunks, sid  # every chunk applied once (and the final flush)
        assert info.tokens == len(streams[sid].encode()), sid  # byte tokenizer: none lost, none twice
        ref = reference(streams[sid])
        assert np.linalg.norm(emb - ref) <= 1e-5 * np.linalg.norm(ref), sid


def on_its_gpu(hello: dict) -> None:
    """The actor's engine runs on the GPU Ray assigned: Ray's ids are CUDA_VISIBLE_DEVICES, so it is cuda:0."""
    assert hello["gpu_ids"], hello
    assert hello["cuda_visible_devices"] == ",".join(hello["gpu_ids"]), hello
    assert hello["device"] == "cuda:0", hello


def test_gpu_worker_serves_streams_equal_to_the_embedded_engine(gpu_cluster, reference):
    (name,) = gpu_cluster.workers
    on_its_gpu(gpu_cluster.worker_info(name))
    results, errors = asyncio.run(serve(gpu_cluster, SERVE))
    check(results, SERVE, reference)
    assert errors == 0
    stats = gpu_cluster.stats()["workers"][name]
    assert stats["streams"]["device"] == len(SERVE)  # states held in the GPU tier
    assert stats["cuda_graph_captures"] > 0  # steps replayed from CUDA graphs in the actor process
    assert all(len(chunks_of(text)) > 1 for text in SERVE.values())


def test_gpu_worker_killed_mid_stream_comes_back_on_the_gpu(gpu_cluster, reference):
    (name,) = gpu_cluster.workers
    before = gpu_cluster.worker_info(name)["incarnation"]

    async def kill(engine):
        await asyncio.sleep(1.0)
        ray.kill(ray.get_actor(name, namespace=NAMESPACE), no_restart=False)

    results, errors = asyncio.run(serve(gpu_cluster, KILL, during=kill, pace_s=0.1))
    check(results, KILL, reference)
    assert errors > 0  # chunks in flight at the kill failed (UNAVAILABLE) and were resent from durable_seq
    assert asyncio.run(wait_for(lambda: gpu_cluster.worker_info(name)["incarnation"] != before, 60.0))
    on_its_gpu(gpu_cluster.worker_info(name))
