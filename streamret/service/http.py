"""The HTTP front end of `streamret serve --http-port PORT`: OpenAI-compatible embeddings, health and info.

    POST /v1/embeddings   {"input": "text" | ["text", ...], "model": NAME, "encoding_format": "float" | "base64",
                           "role": "query" | "document"}
    GET  /health          200 {"status": "ok"}; 503 while draining or while the durable store refuses writes
    GET  /info            the served model (name, fingerprint, embedding size, tokenizer, dtype, device, roles)
                          and limits

It runs on the gRPC server's event loop (aiohttp, chosen by measurement: bench/RESULTS.md, HTTP front end)
and shares its gate: the same bearer tokens and tenants (`Authorization: Bearer <token>`; a read-only token
may embed), the same draining, in-flight accounting and metrics, and the same limits (a request body is a
message: at most --max-message-mb). Each input is one whole document of any length; the inputs of one
request are embedded in one engine call, the batch path of `EmbedTable` and `encode`, so each vector equals
`GetEmbedding` of the same text streamed in one chunk. Errors carry an HTTP status and an OpenAI-style body,
`{"error": {"message", "type", "param", "code"}}`, whose `code` is the gRPC status name the same problem
gets over gRPC; `/health` needs no token, everything else does when the server has tokens.

`role` (not OpenAI's: an extension) is the embedding role, as EmbeddingRole on gRPC: "query" (the default: the
embedding as the model computes it) or "document" (the model's document map applied, for whole documents put into
an index; 400 FAILED_PRECONDITION when the model has none). /info lists the roles the model serves.
"""

from __future__ import annotations

import base64
import json
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
import numpy as np
import pyarrow as pa
from aiohttp import web

from ..embedding_roles import ROLES
from ..errors import InvalidArgument, NotFound, ResourceExhausted, StreamRetError
from ..textcheck import InvalidText, check_bytes
from .auth import Caller, scrub
from .gate import Gate
from .model_info import describe_limits, describe_model, served_version
from .status import status_of
from .tenant_engine import TenantEngine

ENCODING_FORMATS = ("float", "base64")
_FIELDS = ("input", "model", "encoding_format", "dimensions", "user", "role")

# gRPC status -> (HTTP status, OpenAI error type). One mapping for every error the front end answers.
_HTTP_OF: dict[grpc.StatusCode, tuple[int, str]] = {
    grpc.StatusCode.INVALID_ARGUMENT: (400, "invalid_request_error"),
    grpc.StatusCode.FAILED_PRECONDITION: (400, "invalid_request_error"),
    grpc.StatusCode.OUT_OF_RANGE: (400, "invalid_request_error"),
    grpc.StatusCode.UNAUTHENTICATED: (401, "authentication_error"),
    grpc.StatusCode.PERMISSION_DENIED: (403, "permission_error"),
    grpc.StatusCode.NOT_FOUND: (404, "not_found_error"),
    grpc.StatusCode.ALREADY_EXISTS: (409, "conflict_error"),
    grpc.StatusCode.RESOURCE_EXHAUSTED: (429, "rate_limit_error"),
    grpc.StatusCode.CANCELLED: (499, "cancelled"),
    grpc.StatusCode.UNIMPLEMENTED: (501, "server_error"),
    grpc.StatusCode.UNAVAILABLE: (503, "service_unavailable_error"),
    grpc.StatusCode.DEADLINE_EXCEEDED: (504, "timeout_error"),
}
_RETRY_AFTER_S = {429: "1", 503: "1"}


def http_status_of(code: grpc.StatusCode) -> tuple[int, str]:
    """(HTTP status, OpenAI error type) for a gRPC status code; anything unlisted is a 500 server_error."""
    return _HTTP_OF.get(code, (500, "server_error"))


class _BadField(InvalidArgument):
    """An InvalidArgument about one field of the request body (reported as the error's `param`)."""

    def __init__(self, param: str, message: str):
        super().__init__(message)
        self.param = param


class _ModelNotFound(NotFound):
    param = "model"


