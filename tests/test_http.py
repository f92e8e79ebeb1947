"""The HTTP front end (`serve --http-port`) called with the `openai` package: the same vectors as GetEmbedding of
the same text streamed in one chunk (auth on and off, float and base64), usage tokens, /health and /info, and
bad requests answered with the right HTTP status and an OpenAI-style JSON error."""

import base64
import json
import urllib.error
import urllib.request

import numpy as np
import pytest

openai = pytest.importorskip("openai")

from helpers_server import ServeProcess  # noqa: E402

from streamret.client import Client  # noqa: E402
from streamret.engine import Engine  # noqa: E402
from streamret.service.http import encode_vector, parse_embeddings_request  # noqa: E402
from streamret.service.limits import ServiceLimits  # noqa: E402
from streamret.service.proto_gen import streamret_pb2 as pb  # noqa: E402
from streamret.service.server import BackgroundServer, ServerConfig  # noqa: E402

MODEL = "random:tiny"
LONG = " ".join(f"Sentence {i} about naïve cafés, 日本語 and 🙂 boats on the river." for i in range(60))  # ~4 KB
BATCH_CHUNK = 1024  # the server cuts LONG into 3 chunks on the batch path; gRPC sends it as one
TEXTS = ["The river ran north.", "naïve café 日本語のテキスト。 Emoji 🙂🚀 and 𝄞 clefs!", LONG, "x"]


@pytest.fixture(scope="module")
def engine():
    with Engine.from_model(MODEL, device="cpu") as eng:
        yield eng


@pytest.fixture(scope="module")
def server(engine):
    limits = ServiceLimits(batch_chunk_bytes=BATCH_CHUNK)
    srv = BackgroundServer(engine, ServerConfig(port=0, http_port=0, model_name=MODEL, limits=limits))
    yield srv
    srv.stop()


def openai_client(port: int, token: str = "unused") -> "openai.OpenAI":
    return openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=token, max_retries=0, timeout=120)


def grpc_embeddings(port: int, texts: list[str], prefix: str, token: str | None = None) -> tuple[np.ndarray, int]:
    """GetEmbedding of each text streamed in one chunk; and the tokens read, summed."""
    vectors, tokens = [], 0
    with Client(f"127.0.0.1:{port}", token=token) as client:
        for i, text in enumerate(texts):
            client.stream(f"{prefix}-{i}", [text])
            embedding = client.embedding(f"{prefix}-{i}")
            vectors.append(np.asarray(embedding.values, np.float32))
            tokens += embedding.tokens
            client.close_stream(f"{prefix}-{i}")
    return np.stack(vectors), tokens


def assert_close(got: np.ndarray, want: np.ndarray) -> None:
    """Each row equal to 1e-5 relative (float32 sums over ~10^5 tokens differ in the last bits)."""
    assert got.shape == want.shape
    for g, w in zip(got, want):
        assert np.linalg.norm(w) > 0.5
        assert np.linalg.norm(g - w) <= 1e-5 * np.linalg.norm(w), np.abs(g - w).max()


def http(port: int, method: str, path: str, body: bytes | None = None, token: str | None = None) -> tuple[int, dict]:
    """A raw request, for what the openai package cannot send (a broken body, another route): status, JSON."""
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=60) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        assert e.headers.get("Content-Type", "").startswith("application/json")
        return e.code, json.loads(e.read())


def test_openai_embeddings_equal_get_embedding_of_one_chunk(server):
    assert len(LONG.encode()) > 2 * BATCH_CHUNK
    client = openai_client(server.server.http_port)
    want, tokens = grpc_embeddings(server.port, TEXTS, "ref")
    as_floats = client.embeddings.create(input=TEXTS, model=MODEL, encoding_format="float")
    as_base64 = client.embeddings.create(input=TEXTS, model=MODEL)  # the package asks for base64 and decodes it
    for response in (as_floats, as_base64):
        assert response.model == MODEL and response.object == "list"
        assert [d.index for d in response.data] == list(range(len(TEXTS)))
        assert_close(np.array([d.embedding for d in response.data], np.float32), want)
        assert response.usage.prompt_tokens == response.usage.total_tokens == tokens
    single = client.embeddings.create(input=TEXTS[1], model=MODEL, encoding_format="float")
    assert len(single.data) == 1
    assert_close(np.array([single.data[0].embedding], np.float32), want[1:2])


def test_base64_is_little_endian_float32_of_the_vector(server):
    raw = server.server.http_port
    status, body = http(raw, "POST", "/v1/embeddings",
                        json.dumps({"input": ["one", "two"], "model": MODEL, "encoding_format": "base64"}).encode())
    assert status == 200
    _, floats = http(raw, "POST", "/v1/embeddings", json.dumps({"input": ["one", "two"], "model": MODEL}).encode())
    for b, f in zip(body["data"], floats["data"]):
        decoded = np.frombuffer(base64.b64decode(b["embedding"]), dtype="<f4")  # two requests: two packings
        assert_close(decoded[None], np.asarray([f["embedding"]], np.float32))
    v = np.array([1.5, -2.0], np.float32)
    assert encode_vector(v, "base64") == base64.b64encode(b"\x00\x00\xc0\x3f\x00\x00\x00\xc0").decode()


