"""Embedding roles over the API (issue 18): EmbeddingRole on GetEmbedding, CloseStream, EmbedTable(s) and
GetModelInfo, `role` on the HTTP front, and the Python client's `role=` (checked before sending; an older server
that ignores it is caught from the answer's role).

Two in-process servers: one on a checkpoint folder with a document map (tests/helpers_roles.py), one on random:tiny
(no map: "document" is refused, and refusing it must leave a stream as it was)."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from concurrent import futures

import grpc
import numpy as np
import pyarrow as pa
import pytest
from helpers_roles import folder_with_document_map
from helpers_rpc import RpcCaller

from streamret.batch.arrow_table import table_from_ipc, table_to_ipc
from streamret.client import AsyncClient, Client, RetryPolicy, RoleIgnored
from streamret.engine import Engine
from streamret.model.document_map import ROLES
from streamret.service.limits import ServiceLimits
from streamret.service.proto_gen import streamret_pb2 as pb
from streamret.service.proto_gen import streamret_pb2_grpc as pb_grpc
from streamret.service.roles import role_name, role_number
from streamret.service.server import BackgroundServer, ServerConfig

SC = grpc.StatusCode
TEXT = "The river ran north. Boats carried grain to the city! Every spring the floods came back; people moved uphill. "
DOCS = ["one short document", TEXT * 4, "a third, about boats and grain"]
QUERY, DOCUMENT = pb.EMBEDDING_ROLE_QUERY, pb.EMBEDDING_ROLE_DOCUMENT


def _serve(engine: Engine, name: str) -> BackgroundServer:
    # small batch chunks: TEXT * 4 crosses several on the batch path
    return BackgroundServer(engine, ServerConfig(port=0, http_port=0, model_name=name,
                                                 limits=ServiceLimits(batch_chunk_bytes=128)))


@pytest.fixture(scope="module")
def mapped(tmp_path_factory):
    """(server, DocumentMap): a model folder with a document map, served."""
    folder, doc_map = folder_with_document_map(tmp_path_factory.mktemp("mapped"))
    with Engine.from_model(str(folder), device="cpu") as engine:
        assert engine.roles.available == ("query", "document")
        srv = _serve(engine, "mapped")
        yield srv, doc_map
        srv.stop()


@pytest.fixture(scope="module")
def plain():
    """random:tiny served: no document map."""
    with Engine.from_model("random:tiny", device="cpu") as engine:
        srv = _serve(engine, "random:tiny")
        yield srv
        srv.stop()


def _values(message) -> np.ndarray:
    return np.asarray(message.values, np.float32)


def _column(table: pa.Table) -> np.ndarray:
    return np.asarray(table.column("embedding").to_pylist(), np.float32)


def _http(port: int, body: dict | None = None, path: str = "/v1/embeddings") -> tuple[int, dict]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method="POST" if data else "GET",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


# ------------------------------------------------------------------------------------------------
# GetEmbedding and CloseStream


def test_get_embedding_document_is_the_map_of_the_query_embedding(mapped):
    srv, doc_map = mapped
    rpc = RpcCaller(f"127.0.0.1:{srv.port}")
    with Client(f"127.0.0.1:{srv.port}") as client:
        client.stream("doc-1", [TEXT, TEXT])
        query = client.embedding("doc-1")
        document = client.embedding("doc-1", role="document")
        assert np.array_equal(client.embedding_array("doc-1", role="document"), _values(document))
    assert (query.role, document.role) == (QUERY, DOCUMENT)  # echoed, never left unset
    assert document.applied_seq == query.applied_seq and document.tokens == query.tokens
    q, d = _values(query), _values(document)
    assert np.allclose(d, doc_map(q), atol=1e-5)
    assert abs(np.linalg.norm(d) - 1) < 1e-5
    assert not np.allclose(d, q, atol=1e-2)  # the map does something: the two roles differ
    # a request that leaves the role unset (every client before roles) gets the query embedding, named as such
    status, _, unset = rpc.call("GetEmbedding", pb.GetEmbeddingRequest(stream_id="doc-1"))
    assert status == SC.OK and unset.role == QUERY and np.array_equal(_values(unset), q)


def test_close_stream_with_document_returns_the_mapped_embedding(mapped):
    srv, doc_map = mapped
    rpc = RpcCaller(f"127.0.0.1:{srv.port}")
    with Client(f"127.0.0.1:{srv.port}") as client:
        client.stream("doc-close", [TEXT])
        query = _values(client.embedding("doc-close"))
        closed = client.close_stream("doc-close", role="document")
    assert closed.embedding.role == DOCUMENT
    assert np.allclose(_values(closed.embedding), doc_map(query), atol=1e-5)
    assert closed.summary.segments  # the rest of the answer is as before
    status, _, _ = rpc.call("GetEmbedding", pb.GetEmbeddingRequest(stream_id="doc-close"))
    assert status == SC.NOT_FOUND  # it was closed


@pytest.mark.parametrize("rpc_name, request_, field", [
    ("GetEmbedding", pb.GetEmbeddingRequest(stream_id="odd", role=7), "GetEmbeddingRequest.role 7"),
    ("CloseStream", pb.CloseStreamRequest(stream_id="odd", role=7), "CloseStreamRequest.role 7"),
    ("EmbedTable", pb.EmbedTableRequest(role=9), "EmbedTableRequest.role 9"),
    ("EmbedTables", [pb.EmbedTablesRequest(role=-1)], "EmbedTablesRequest.role -1"),
])
def test_an_unknown_role_number_is_invalid_argument_and_closes_nothing(mapped, rpc_name, request_, field):
    srv, _ = mapped
    with Client(f"127.0.0.1:{srv.port}") as client:
        sent = client.stream("odd", [TEXT]).seq
        status, details, _ = RpcCaller(f"127.0.0.1:{srv.port}").call(rpc_name, request_)
        assert status == SC.INVALID_ARGUMENT and field in details and "EMBEDDING_ROLE_DOCUMENT" in details
        assert client.embedding("odd").applied_seq == sent  # still open
        client.close_stream("odd")


def test_a_model_without_a_map_refuses_document_and_leaves_the_stream_as_it_was(plain):
    rpc = RpcCaller(f"127.0.0.1:{plain.port}")
    with Client(f"127.0.0.1:{plain.port}") as client:
        client.append("kept", "an unfinished wor")  # no flush: the tail "wor" waits for more text
        before = client.open("kept")
        for name, request in (("GetEmbedding", pb.GetEmbeddingRequest(stream_id="kept", role=DOCUMENT)),
                              ("CloseStream", pb.CloseStreamRequest(stream_id="kept", role=DOCUMENT))):
            status, details, _ = rpc.call(name, request)
            assert status == SC.FAILED_PRECONDITION, (name, status, details)
            assert "document map" in details and "load a checkpoint folder that has one" in details
            assert "role 'query'" in details
        with pytest.raises(grpc.RpcError) as refused:
            client.close_stream("kept", role="document")
        assert refused.value.code() == SC.FAILED_PRECONDITION
        # neither closed nor flushed: the same tokens, and the next chunk goes on where it was
        after = client.open("kept")
        assert (after.applied_seq, after.tokens) == (before.applied_seq, before.tokens)
        assert client.append("kept", "d.", flush=True).seq == 2
        closed = client.close_stream("kept")
    assert closed.embedding.role == QUERY and closed.embedding.applied_seq == 2


# ------------------------------------------------------------------------------------------------
# batches, the HTTP front, GetModelInfo


def test_embed_table_and_encode_with_document(mapped):
    srv, doc_map = mapped
    table = pa.table({"id": list(range(len(DOCS))), "text": DOCS})
    with Client(f"127.0.0.1:{srv.port}") as client:
        query = _column(client.embed_table(table))
        document = _column(client.embed_table(table, role="document"))
        encoded = client.encode(DOCS, role="document")
        assert np.allclose(client.encode(DOCS), query, atol=1e-5)
    assert np.allclose(document, doc_map(query), atol=1e-5)
    assert np.allclose(np.linalg.norm(document, axis=1), 1, atol=1e-5)
    assert np.allclose(encoded, document, atol=1e-5)
    # EmbedTables: each request's payload in its own role, echoed per answer
    requests = [pb.EmbedTablesRequest(arrow_ipc=table_to_ipc(table), role=r)
                for r in (DOCUMENT, pb.EMBEDDING_ROLE_UNSPECIFIED)]
    status, _, answers = RpcCaller(f"127.0.0.1:{srv.port}").call("EmbedTables", requests)
    assert status == SC.OK and [a.role for a in answers] == [DOCUMENT, QUERY]
    assert np.allclose(_column(table_from_ipc(answers[0].arrow_ipc)), document, atol=1e-5)
    assert np.allclose(_column(table_from_ipc(answers[1].arrow_ipc)), query, atol=1e-5)


def test_embed_table_document_without_a_map_is_refused_before_any_row(plain):
    table = pa.table({"id": [1], "text": ["a document"]})
    with Client(f"127.0.0.1:{plain.port}") as client:
        for _ in range(3):  # more than a tenant's places for batch calls, were a refusal to keep one
            with pytest.raises(grpc.RpcError) as refused:
                client.embed_table(table, role="document")
            assert refused.value.code() == SC.FAILED_PRECONDITION and "document map" in refused.value.details()
        assert client.embed_table(table).column("error").to_pylist() == [None]


def test_http_front_takes_a_role(mapped, plain):
    srv, doc_map = mapped
    port = srv.server.http_port
    body = {"input": DOCS, "model": "mapped"}
    status, query = _http(port, body)
    assert status == 200
    status, document = _http(port, {**body, "role": "document"})
    assert status == 200
    q = np.asarray([d["embedding"] for d in query["data"]], np.float32)
    d = np.asarray([d["embedding"] for d in document["data"]], np.float32)
    assert np.allclose(d, doc_map(q), atol=1e-5) and not np.allclose(d, q, atol=1e-2)
    assert np.allclose(np.asarray([x["embedding"] for x in _http(port, {**body, "role": None})[1]["data"]]), q)
    for bad in ("index", "DOCUMENT", 2, ["document"]):
        status, error = _http(port, {**body, "role": bad})
        assert status == 400 and error["error"]["param"] == "role", error
        assert error["error"]["code"] == "INVALID_ARGUMENT" and "'query'" in error["error"]["message"]
        assert "Traceback" not in error["error"]["message"]
    status, error = _http(plain.server.http_port, {"input": "x", "model": "random:tiny", "role": "document"})
    assert status == 400 and error["error"]["code"] == "FAILED_PRECONDITION"
    assert "document map" in error["error"]["message"]


def test_model_info_lists_the_roles_served(mapped, plain):
    srv, _ = mapped
    for server, names in ((srv, ["query", "document"]), (plain, ["query"])):
        with Client(f"127.0.0.1:{server.port}") as client:
            assert list(client.model_info().roles) == [role_number(n) for n in names]
        assert _http(server.server.http_port, path="/info")[1]["roles"] == names


# ------------------------------------------------------------------------------------------------
# the client and the command


def test_the_client_checks_the_role_before_sending():
    with Client("127.0.0.1:1", retry=RetryPolicy(timeout_s=0.5, connect_timeout_s=0.2)) as client:
        calls = [lambda r: client.embedding("s", role=r), lambda r: client.embedding_array("s", role=r),
                 lambda r: client.close_stream("s", role=r), lambda r: client.encode(["a"], role=r),
                 lambda r: client.embed_table(pa.table({"id": [1], "text": ["a"]}), role=r)]
        for call in calls:
            for bad in ("Document", "index", None, 2):
                with pytest.raises(ValueError, match=r"role=.*use 'query'.*or 'document'"):
                    call(bad)

    async def main():
        async with AsyncClient("127.0.0.1:1") as client:
            with pytest.raises(ValueError, match="role='passage'"):
                await client.embedding("s", role="passage")

    asyncio.run(main())


class _OldServer(pb_grpc.StreamRetServicer):
    """A server from before roles: it knows no `role` field, so its answers leave it unset."""

    def GetEmbedding(self, request, context):
        return pb.GetEmbeddingResponse(stream_id=request.stream_id, applied_seq=1, tokens=3, values=[0.6, 0.8])


def test_the_client_catches_a_server_that_ignores_the_role():
    server = grpc.server(futures.ThreadPoolExecutor(2))
    pb_grpc.add_StreamRetServicer_to_server(_OldServer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with Client(f"127.0.0.1:{port}") as client:
            assert list(client.embedding("s").values) == pytest.approx([0.6, 0.8])  # query: what it gives
            with pytest.raises(RoleIgnored, match="predates embedding roles") as ignored:
                client.embedding("s", role="document")
        assert ignored.value.asked == "document" and list(ignored.value.response.values) == pytest.approx([0.6, 0.8])
    finally:
        server.stop(0)


def test_stream_command_prints_the_document_embedding(mapped, plain, tmp_path, capsys):
    from streamret.cli import main

    srv, doc_map = mapped
    path = tmp_path / "doc.txt"
    path.write_text(TEXT)
    assert main(["stream", str(path), "--server", f"127.0.0.1:{srv.port}", "--stream-id", "cli-doc", "--keep",
                 "--role", "document", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    with Client(f"127.0.0.1:{srv.port}") as client:
        query = client.embedding_array("cli-doc")
    assert out["role"] == "document" and np.allclose(out["embedding"], doc_map(query), atol=1e-5)
    # a model without a map: one line, exit 2, the stream not closed
    code = main(["stream", str(path), "--server", f"127.0.0.1:{plain.port}", "--stream-id", "cli-plain",
                 "--role", "document", "--no-progress"])
    assert code == 2 and "FAILED_PRECONDITION" in capsys.readouterr().err
    with Client(f"127.0.0.1:{plain.port}") as client:
        assert client.embedding("cli-plain").applied_seq >= 1


def test_every_role_name_has_its_own_wire_number():
    assert len({role_number(n) for n in ROLES}) == len(ROLES)
    assert [role_name(role_number(n), "f") for n in ROLES] == list(ROLES)
    assert role_name(pb.EMBEDDING_ROLE_UNSPECIFIED, "f") == "query"