class _BodyTooLarge(ResourceExhausted):
    http_status = 413


@dataclass(frozen=True)
class EmbeddingsRequest:
    texts: list[bytes]  # UTF-8, each checked: non-empty, no NUL byte
    model: str
    encoding_format: str
    role: str = "query"  # "query" or "document" (the embedding role)


def parse_embeddings_request(body: bytes, served_model: str, dim: int | None) -> EmbeddingsRequest:
    """Check the JSON body of POST /v1/embeddings; raise InvalidArgument (or NotFound for another model)
    naming the bad field and what fits."""
    try:
        request = json.loads(body)
    except (UnicodeDecodeError, ValueError) as e:
        raise InvalidArgument(f"the request body is not JSON ({e}); send a JSON object such as "
                              '{"input": ["some text"], "model": "' + served_model + '"}') from None
    if not isinstance(request, dict):
        raise InvalidArgument(f"the request body is a JSON {type(request).__name__}, not an object; send "
                              '{"input": [...], "model": "' + served_model + '"}')
    unknown = sorted(set(request) - set(_FIELDS))
    if unknown:
        raise _BadField(unknown[0], f"unknown field(s) {', '.join(map(repr, unknown))}; the fields are "
                                    f"{', '.join(_FIELDS)}")
    if "input" not in request:
        raise _BadField("input", "the request has no 'input'; give a string or a list of strings to embed")
    model = request.get("model")
    if not isinstance(model, str):
        raise _BadField("model", f"'model' is {_short(model)}; give the served model's name, {served_model!r}")
    if model != served_model:
        raise _ModelNotFound(f"model {model!r} is not served here; this server serves {served_model!r} "
                             "(GET /info shows it)")
    encoding = request.get("encoding_format", "float")
    if encoding is None:
        encoding = "float"
    if encoding not in ENCODING_FORMATS:
        raise _BadField("encoding_format", f"encoding_format {_short(encoding)} is not supported; use 'float' or "
                                           "'base64' (little-endian float32)")
    dimensions = request.get("dimensions")
    if dimensions is not None and (isinstance(dimensions, bool) or dimensions != dim):
        raise _BadField("dimensions", f"dimensions {_short(dimensions)}: this model's embeddings have {dim} "
                                      f"dimensions and are not shortened; leave 'dimensions' out or pass {dim}")
    user = request.get("user")
    if user is not None and not isinstance(user, str):
        raise _BadField("user", f"'user' is {_short(user)}; it must be a string")
    return EmbeddingsRequest(_texts(request["input"]), model, encoding, _role(request.get("role")))


def _role(value: Any) -> str:
    """The embedding role of the body's optional `role` (absent or null: "query")."""
    if value is None:
        return "query"
    if value not in ROLES:  # (a non-string is not in it either)
        raise _BadField("role", f"role {_short(value)} is not an embedding role; use 'query' (the plain embedding, "
                                "the default) or 'document' (the model's document map applied: whole documents "
                                "for an index; GET /info lists the roles this model serves)")
    return value


def _texts(value: Any) -> list[bytes]:
    if isinstance(value, str):
        return [_text(value, "input")]
    if not isinstance(value, list):
        raise _BadField("input", f"'input' is {_short(value)}; give a string or a list of strings")
    if not value:
        raise _BadField("input", "'input' is an empty list; give at least one string")
    if all(isinstance(v, int) and not isinstance(v, bool) for v in value) or \
            any(isinstance(v, list) for v in value):
        raise _BadField("input", "'input' holds token ids; this server reads text (it tokenizes with its own "
                                 "model's tokenizer): send the strings themselves")
    return [_text(v, f"input[{i}]") for i, v in enumerate(value)]