def test_health_and_info(server):
    port = server.server.http_port
    assert http(port, "GET", "/health") == (200, {"status": "ok"})
    status, info = http(port, "GET", "/info")
    assert status == 200
    assert (info["model"], info["embedding_dim"], info["tokenizer"], info["auth"]) == (MODEL, 64, "ByteTokenizer",
                                                                                      False)
    assert info["fingerprint"] == server.server.engine.fingerprint and info["max_input_length"] is None
    assert info["limits"]["max_request_bytes"] == ServiceLimits().max_message_bytes
    assert info["roles"] == ["query"]  # random weights: no document map


def test_get_model_info_over_grpc_says_what_get_info_says(server):
    """GetModelInfo (gRPC) and GET /info (HTTP) describe the same model and limits."""
    _, info = http(server.server.http_port, "GET", "/info")
    with Client(f"127.0.0.1:{server.port}") as client:
        got = client.model_info()
    assert (got.model, got.fingerprint, got.embedding_dim, got.tokenizer, got.dtype, got.device) == (
        info["model"], info["fingerprint"], info["embedding_dim"], info["tokenizer"], info["dtype"], info["device"])
    assert (got.max_message_bytes, got.max_chunk_bytes, got.max_streams_per_tenant, got.batch_in_flight) == (
        info["limits"]["max_request_bytes"], info["limits"]["max_chunk_bytes"],
        info["limits"]["max_streams_per_tenant"], info["limits"]["batch_in_flight"])
    assert got.version == (info["version"] or "")
    assert [pb.EmbeddingRole.Name(r).removeprefix("EMBEDDING_ROLE_").lower() for r in got.roles] == info["roles"]


@pytest.mark.parametrize("kwargs, status, param, words", [
    (dict(input=""), 400, "input", ["input is empty"]),
    (dict(input=["fine", ""]), 400, "input", ["input[1] is empty"]),
    (dict(input=[]), 400, "input", ["empty list"]),
    (dict(input=["a\x00b"]), 400, "input", ["input[0]", "NUL byte at offset 1"]),
    (dict(input=[[1, 2, 3]]), 400, "input", ["token ids", "strings"]),
    (dict(input=[1, 2, 3]), 400, "input", ["token ids"]),
    (dict(input="x", model="text-embedding-3-small"), 404, "model", ["'text-embedding-3-small'", f"'{MODEL}'"]),
    (dict(input="x", encoding_format="int8"), 400, "encoding_format", ["'int8'", "'float' or 'base64'"]),
    (dict(input="x", dimensions=32), 400, "dimensions", ["32", "64 dimensions"]),
    (dict(input="x", extra_body={"inputs": ["typo"]}), 400, "inputs", ["'inputs'", "the fields are"]),
    (dict(input="x", extra_body={"role": "index"}), 400, "role", ["'index'", "'query'", "'document'"]),
])
def test_bad_requests_get_status_and_json_error(server, kwargs, status, param, words):
    client = openai_client(server.server.http_port)
    kwargs = {"model": MODEL, **kwargs}
    with pytest.raises(openai.APIStatusError) as info:
        client.embeddings.create(**kwargs)
    error = info.value
    assert error.status_code == status
    assert error.body["param"] == param and error.body["type"] in ("invalid_request_error", "not_found_error")
    assert error.body["code"] == ("NOT_FOUND" if status == 404 else "INVALID_ARGUMENT")
    for word in words:
        assert word in error.body["message"]


def test_broken_bodies_routes_and_methods_get_json_errors(server):
    port = server.server.http_port
    status, body = http(port, "POST", "/v1/embeddings", b"{not json")
    assert status == 400 and "not JSON" in body["error"]["message"]
    status, body = http(port, "POST", "/v1/embeddings", b'["a list"]')
    assert status == 400 and "not an object" in body["error"]["message"]
    status, body = http(port, "POST", "/v1/embeddings", json.dumps({"model": MODEL}).encode())
    assert status == 400 and body["error"]["param"] == "input"
    status, body = http(port, "GET", "/v1/nothing")
    assert status == 404 and "POST /v1/embeddings" in body["error"]["message"]
    status, body = http(port, "GET", "/v1/embeddings")
    assert status == 405 and "POST" in body["error"]["message"]


