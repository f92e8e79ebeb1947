"""Logs: one access line per gRPC and HTTP call at INFO (protocol, method, tenant, status, duration, peer; never
the text), and `--log-format json` (also STREAMRET_LOG_FORMAT): one JSON object per line with the text format's
fields."""

import json
import logging
import sys
import urllib.error
import urllib.request

import grpc
import pytest
from helpers_server import ServeProcess

from streamret.client import Client
from streamret.engine import Engine, EngineConfig
from streamret.logs import TEXT_FORMAT, JsonFormatter, setup_logging
from streamret.service.proto_gen import streamret_pb2 as pb
from streamret.service.proto_gen import streamret_pb2_grpc as pb_grpc
from streamret.service.server import BackgroundServer, ServerConfig

SECRET = "the-secret-text-Ω-7f3a"


@pytest.fixture(scope="module")
def engine():
    with Engine.from_model("random:tiny", device="cpu", config=EngineConfig(durable_every_chunks=0)) as eng:
        yield eng


@pytest.fixture
def server(engine, tmp_path):
    tokens = tmp_path / "tokens"
    tokens.write_text("tok-acme acme\n")
    http = {"http_port": 0} if _has_aiohttp() else {}
    srv = BackgroundServer(engine, ServerConfig(port=0, auth_tokens=str(tokens), **http))
    yield srv
    srv.stop()


def _has_aiohttp() -> bool:
    try:
        import aiohttp  # noqa: F401
    except ImportError:
        return False
    return True


def access_records(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "streamret.access"]


def test_one_access_line_per_grpc_call_without_the_text(server, caplog):
    caplog.set_level(logging.INFO, logger="streamret.access")
    with Client(f"127.0.0.1:{server.port}", token="tok-acme") as c:
        c.stream("log-1", [SECRET, " and more " + SECRET])
        c.embedding_array("log-1")
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:  # no token: refused before a tenant is known
        with pytest.raises(grpc.RpcError) as refused:
            pb_grpc.StreamRetStub(channel).GetEmbedding(pb.GetEmbeddingRequest(stream_id="log-1"), timeout=10)
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    records = access_records(caplog)
    by_method = {}
    for r in records:
        by_method.setdefault(r.access["method"], []).append(r)
    assert len(by_method["Append"]) == 1  # one line per call, not per chunk
    append = by_method["Append"][0].access
    assert append["protocol"] == "grpc" and append["tenant"] == "acme" and append["status"] == "OK"
    assert append["duration_ms"] >= 0 and "127.0.0.1" in append["peer"]
    assert by_method["Append"][0].levelno == logging.INFO
    refusals = [r.access for r in by_method["GetEmbedding"] if r.access["status"] == "UNAUTHENTICATED"]
    assert refusals and refusals[0]["tenant"] == "-"
    assert any(r.access["status"] == "OK" and r.access["tenant"] == "acme" for r in by_method["GetEmbedding"])
    assert all(SECRET not in r.getMessage() and SECRET not in json.dumps(r.access) for r in caplog.records)
    assert all("log-1" not in r.getMessage() for r in records)  # nor the stream id


@pytest.mark.skipif(not _has_aiohttp(), reason="the HTTP front end needs aiohttp (the [server] extra)")
def test_one_access_line_per_http_call(server, caplog):
    caplog.set_level(logging.INFO, logger="streamret.access")
    url = f"http://127.0.0.1:{server.server.http_port}/v1/embeddings"
    body = json.dumps({"input": [SECRET], "model": "default"}).encode()

    def post(token: str) -> int:
        request = urllib.request.Request(url, body, {"Content-Type": "application/json",
                                                     "Authorization": f"Bearer {token}"})
        try:
            return urllib.request.urlopen(request, timeout=30).status
        except urllib.error.HTTPError as e:
            return e.code

    assert post("tok-acme") == 200
    assert post("wrong") == 401
    lines = [r.access for r in access_records(caplog) if r.access["protocol"] == "http"]
    assert [(a["method"], a["tenant"], a["http_status"], a["status"]) for a in lines] == [
        ("POST /v1/embeddings", "acme", 200, "OK"), ("POST /v1/embeddings", "-", 401, "UNAUTHENTICATED")]
    assert all(SECRET not in r.getMessage() for r in caplog.records)


def test_json_lines_have_the_text_formats_fields():
    record = logging.LogRecord("streamret.service", logging.WARNING, __file__, 1, "draining %d calls", (3,), None)
    record.access = {"method": "Append", "tenant": "acme", "message": "must not replace the message"}
    text = logging.Formatter(TEXT_FORMAT).format(record)
    line = json.loads(JsonFormatter().format(record))
    assert line["level"] == "WARNING" and line["logger"] == "streamret.service"
    assert line["message"] == "draining 3 calls" and text.endswith("WARNING streamret.service: draining 3 calls")
    assert line["time"].endswith("Z") and line["time"][:10] == text[:10]
    assert (line["method"], line["tenant"]) == ("Append", "acme")
    try:
        raise ValueError("boom\non two lines")
    except ValueError:
        failed = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    out = JsonFormatter().format(failed)
    assert "\n" not in out and "ValueError: boom" in json.loads(out)["exception"]


def test_bad_log_options_name_the_value():
    with pytest.raises(ValueError, match="--log-format 'xml' is not a log format; use one of text, json"):
        setup_logging("INFO", "xml")
    with pytest.raises(ValueError, match="--log-level 'LOUD' is not a level"):
        setup_logging("LOUD", "text")


def test_serve_writes_json_lines(tmp_path, monkeypatch):
    monkeypatch.setenv("STREAMRET_LOG_FORMAT", "json")
    with ServeProcess(tmp_path / "states", "--log-level", "INFO", cwd=tmp_path) as server:
        server.start()
        with Client(server.target) as c:
            c.stream("json-1", [SECRET])
        assert server.stop() == 0
        lines = [json.loads(line) for line in server.log().splitlines() if line.strip()]
    assert lines and all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    access = [line for line in lines if line["logger"] == "streamret.access"]
    assert any(a["method"] == "Append" and a["status"] == "OK" and a["tenant"] for a in access)
    assert SECRET not in server.log()