def _text(value: Any, where: str) -> bytes:
    if not isinstance(value, str):
        raise _BadField("input", f"{where} is {_short(value)}, not a string; send strings only")
    try:
        data = value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise _BadField("input", f"{where} is not valid Unicode (a lone surrogate at character {e.start}); "
                                 "remove it") from None
    try:
        check_bytes(data, where)  # non-empty, no NUL byte: the rule for every text (streamret/textcheck.py)
    except InvalidText as e:
        raise _BadField("input", str(e)) from None
    return data


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=repr) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def encode_vector(vector: np.ndarray, encoding_format: str) -> list[float] | str:
    """One embedding as the response carries it: a list of floats, or base64 of its little-endian float32 bytes."""
    if encoding_format == "base64":
        return base64.b64encode(np.ascontiguousarray(vector, dtype="<f4").tobytes()).decode("ascii")
    return vector.astype(np.float32).tolist()


class HttpFrontEnd:
    """The aiohttp application and its listener; `start` on the server's event loop, `stop` after the drain.

    `serving` says whether the server takes work (False while the durable store refuses writes)."""

    def __init__(self, gate: Gate, streams: TenantEngine, *, model_name: str,
                 serving: Callable[[], bool] = lambda: True):
        self.gate = gate
        self.streams = streams
        self.model_name = model_name
        self.serving = serving
        self.dim = streams.engine.embed_dim
        self.port: int | None = None
        self._runner: web.AppRunner | None = None
        self.app = web.Application(middlewares=[self._errors], client_max_size=streams.limits.max_message_bytes)
        self.app.router.add_post("/v1/embeddings", self.embeddings)
        self.app.router.add_get("/health", self.health)
        self.app.router.add_get("/info", self.info)

    async def start(self, host: str, port: int, ssl_context: ssl.SSLContext | None = None) -> int:
        """Listen on host:port (0: any free port); return the bound port."""
        runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, host, port, ssl_context=ssl_context)
        try:
            await site.start()
        except OSError as e:
            await runner.cleanup()
            raise OSError(f"cannot bind the HTTP port {host}:{port}: {e.strerror}; pick another --http-port") from None
        self._runner = runner
        self.port = runner.addresses[0][1]
        return self.port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # ------------------------------------------------------------------------------------------
    # routes

    async def embeddings(self, request: web.Request) -> web.Response:
        started, caller, name = time.perf_counter(), None, "POST /v1/embeddings"
        try:
            caller = self._enter(request)
            try:
                body = await self._body(request)
                parsed = parse_embeddings_request(body, self.model_name, self.dim)
                vectors, tokens = await self._embed(caller, parsed.texts, parsed.role)
            finally:
                self.gate.leave(caller)
        except Exception as exc:  # noqa: BLE001  (mapped to a status and a JSON body, never a traceback)
            return self._fail(name, exc, caller, started, request)
        self.gate.finished("http", name, grpc.StatusCode.OK, started, caller, request.remote, 200)
        return _json(200, {
            "object": "list",
            "data": [{"object": "embedding", "index": i, "embedding": encode_vector(v, parsed.encoding_format)}
                     for i, v in enumerate(vectors)],
            "model": parsed.model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        })

    async def health(self, request: web.Request) -> web.Response:
        if self.gate.draining:
            return _error(503, "the server is shutting down", "service_unavailable_error", "UNAVAILABLE")
        if not self.serving():
            return _error(503, "the durable store refuses writes; the server takes no new chunks until it does",
                          "service_unavailable_error", "UNAVAILABLE")
        return _json(200, {"status": "ok"})

    async def info(self, request: web.Request) -> web.Response:
        started, caller = time.perf_counter(), None
        try:
            caller = self._enter(request)
            self.gate.leave(caller)
        except Exception as exc:  # noqa: BLE001
            return self._fail("GET /info", exc, caller, started, request)
        limits = self.streams.limits
        out = describe_model(self.streams.engine, self.model_name)
        out.update(version=served_version(), auth=self.gate.auth.enabled, tenant=caller.tenant,
                   limits=describe_limits(limits))
        self.gate.finished("http", "GET /info", grpc.StatusCode.OK, started, caller, request.remote, 200)
        return _json(200, out)

    # ------------------------------------------------------------------------------------------

    def _enter(self, request: web.Request) -> Caller:
        header = request.headers.get("Authorization")
        return self.gate.admit([("authorization", header)] if header is not None else [])

    async def _body(self, request: web.Request) -> bytes:
        try:
            return await request.read()
        except web.HTTPRequestEntityTooLarge:
            size = request.content_length
            raise _BodyTooLarge(
                f"the request body{f' of {size} bytes' if size is not None else ''} exceeds the server's limit of "
                f"{self.streams.limits.max_message_bytes} bytes; send fewer or shorter inputs per request "
                "(or raise the server's --max-message-mb)") from None

    async def _embed(self, caller: Caller, texts: list[bytes], role: str = "query") -> tuple[list[np.ndarray], int]:
        """All the request's inputs in one engine call (the batch path), in `role`; raise the first row's error."""
        table = pa.table({"id": pa.array(range(len(texts)), pa.int64()), "text": pa.array(texts, pa.binary())})
        out = await self.streams.embed_table(caller, table, summary_k=0, role=role)
        for i, error in enumerate(out.column("error").to_pylist()):
            if error is not None:
                raise _row_error(i, error)
        flat = out.column("embedding").combine_chunks().flatten().to_numpy(zero_copy_only=False)
        vectors = np.asarray(flat, dtype=np.float32).reshape(len(texts), -1)
        return list(vectors), int(sum(out.column("tokens").to_pylist()))

    def _fail(self, name: str, exc: Exception, caller: Caller | None, started: float,
              request: web.Request) -> web.Response:
        code, message = status_of(exc, method=name)
        if caller is not None:
            message = scrub(message, caller.tenant)
        status, kind = http_status_of(code)
        status = getattr(exc, "http_status", status)
        self.gate.finished("http", name, code, started, caller, request.remote, status)
        return _error(status, message, kind, code.name, getattr(exc, "param", None))

    @web.middleware
    async def _errors(self, request: web.Request, handler) -> web.StreamResponse:
        """aiohttp's own refusals (no such path, wrong method) as JSON errors like every other."""
        try:
            return await handler(request)
        except web.HTTPException as e:
            if e.status < 400:
                raise
            routes = "POST /v1/embeddings, GET /health, GET /info"
            if e.status == 404:
                return _error(404, f"no route {request.method} {request.path}; the routes are {routes}",
                              "not_found_error", "NOT_FOUND")
            if e.status == 405:
                allowed = ", ".join(sorted(getattr(e, "allowed_methods", ()) or ()))
                return _error(405, f"{request.method} is not allowed on {request.path}; use {allowed or routes}",
                              "invalid_request_error", "UNIMPLEMENTED")
            return _error(e.status, e.reason, "invalid_request_error", "INVALID_ARGUMENT")


