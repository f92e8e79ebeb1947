"""Cluster metrics on a small local Ray: two StreamWorkers, two gateways, each serving /metrics. Scraped over
HTTP, every worker's engine series carry a `worker` label and come from exactly one gateway, so the sum over
both gateways' scrapes counts the cluster's tokens once; a lone gateway exports every worker, also once the other
stops serving /metrics."""

import time
import urllib.request

import pytest

ray = pytest.importorskip("ray")

from helpers_ray import start_local_ray  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from streamret.client import Client  # noqa: E402
from streamret.cluster.launch import join_cluster  # noqa: E402
from streamret.cluster.wire import WorkerResources, WorkerSpec  # noqa: E402
from streamret.service.server import BackgroundServer, ServerConfig  # noqa: E402

pytestmark = [pytest.mark.ray, pytest.mark.timeout(240)]

TEXTS = {f"doc-{i}": f"Document {i} is about rivers and boats. " * (3 + i) for i in range(8)}  # ASCII: 1 byte, 1 token


def scrape(port: int) -> dict[str, list]:
    """{sample name: [(labels, value)]} of one GET /metrics."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30).read().decode()
    out: dict[str, list] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def per_worker(samples: dict, name: str) -> dict[str, float]:
    return {labels["worker"]: value for labels, value in samples.get(name, [])}


@pytest.fixture(scope="module")
def gateways(tmp_path_factory):
    start_local_ray(num_cpus=3)
    try:
        spec = WorkerSpec(model="random:tiny", state_url=str(tmp_path_factory.mktemp("states")), device="cpu",
                          dtype="float32", threads=2)
        first = join_cluster(None, spec, 2, WorkerResources(num_gpus=0, num_cpus=1, max_restarts=0))
        second = join_cluster(None, spec, 2, WorkerResources(num_gpus=0, num_cpus=1, max_restarts=0))
        try:
            yield first, second
        finally:
            second.shutdown()
            first.shutdown()
    finally:
        ray.shutdown()


def test_two_gateways_count_each_worker_once(gateways):
    first, second = gateways
    assert first.gateway_id != second.gateway_id and len(first.workers) == 2
    a = BackgroundServer(first, ServerConfig(port=0, metrics_port=0))
    b = None
    try:
        # alone, a gateway serving /metrics exports every worker
        alone = scrape(a.server.metrics_port)
        assert set(per_worker(alone, "streamret_engine_up")) == set(first.workers)
        assert all(v == 1 for v in per_worker(alone, "streamret_engine_up").values())

        b = BackgroundServer(second, ServerConfig(port=0, metrics_port=0))
        for i, (sid, text) in enumerate(TEXTS.items()):  # half through each gateway
            with Client(f"127.0.0.1:{(a if i % 2 else b).port}") as c:
                c.stream(sid, [text[: len(text) // 2], text[len(text) // 2 :]])
        deadline = time.monotonic() + 30
        both = {first.gateway_id, second.gateway_id}
        while not (set(first._metrics_gateways) == set(second._metrics_gateways) == both):
            assert time.monotonic() < deadline, (first._metrics_gateways, second._metrics_gateways)
            time.sleep(0.2)

        from_a, from_b = scrape(a.server.metrics_port), scrape(b.server.metrics_port)
        tokens_a = per_worker(from_a, "streamret_engine_tokens_processed_total")
        tokens_b = per_worker(from_b, "streamret_engine_tokens_processed_total")
        assert not set(tokens_a) & set(tokens_b)  # no worker exported twice
        assert set(tokens_a) | set(tokens_b) == set(first.workers)  # and none left out
        truth = {name: stats["tokens_processed"] for name, stats in first.stats()["workers"].items()}
        assert sum(truth.values()) == sum(len(t) for t in TEXTS.values())
        assert {**tokens_a, **tokens_b} == truth  # counted once, by worker
        steps = {**per_worker(from_a, "streamret_engine_steps_total"),
                 **per_worker(from_b, "streamret_engine_steps_total")}
        # a worker steps when it has tokens: the 8 streams' ids hash to the workers, all to one about 1 run in 128
        assert set(steps) == set(truth) and all((steps[w] > 0) == (truth[w] > 0) for w in truth), (steps, truth)
        # no engine series without a worker label (the old unlabelled cluster totals)
        for samples in (from_a, from_b):
            assert all("worker" in labels for labels, _ in samples.get("streamret_engine_tokens_processed_total", []))
            # each gateway's own calls and process metrics are its own
            assert samples["process_resident_memory_bytes"][0][1] > 0
            appends = [v for labels, v in samples["streamret_rpcs_total"]
                       if labels == {"method": "Append", "code": "OK"}]
            assert appends == [len(TEXTS) / 2]

        # the second gateway stops serving /metrics: within a poll of the coordinator its share is the first's
        b.stop()
        b = None
        while set(first._metrics_gateways) != {first.gateway_id}:
            assert time.monotonic() < deadline + 30, first._metrics_gateways
            time.sleep(0.2)
        assert per_worker(scrape(a.server.metrics_port), "streamret_engine_tokens_processed_total") == truth
    finally:
        if b is not None:
            b.stop()
        a.stop()
