"""/metrics as a scraper sees it, over HTTP: where it binds (127.0.0.1 unless --metrics-host says otherwise, from
a flag, STREAMRET_METRICS_HOST or --config), counters typed as counters and exposed with `_total`, the process
collectors on the same registry, engine stats read when scraped, never polled, and the standard gRPC server
metrics (grpc_server_*) of every call."""

import socket
import threading
import time
import urllib.error
import urllib.request

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from streamret import cli
from streamret.client import Client
from streamret.engine import Engine, EngineConfig
from streamret.service.proto_gen import streamret_pb2 as pb
from streamret.service.proto_gen import streamret_pb2_grpc as pb_grpc
from streamret.service.server import BackgroundServer, ServerConfig


class CountingEngine:
    """The engine, with a count of stats() calls (everything else passes through)."""

    def __init__(self, engine: Engine):
        self._engine = engine
        self.stats_calls = 0
        self._lock = threading.Lock()

    def stats(self) -> dict:
        with self._lock:
            self.stats_calls += 1
        return self._engine.stats()

    def __getattr__(self, name: str):
        return getattr(self._engine, name)


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    cfg = EngineConfig(durable_every_chunks=0)
    with Engine.from_model("random:tiny", device="cpu", state_dir=str(tmp_path_factory.mktemp("states")),
                           config=cfg) as eng:
        yield eng


@pytest.fixture
def server(engine):
    counting = CountingEngine(engine)
    srv = BackgroundServer(counting, ServerConfig(port=0, metrics_port=0, poll_s=0.02))
    srv.counting = counting
    yield srv
    srv.stop()


def scrape(port: int, host: str = "127.0.0.1") -> dict:
    """{family name: family} of one GET /metrics."""
    text = urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=10).read().decode()
    return {f.name: f for f in text_string_to_metric_families(text)}, text


def sample(families: dict, name: str, labels: dict | None = None) -> float:
    family_name = name.removesuffix("_total").removesuffix("_bucket").removesuffix("_count").removesuffix("_sum")
    for s in families[family_name].samples:
        if s.name == name and (labels is None or all(s.labels.get(k) == v for k, v in labels.items())):
            return s.value
    raise KeyError(f"{name} {labels} not in {[s.name for s in families[family_name].samples]}")


def test_metrics_binds_loopback_by_default(server):
    assert ServerConfig().metrics_host == "127.0.0.1"
    http_server, _ = server.server.metrics._http
    assert http_server.server_address[0] == "127.0.0.1"
    assert server.server.metrics_url == f"http://127.0.0.1:{server.server.metrics_port}/metrics"
    # an address of this machine that is not loopback (when it has one) does not answer
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.1", 9))  # no packet is sent: this only picks the outgoing interface
            own = s.getsockname()[0]
    except OSError:
        own = None
    if own and not own.startswith("127."):
        with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
            urllib.request.urlopen(f"http://{own}:{server.server.metrics_port}/metrics", timeout=2)


def resolve(argv: list[str], env: dict[str, str] | None = None):
    args = cli.build_parser().parse_args(["serve", *argv])
    return args.run.resolve(args, env=env or {})


def test_metrics_host_from_flag_env_and_config_file(tmp_path):
    path = tmp_path / "serve.toml"
    path.write_text('metrics-host = "10.0.0.1"\nmetrics-port = 9100\n')
    assert resolve([]).metrics_host == "127.0.0.1"
    assert resolve(["--config", str(path)]).metrics_host == "10.0.0.1"
    assert resolve(["--config", str(path)]).metrics_port == 9100
    assert resolve(["--config", str(path)], {"STREAMRET_METRICS_HOST": "0.0.0.0"}).metrics_host == "0.0.0.0"
    assert resolve(["--metrics-host", "::1", "--config", str(path)],
                   {"STREAMRET_METRICS_HOST": "0.0.0.0"}).metrics_host == "::1"
    serve = cli.build_parser().parse_args(["serve"]).run
    assert "[env: STREAMRET_METRICS_HOST]" in next(a.help for a in serve.actions if a.dest == "metrics_host")


def test_metrics_host_errors_name_the_value(engine):
    with pytest.raises(ValueError, match="--metrics-port 70000 is not a port"):
        ServerConfig(port=0, metrics_port=70000).check()
    with pytest.raises(ValueError, match="--metrics-host is empty"):
        ServerConfig(port=0, metrics_port=0, metrics_host=" ").check()
    with pytest.raises(OSError, match=r"cannot serve /metrics on 192\.0\.2\.1:0 .*--metrics-host"):
        BackgroundServer(engine, ServerConfig(port=0, metrics_port=0, metrics_host="192.0.2.1"))


def test_scrape_shows_counters_with_total_and_process_metrics(server):
    with Client(f"127.0.0.1:{server.port}") as c:
        c.stream("m-1", ["some text ", "for the metrics"])
    families, text = scrape(server.server.metrics_port)
    for name in ("streamret_engine_tokens_processed", "streamret_engine_steps", "streamret_rpcs",
                 "streamret_chunks", "streamret_chunk_bytes", "streamret_engine_durable_write_errors"):
        assert families[name].type == "counter", name
        assert f"# TYPE {name}_total counter" in text or f"# TYPE {name} counter" in text
        assert any(s.name == f"{name}_total" for s in families[name].samples), name
    assert "streamret_engine_tokens_processed " not in text  # no gauge under the bare name any more
    stats = server.counting._engine.stats()
    assert sample(families, "streamret_engine_tokens_processed_total") == stats["tokens_processed"] > 0
    assert sample(families, "streamret_engine_steps_total") == stats["steps"] > 0
    # streams per step: a histogram whose count is the steps and whose sum is the streams over all steps
    assert sample(families, "streamret_engine_step_batch_streams_count") == stats["steps"]
    assert sample(families, "streamret_engine_step_batch_streams_sum") == stats["step_streams"]
    assert sample(families, "streamret_engine_step_batch_streams_bucket", {"le": "1.0"}) >= 1
    assert sample(families, "streamret_rpcs_total", {"method": "Append", "code": "OK"}) >= 1
    assert sample(families, "streamret_engine_up") == 1
    # the process collectors are on the registry /metrics serves
    assert sample(families, "process_resident_memory_bytes") > 0
    assert sample(families, "process_cpu_seconds_total") > 0
    assert "python_info" in families and "python_gc_collections" in families