def _row_error(index: int, error: str) -> StreamRetError:
    """The error of row `index` of an embed_table result ('CODE: message') as the exception to answer."""
    code, _, message = error.partition(": ")
    status = getattr(grpc.StatusCode, code, None) if message else None
    exc = StreamRetError(f"input[{index}] could not be embedded: {message if status else error}")
    exc.code = code if status is not None else "INTERNAL"
    return exc


def _json(status: int, payload: dict) -> web.Response:
    return web.Response(status=status, body=json.dumps(payload, allow_nan=False).encode(),
                        content_type="application/json")


def _error(status: int, message: str, kind: str, code: str, param: str | None = None) -> web.Response:
    response = _json(status, {"error": {"message": message, "type": kind, "param": param, "code": code}})
    if status in _RETRY_AFTER_S:
        response.headers["Retry-After"] = _RETRY_AFTER_S[status]
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="streamret"'
    return response


def ssl_context(cert: str, key: str, client_ca: str | None = None) -> ssl.SSLContext:
    """The server's TLS context for HTTPS, from the same --tls-cert, --tls-key and --tls-client-ca as gRPC."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    if client_ca is not None:  # mutual TLS: a client without a certificate this CA signed is refused
        context.load_verify_locations(client_ca)
        context.verify_mode = ssl.CERT_REQUIRED
    return context