def test_too_large_body_and_draining(engine):
    limits = ServiceLimits(max_message_bytes=4096, max_chunk_bytes=1024)
    srv = BackgroundServer(engine, ServerConfig(port=0, http_port=0, model_name=MODEL, limits=limits))
    try:
        client = openai_client(srv.server.http_port)
        with pytest.raises(openai.APIStatusError) as info:
            client.embeddings.create(input=["word " * 1000], model=MODEL)
        assert info.value.status_code == 413 and info.value.body["code"] == "RESOURCE_EXHAUSTED"
        assert "4096 bytes" in info.value.body["message"] and "--max-message-mb" in info.value.body["message"]
        assert len(client.embeddings.create(input=["word " * 100], model=MODEL).data) == 1  # under it: fine

        srv.server.gate.draining = True  # what stop() sets first
        status, body = http(srv.server.http_port, "GET", "/health")
        assert status == 503 and body["error"]["code"] == "UNAVAILABLE"
        with pytest.raises(openai.APIStatusError) as info:
            client.embeddings.create(input="x", model=MODEL)
        assert info.value.status_code == 503 and "shutting down" in info.value.body["message"]
        assert info.value.response.headers["Retry-After"] == "1"
        srv.server.gate.draining = False
    finally:
        srv.stop()


def test_parse_refuses_non_string_items_and_surrogates_by_position():
    with pytest.raises(Exception, match=r"input\[1\] is 3, not a string"):
        parse_embeddings_request(json.dumps({"input": ["a", 3], "model": "m"}).encode(), "m", 8)
    with pytest.raises(Exception, match=r"input\[0\] is not valid Unicode"):
        parse_embeddings_request(b'{"input": ["\\ud800"], "model": "m"}', "m", 8)
    with pytest.raises(Exception, match="'model' is null"):
        parse_embeddings_request(b'{"input": "a", "model": null}', "m", 8)
    parsed = parse_embeddings_request(b'{"input": "a", "model": "m", "dimensions": 8, "user": "u"}', "m", 8)
    assert (parsed.texts, parsed.encoding_format) == ([b"a"], "float")


def test_serve_process_with_tokens_http_port_from_env(tmp_path, monkeypatch):
    """A real `streamret serve` (--http-port from STREAMRET_HTTP_PORT) with --auth-tokens: the token's tenant
    and access as over gRPC, a read-only token may embed, no token or a wrong one is a 401."""
    tokens = tmp_path / "tokens.txt"
    tokens.write_text("writer-token acme\nreader-token acme read\n")
    monkeypatch.setenv("STREAMRET_HTTP_PORT", "0")
    with ServeProcess(tmp_path / "states", "--auth-tokens", str(tokens), cwd=tmp_path) as proc:
        proc.start()
        assert proc.http_port is not None
        texts = TEXTS[:2]
        want, tokens_read = grpc_embeddings(proc.port, texts, "auth", token="writer-token")
        for token in ("writer-token", "reader-token"):
            got = openai_client(proc.http_port, token).embeddings.create(input=texts, model=MODEL)
            assert_close(np.array([d.embedding for d in got.data], np.float32), want)
            assert got.usage.prompt_tokens == tokens_read
        with pytest.raises(openai.AuthenticationError) as info:
            openai_client(proc.http_port, "wrong-token").embeddings.create(input="x", model=MODEL)
        assert info.value.status_code == 401 and "unknown bearer token" in info.value.body["message"]
        no_token = json.dumps({"input": "x", "model": MODEL}).encode()
        status, body = http(proc.http_port, "POST", "/v1/embeddings", no_token)
        assert status == 401 and "missing 'authorization'" in body["error"]["message"]
        assert http(proc.http_port, "GET", "/health") == (200, {"status": "ok"})  # no token needed
        assert http(proc.http_port, "GET", "/info")[0] == 401
        status, info = http(proc.http_port, "GET", "/info", token="reader-token")
        assert (status, info["auth"], info["tenant"]) == (200, True, "acme")
        assert proc.stop() == 0


def test_https_with_the_grpc_certificate(engine, tmp_path):
    import ssl
    import subprocess

    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost"],
                   check=True, capture_output=True)
    srv = BackgroundServer(engine, ServerConfig(port=0, http_port=0, model_name=MODEL, tls_cert=str(cert),
                                                tls_key=str(key)))
    try:
        context = ssl.create_default_context(cafile=str(cert))
        body = json.dumps({"input": ["over https"], "model": MODEL}).encode()
        request = urllib.request.Request(f"https://localhost:{srv.server.http_port}/v1/embeddings", data=body,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, context=context, timeout=60) as resp:
            assert resp.status == 200 and len(json.loads(resp.read())["data"][0]["embedding"]) == 64
        with pytest.raises((urllib.error.URLError, ConnectionError)):  # plain HTTP to the TLS port: no answer
            urllib.request.urlopen(f"http://localhost:{srv.server.http_port}/health", timeout=10).read()
    finally:
        srv.stop()