def test_engine_stats_are_read_on_scrape_not_polled(server):
    import time

    time.sleep(0.5)  # 25 health rounds at poll_s 0.02
    assert server.counting.stats_calls == 0
    with Client(f"127.0.0.1:{server.port}") as c:
        c.stream("m-2", ["one chunk"])
    before = server.counting._engine.stats()["tokens_processed"]
    families, _ = scrape(server.server.metrics_port)
    assert server.counting.stats_calls == 1
    assert sample(families, "streamret_engine_tokens_processed_total") == before  # current at the scrape
    scrape(server.server.metrics_port)
    assert server.counting.stats_calls == 2


def test_a_failing_engine_read_is_up_zero_not_a_failed_scrape(engine):
    class Broken(CountingEngine):
        def stats(self) -> dict:
            raise RuntimeError("the step loop stopped")

    srv = BackgroundServer(Broken(engine), ServerConfig(port=0, metrics_port=0))
    try:
        families, _ = scrape(srv.server.metrics_port)
        assert sample(families, "streamret_engine_up") == 0
        assert "process_resident_memory_bytes" in families
    finally:
        srv.stop()


def _grpc_calls(families: dict, method: str) -> dict:
    """{grpc_code: handled count} of one method, with its started count and handling-time count and type."""
    out = {}
    for s in families["grpc_server_handled"].samples:
        if s.name == "grpc_server_handled_total" and s.labels["grpc_method"] == method:
            out[s.labels["grpc_code"]] = s.value
            out["type"], out["service"] = s.labels["grpc_type"], s.labels["grpc_service"]
    labels = {"grpc_method": method}
    out["started"] = sample(families, "grpc_server_started_total", labels)
    out["timed"] = sample(families, "grpc_server_handling_seconds_count", labels)
    return out


def test_scrape_shows_the_standard_grpc_server_metrics(server):
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        streams = pb_grpc.StreamRetStub(channel)
        streams.OpenStream(pb.OpenStreamRequest(stream_id="g-1", create_if_missing=True), timeout=30)
        acks = list(streams.Append(iter([pb.AppendRequest(stream_id="g-1", seq=1, text="two "),
                                         pb.AppendRequest(stream_id="g-1", seq=2, text="chunks", flush=True)]),
                                   timeout=30))
        assert [a.error_code for a in acks] == [0, 0]
        with pytest.raises(grpc.RpcError) as missing:
            streams.GetEmbedding(pb.GetEmbeddingRequest(stream_id="no-such-stream"), timeout=30)
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND
        health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=30)
        release = threading.Event()

        def nothing():  # an Append call that sends no chunk until the client cancels it
            release.wait(30)
            yield from ()

        idle = streams.Append(nothing(), timeout=30)
        time.sleep(0.3)
        idle.cancel()
        deadline = time.monotonic() + 10
        while True:  # the server sees the cancel a moment later
            families, text = scrape(server.server.metrics_port)
            append = _grpc_calls(families, "Append")
            if append.get("CANCELLED", 0) + append.get("OK", 0) >= 2 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        # only now may the request iterator end: ended before the server saw the cancel, it reads as a
        # half-close and the call finishes OK (seen once under a loaded CI machine)
        release.set()
    assert "# TYPE grpc_server_started_total counter" in text
    assert "# TYPE grpc_server_handled_total counter" in text
    assert "# TYPE grpc_server_handling_seconds histogram" in text
    service = "streamret.v1.StreamRet"
    # the cancelled call counts CANCELLED, or OK where gRPC's cancel reached the idle handler as the end of its
    # requests (context.read() gives EOF) before gRPC cancelled its task: the handler then returned as after a
    # half-close (grpc.aio has no public way to tell the two apart; seen once in CI, session 40)
    codes = {k: v for k, v in append.items() if k in ("OK", "CANCELLED")}
    assert codes in ({"OK": 1, "CANCELLED": 1}, {"OK": 2}), append
    assert {k: v for k, v in append.items() if k not in codes} == {"type": "bidi_stream", "service": service,
                                                                    "started": 2, "timed": 2}
    assert _grpc_calls(families, "OpenStream") == {"OK": 1, "type": "unary", "service": service, "started": 1,
                                                  "timed": 1}
    assert _grpc_calls(families, "GetEmbedding") == {"NOT_FOUND": 1, "type": "unary", "service": service,
                                                    "started": 1, "timed": 1}
    assert _grpc_calls(families, "Check") == {"OK": 1, "type": "unary", "service": "grpc.health.v1.Health",
                                             "started": 1, "timed": 1}
    seconds = sample(families, "grpc_server_handling_seconds_sum", {"grpc_method": "OpenStream"})
    assert 0 < seconds < 30
