"""End to end: real gRPC servers on loopback ports, driven with the generated stubs (and the client).

Every RPC, every status code the API promises, health, reflection, tenant isolation for every RPC,
100 concurrent streams, drain, SIGTERM, resume after a restart, TLS, metrics. random:tiny on CPU.
"""

import asyncio
import base64
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import grpc
import numpy as np
import pyarrow as pa
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from helpers_tokenizers import GatedTokenizer

from streamret.batch.arrow_table import table_from_ipc, table_to_ipc
from streamret.client import AsyncClient, ChunkError, Client, RetryPolicy
from streamret.engine import Engine, EngineConfig, record, start_engine
from streamret.engine.durability import DurableStore
from streamret.model import RetNetConfig, build_random
from streamret.model.spec import LoadedModel
from streamret.service.limits import ServiceLimits
from streamret.service.proto_gen import streamret_pb2 as pb
from streamret.service.proto_gen import streamret_pb2_grpc as pb_grpc
from streamret.service.server import BackgroundServer, ServerConfig

SC = grpc.StatusCode
TEXT = "The river ran north. Boats carried grain to the city! Every spring the floods came back; people moved uphill. "
TOKENS = {"tok-acme": "acme", "tok-acme-ro": "acme read", "tok-globex": "globex"}


def ref_embedding(engine: Engine, text: str, sid: str) -> np.ndarray:
    """The in-process engine's embedding of `text` read in one chunk (chunk invariance makes it the reference)."""
    engine.append(sid, 1, text, flush=True)
    out = engine.embedding(sid)
    engine.close(sid)
    return out


def md(token: str | None) -> tuple:
    return (("authorization", f"Bearer {token}"),) if token else ()


class Stubs:
    def __init__(self, port: int, token: str | None = None, credentials=None, host: str = "127.0.0.1"):
        target = f"{host}:{port}"
        self.channel = grpc.secure_channel(target, credentials) if credentials else grpc.insecure_channel(target)
        self.streams = pb_grpc.StreamRetStub(self.channel)
        self.batch = pb_grpc.BatchStub(self.channel)
        self.md = md(token)

    def __getattr__(self, name):
        stub = self.batch if name in ("EmbedTable", "EmbedTables", "AppendEvents") else self.streams
        method = getattr(stub, name)
        return lambda request, **kw: method(request, metadata=self.md, **kw)

    def append(self, *requests: pb.AppendRequest) -> list[pb.AppendResponse]:
        return list(self.Append(iter(requests)))


def code_of(fn, *args) -> tuple[SC, str]:
    with pytest.raises(grpc.RpcError) as info:
        out = fn(*args)
        if hasattr(out, "__iter__") and not isinstance(out, (bytes, str)):
            list(out)
    return info.value.code(), info.value.details()


def req(sid: str, seq: int, text: str = "", **kw) -> pb.AppendRequest:
    return pb.AppendRequest(stream_id=sid, seq=seq, text=text, **kw)


@pytest.fixture(scope="module", params=[1, 2], ids=["engine", "engine-procs-2"])
def engine(request, tmp_path_factory):
    # durable only on demand (evict, checkpoint, close keep_state): no fsync per chunk
    cfg = EngineConfig(durable_every_chunks=0)
    # the in-process engine, and two engine processes (ShardedEngine) behind the same server
    with start_engine("random:tiny", "cpu", str(tmp_path_factory.mktemp("states")), cfg,
                      procs=request.param) as eng:
        yield eng


@pytest.fixture(scope="module")
def server(engine, tmp_path_factory):
    tokens = tmp_path_factory.mktemp("auth") / "tokens"
    tokens.write_text("".join(f"{t} {tenant}\n" for t, tenant in TOKENS.items()))
    limits = ServiceLimits(batch_chunk_bytes=1024)  # long documents cross several chunks
    srv = BackgroundServer(engine, ServerConfig(port=0, auth_tokens=str(tokens), metrics_port=0, poll_s=0.05,
                                                metrics_host="127.0.0.1", limits=limits))
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def acme(server):
    return Stubs(server.port, "tok-acme")


@pytest.fixture(scope="module")
def globex(server):
    return Stubs(server.port, "tok-globex")


# ------------------------------------------------------------------------------------------------
# health, reflection, the stream RPCs


def test_health_serves_every_service(server):
    stub = health_pb2_grpc.HealthStub(grpc.insecure_channel(f"127.0.0.1:{server.port}"))
    for name in ("", "streamret.v1.StreamRet", "streamret.v1.Batch"):
        assert stub.Check(health_pb2.HealthCheckRequest(service=name)).status == health_pb2.HealthCheckResponse.SERVING


def test_reflection_lists_both_services(server):
    stub = reflection_pb2_grpc.ServerReflectionStub(grpc.insecure_channel(f"127.0.0.1:{server.port}"))
    [resp] = list(stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")])))
    names = {s.name for s in resp.list_services_response.service}
    assert {"streamret.v1.StreamRet", "streamret.v1.Batch", "grpc.health.v1.Health"} <= names
    [resp] = list(stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(
        file_containing_symbol="streamret.v1.StreamRet")])))
    assert resp.file_descriptor_response.file_descriptor_proto  # grpcurl can describe the API


def test_open_append_embedding_match_the_engine(acme, engine):
    info = acme.OpenStream(pb.OpenStreamRequest(stream_id="river", create_if_missing=True, labels={"src": "t"}))
    assert (info.stream_id, info.applied_seq, info.labels["src"]) == ("river", 0, "t")
    assert info.model_fingerprint == engine.fingerprint
    data = TEXT.encode()
    cuts = [0, 7, 40, len(data) - 3, len(data)]
    acks = acme.append(*[pb.AppendRequest(stream_id="river", seq=i + 1, data=data[a:b])
                         for i, (a, b) in enumerate(zip(cuts, cuts[1:]))], req("river", 5, flush=True))
    assert [a.seq for a in acks] == [1, 2, 3, 4, 5] and not any(a.error_code for a in acks)
    assert acks[-1].applied_seq == 5 and acks[-1].tokens == len(data)
    emb = acme.GetEmbedding(pb.GetEmbeddingRequest(stream_id="river"))
    assert (emb.applied_seq, emb.tokens) == (5, len(data))
    np.testing.assert_allclose(emb.values, ref_embedding(engine, TEXT, "ref-river"), rtol=0, atol=1e-5)


def test_append_per_chunk_problems_come_back_in_acks(acme):
    big = pb.AppendRequest(stream_id="acks", seq=3, data=b"x" * (ServiceLimits().max_chunk_bytes + 1))
    acks = acme.append(req("acks", 1, "One fish. "), req("acks", 3, "Gap. "), req("acks", 2, "Two fish. "),
                       req("acks", 2, "Two fish. "), big, req("acks", 3, "Three fish. ", return_segment_embedding=True))
    codes = [a.error_code for a in acks]
    assert codes == [0, SC.FAILED_PRECONDITION.value[0], 0, 0, SC.RESOURCE_EXHAUSTED.value[0], 0]
    assert "expected seq 2" in acks[1].error_message and acks[1].retryable and acks[1].applied_seq == 1
    assert acks[3].duplicate and not acks[2].duplicate
    assert "exceeds" in acks[4].error_message and not acks[4].retryable
    assert len(acks[5].segment_embedding) == 64  # the newest closed sentence's embedding
    assert abs(np.linalg.norm(acks[5].segment_embedding) - 1) < 1e-5


def test_a_refused_gap_chunk_on_a_missing_stream_creates_nothing(acme, engine):
    """Issue 15 item 7: Append and AppendEvents of seq 5 to a stream that does not exist were refused (gap,
    expected 1), but the stream was created empty first."""
    (ack,) = acme.append(req("never-made", 5, "a chunk past the first"))
    assert ack.error_code == SC.FAILED_PRECONDITION.value[0] and ack.retryable and ack.applied_seq == 0
    assert "expected seq 1" in ack.error_message and "\x1f" not in ack.error_message
    events = pa.table({"stream_id": ["never-made-ev"], "seq": [3], "text": ["x"]})
    (out,) = (table_from_ipc(p.arrow_ipc).to_pylist() for p in acme.AppendEvents(
        iter([pb.AppendEventsRequest(arrow_ipc=table_to_ipc(events))])))
    assert out[0]["error_code"] == SC.FAILED_PRECONDITION.value[0] and "expected seq 1" in out[0]["error_message"]
    for sid in ("never-made", "never-made-ev"):
        assert code_of(acme.OpenStream, pb.OpenStreamRequest(stream_id=sid))[0] == SC.NOT_FOUND
        assert not engine.exists(f"acme\x1f{sid}")
    # the first chunk still creates the stream
    (ack,) = acme.append(req("never-made", 1, "now it starts "))
    assert ack.error_code == 0 and ack.applied_seq == 1


def test_uint64_values_past_int64_in_arrow_tables_are_invalid_argument(acme):
    """Issue 15 item 7: a uint64 id or seq of 2^64 - 1 failed the cast to int64 and came back INTERNAL."""
    top = 2**64 - 1
    ids = pa.table({"id": pa.array([1, top], pa.uint64()), "text": ["one", "two"]})
    code, details = code_of(acme.EmbedTable, pb.EmbedTableRequest(arrow_ipc=table_to_ipc(ids)))
    assert code == SC.INVALID_ARGUMENT and "'id'" in details and "int64 range" in details, (code, details)
    events = pa.table({"stream_id": ["u64", "u64"], "seq": pa.array([1, top], pa.uint64()), "text": ["a ", "b "]})
    code, details = code_of(acme.AppendEvents, iter([pb.AppendEventsRequest(arrow_ipc=table_to_ipc(events))]))
    assert code == SC.INVALID_ARGUMENT and "'seq'" in details and "int64 range" in details, (code, details)
    # uint64 values that fit are taken as they are
    ok_ids = pa.table({"id": pa.array([7], pa.uint64()), "text": ["seven"]})
    out = table_from_ipc(acme.EmbedTable(pb.EmbedTableRequest(arrow_ipc=table_to_ipc(ok_ids))).arrow_ipc)
    assert out.column("id").to_pylist() == [7]


def test_append_protocol_errors_end_the_call(acme):
    acks = []
    code, details = code_of(lambda: [acks.append(a) for a in acme.Append(iter([req("p", 1, "a "), req("p", 0)]))])
    assert code == SC.INVALID_ARGUMENT and "seq must be >= 1" in details and len(acks) == 1
    code, details = code_of(acme.append, req("bad\x00id", 1, "a"))
    assert code == SC.INVALID_ARGUMENT and "control character" in details


def test_summarize_and_close(acme):
    acme.append(req("sum", 1, TEXT, flush=True))
    summary = acme.Summarize(pb.SummarizeRequest(stream_id="sum", max_segments=2))
    assert 1 <= len(summary.segments) <= 2 and summary.applied_seq == 1
    for s in summary.segments:
        assert TEXT.encode()[s.start_byte:s.end_byte].decode().strip() == s.text.strip()
    code, details = code_of(acme.Summarize,
                            pb.SummarizeRequest(stream_id="sum", mode=pb.SummarizeRequest.MODE_GENERATIVE))
    assert code == SC.FAILED_PRECONDITION and "no LM head" in details
    closed = acme.CloseStream(pb.CloseStreamRequest(stream_id="sum", max_segments=3))
    assert len(closed.embedding.values) == 64 and closed.embedding.tokens == len(TEXT)
    assert 1 <= len(closed.summary.segments) <= 3
    assert code_of(acme.GetEmbedding, pb.GetEmbeddingRequest(stream_id="sum"))[0] == SC.NOT_FOUND


def test_fork_export_import(acme, engine):
    acme.append(req("orig", 1, TEXT))
    forked = acme.ForkStream(pb.ForkStreamRequest(source_id="orig", new_id="copy"))
    assert (forked.stream_id, forked.applied_seq) == ("copy", 1)
    assert code_of(acme.ForkStream, pb.ForkStreamRequest(source_id="orig", new_id="copy"))[0] == SC.ALREADY_EXISTS
    blob = acme.ExportState(pb.ExportStateRequest(stream_id="orig"))
    imported = acme.ImportState(pb.ImportStateRequest(stream_id="imported", state=blob))
    assert imported.applied_seq == 1
    a, b, c = (acme.GetEmbedding(pb.GetEmbeddingRequest(stream_id=s)).values for s in ("orig", "copy", "imported"))
    assert list(a) == list(b) == list(c)
    # continuing the copy does not touch the original
    acme.append(req("copy", 2, "more words here"))
    assert acme.GetEmbedding(pb.GetEmbeddingRequest(stream_id="orig")).values == a
    # a state written by another model is refused
    with Engine.from_model("random:tiny:7", device="cpu") as other:
        other.append("x", 1, "hello")
        foreign = other.export_state("x")
    code, details = code_of(acme.ImportState, pb.ImportStateRequest(stream_id="foreign",
                                                                    state=pb.ExportStateResponse(data=foreign)))
    assert code == SC.FAILED_PRECONDITION
    code, _ = code_of(acme.ImportState,
                      pb.ImportStateRequest(stream_id="junk", state=pb.ExportStateResponse(data=b"junk")))
    assert code == SC.INVALID_ARGUMENT


def _with_meta(blob: bytes, **fields) -> bytes:
    meta, tensors = record.decode(blob)
    meta.update(fields)
    return record.encode(meta, tensors)


def test_malformed_imports_are_invalid_argument_and_every_tenant_is_still_served(acme, globex):
    """Issue 15 item 2: a record with a list as its open segment's text was imported, and the next append
    stopped the step loop (every tenant then got UNAVAILABLE); other malformed records got INTERNAL."""
    acme.append(req("import-src", 1, "One sentence. An open second"))
    blob = acme.ExportState(pb.ExportStateRequest(stream_id="import-src")).data
    src_meta = record.decode(blob)[0]
    open_list = dict(src_meta["segments"], open=dict(src_meta["segments"]["open"], text=["a", "list"]))
    cases = {
        "segments.open.text": _with_meta(blob, segments=open_list),
        "segments": _with_meta(blob, segments="not an object"),
        "stream_id": _with_meta(blob, stream_id="globex\x1fhidden\ud800"),
        "applied_seq": _with_meta(blob, applied_seq=2**63 - 1),
        "text_tail": _with_meta(blob, text_tail=base64.b64encode(b"z" * 5000).decode()),
    }
    for field, data in cases.items():
        code, details = code_of(acme.ImportState, pb.ImportStateRequest(stream_id=f"bad-{field}",
                                                                        state=pb.ExportStateResponse(data=data)))
        assert code == SC.INVALID_ARGUMENT and repr(field) in details, (field, code, details)
        assert "hidden" not in details and "globex" not in details
        # the refused id is free, and the engine serves both tenants
        acks = acme.append(req(f"bad-{field}", 1, "appended after the refusal. "))
        assert acks[0].error_code == 0 and acks[0].applied_seq == 1, acks[0]
    acks = globex.append(req("other-tenant", 1, "another tenant is still served. ", flush=True))
    assert acks[0].error_code == 0 and acks[0].applied_seq == 1


# ------------------------------------------------------------------------------------------------
# auth and tenant isolation


def test_a_tenant_can_drop_a_stream_whose_record_is_damaged(acme, globex, engine):
    """Issue 15, item 6: another tenant's record copied over this tenant's stream is refused without naming the
    other tenant or its stream, and CloseStream (keep_state=false) deletes it; before, the id stayed unusable."""
    assert globex.append(req("globex-plan", 1, "Globex keeps this to itself. "))[0].error_code == 0
    assert acme.append(req("ledger", 1, TEXT))[0].error_code == 0
    mine, theirs = "acme\x1fledger", "globex\x1fglobex-plan"
    engine.evict(mine)
    engine.evict(theirs)
    store = engine.durable if isinstance(engine, Engine) else DurableStore(engine.state_dir)  # (engine processes)
    Path(store.path(mine)).write_bytes(Path(store.path(theirs)).read_bytes())
    code, details = code_of(acme.GetEmbedding, pb.GetEmbeddingRequest(stream_id="ledger"))
    assert code == SC.INVALID_ARGUMENT and "'ledger'" in details and "keep_state=false" in details, details
    assert "globex" not in details.lower() and "plan" not in details, details
    code, details = code_of(acme.CloseStream, pb.CloseStreamRequest(stream_id="ledger", keep_state=True))
    assert code == SC.INVALID_ARGUMENT and "globex" not in details.lower(), details
    closed = acme.CloseStream(pb.CloseStreamRequest(stream_id="ledger"))
    assert closed.embedding.applied_seq == 0 and not closed.summary.segments
    assert not engine.exists(mine) and engine.exists(theirs)
    assert acme.append(req("ledger", 1, "Started again. "))[0].applied_seq == 1
    assert globex.GetEmbedding(pb.GetEmbeddingRequest(stream_id="globex-plan")).applied_seq == 1


def test_unauthenticated_and_permission_denied(server):
    for token in (None, "wrong"):
        code, details = code_of(Stubs(server.port, token).OpenStream, pb.OpenStreamRequest(stream_id="x"))
        assert code == SC.UNAUTHENTICATED and "wrong" not in details
    ro = Stubs(server.port, "tok-acme-ro")
    Stubs(server.port, "tok-acme").OpenStream(pb.OpenStreamRequest(stream_id="ro", create_if_missing=True))
    assert ro.OpenStream(pb.OpenStreamRequest(stream_id="ro")).stream_id == "ro"  # reading is fine
    for fn, request in [
        (ro.append, req("ro", 1, "x")),
        (ro.OpenStream, pb.OpenStreamRequest(stream_id="ro-new", create_if_missing=True)),
        (ro.CloseStream, pb.CloseStreamRequest(stream_id="ro")),
        (ro.ForkStream, pb.ForkStreamRequest(source_id="ro", new_id="ro2")),
        (ro.ImportState, pb.ImportStateRequest(stream_id="ro3")),
        (ro.AppendEvents, iter([pb.AppendEventsRequest(arrow_ipc=table_to_ipc(pa.table({"stream_id": ["ro"], "seq": [1],
                                                                                    "text": ["x"]})))])),
    ]:
        code, details = code_of(fn, request)
        assert code == SC.PERMISSION_DENIED and "read-only" in details, fn


def _isolation_cases(blob: bytes):
    """rpc -> (globex's call touching acme's stream ids, expected status, a stream globex created or None)."""
    def events(sid, seq):
        table = pa.table({"stream_id": [sid], "seq": [seq], "text": ["globex text "]})
        return iter([pb.AppendEventsRequest(arrow_ipc=table_to_ipc(table))])

    docs = table_to_ipc(pa.table({"id": [1], "text": ["x y"]}))
    return {
        "OpenStream": (lambda s: s.OpenStream(pb.OpenStreamRequest(stream_id="shared")), SC.NOT_FOUND, None),
        "GetEmbedding": (lambda s: s.GetEmbedding(pb.GetEmbeddingRequest(stream_id="shared")), SC.NOT_FOUND, None),
        "Summarize": (lambda s: s.Summarize(pb.SummarizeRequest(stream_id="shared")), SC.NOT_FOUND, None),
        "ExportState": (lambda s: s.ExportState(pb.ExportStateRequest(stream_id="shared")), SC.NOT_FOUND, None),
        "ForkStream": (lambda s: s.ForkStream(pb.ForkStreamRequest(source_id="shared", new_id="g-fork")),
                       SC.NOT_FOUND, None),
        "CloseStream": (lambda s: s.CloseStream(pb.CloseStreamRequest(stream_id="shared")), SC.NOT_FOUND, None),
        # writes land in globex's own namespace: a fresh "shared", where seq 2 is a gap (for acme's
        # stream it would be the next chunk)
        "Append": (lambda s: s.append(req("shared", 2, "globex ")), SC.FAILED_PRECONDITION, None),
        "AppendEvents": (lambda s: [table_from_ipc(p.arrow_ipc) for p in s.AppendEvents(events("shared", 2))]
                         + [table_from_ipc(p.arrow_ipc) for p in s.AppendEvents(events("g-events", 1))],
                         SC.FAILED_PRECONDITION, "g-events"),
        "ImportState": (lambda s: s.ImportState(pb.ImportStateRequest(stream_id="g-imported",
                                                                      state=pb.ExportStateResponse(data=blob))),
                        SC.OK, "g-imported"),
        # temporary streams only
        "EmbedTable": (lambda s: s.EmbedTable(pb.EmbedTableRequest(arrow_ipc=docs)), SC.OK, None),
        "EmbedTables": (lambda s: list(s.EmbedTables(iter([pb.EmbedTablesRequest(arrow_ipc=docs)]))), SC.OK, None),
    }


ISOLATED_RPCS = ["OpenStream", "GetEmbedding", "Summarize", "ExportState", "ForkStream", "CloseStream", "Append",
                 "AppendEvents", "ImportState", "EmbedTable", "EmbedTables"]


@pytest.mark.parametrize("rpc", ISOLATED_RPCS)
def test_tenants_cannot_see_or_touch_each_others_streams(acme, globex, rpc):
    acme.OpenStream(pb.OpenStreamRequest(stream_id="shared", create_if_missing=True))
    if acme.OpenStream(pb.OpenStreamRequest(stream_id="shared")).applied_seq == 0:
        acme.append(req("shared", 1, "acme secret text. "))
    before = acme.GetEmbedding(pb.GetEmbeddingRequest(stream_id="shared"))
    globex.OpenStream(pb.OpenStreamRequest(stream_id="g-own", create_if_missing=True))
    blob = globex.ExportState(pb.ExportStateRequest(stream_id="g-own")).data
    call, expected, created = _isolation_cases(blob)[rpc]
    if rpc == "Append":
        [ack] = call(globex)
        assert ack.error_code == expected.value[0] and "acme" not in ack.error_message
    elif rpc == "AppendEvents":
        [row], [other] = (t.to_pylist() for t in call(globex))
        assert row["error_code"] == expected.value[0] and "acme" not in row["error_message"]
        assert other["error_code"] == 0
    elif expected == SC.OK:
        call(globex)
    else:
        code, details = code_of(call, globex)
        assert code == expected and "acme" not in details
    after = acme.GetEmbedding(pb.GetEmbeddingRequest(stream_id="shared"))
    assert (after.applied_seq, list(after.values)) == (before.applied_seq, list(before.values))
    if created:  # and what globex made, acme cannot see
        assert code_of(acme.OpenStream, pb.OpenStreamRequest(stream_id=created))[0] == SC.NOT_FOUND


# ------------------------------------------------------------------------------------------------
# batches


def test_embed_table_rows_and_errors(acme, engine):
    texts = [TEXT, None, "short text", "", "x" * 5000]
    table = pa.table({"id": pa.array([10, 11, 12, 13, 14], pa.int64()), "text": texts})
    out = table_from_ipc(acme.EmbedTable(pb.EmbedTableRequest(arrow_ipc=table_to_ipc(table))).arrow_ipc)
    assert out.column_names == ["id", "embedding", "tokens", "summary", "error"]
    assert out.schema.field("embedding").type == pa.list_(pa.float32(), 64)
    rows = out.to_pylist()
    assert [r["id"] for r in rows] == [10, 11, 12, 13, 14]
    assert [r["error"] is None for r in rows] == [True, False, True, False, True]
    assert "null" in rows[1]["error"] and "empty" in rows[3]["error"]
    assert rows[0]["tokens"] == len(TEXT) and rows[4]["tokens"] == 5000  # 5000 bytes cross several chunks
    np.testing.assert_allclose(rows[0]["embedding"], ref_embedding(engine, TEXT, "ref-table"), atol=1e-5)
    assert rows[0]["summary"] and all(isinstance(s, str) for s in rows[0]["summary"])
    # string ids, and several tables on one call
    tables = [pa.table({"id": ["a", "b"], "text": ["one two", "three"]}), pa.table({"id": ["c"], "text": ["four"]})]
    outs = [table_from_ipc(p.arrow_ipc) for p in acme.EmbedTables(iter(
        pb.EmbedTablesRequest(arrow_ipc=table_to_ipc(t)) for t in tables))]
    assert [o.column("id").to_pylist() for o in outs] == [["a", "b"], ["c"]]


@pytest.mark.parametrize("payload, fragment", [
    (b"not arrow", "not a readable Arrow IPC stream"),
    (table_to_ipc(pa.table({"id": [1], "body": ["x"]})), "no text column 'text'"),
    (table_to_ipc(pa.table({"id": [1.5], "text": ["x"]})), "ids must be string or int64"),
    (table_to_ipc(pa.table({"id": [1], "text": [3]})), "text must be string"),
])
def test_embed_table_refuses_bad_tables(acme, payload, fragment):
    code, details = code_of(acme.EmbedTable, pb.EmbedTableRequest(arrow_ipc=payload))
    assert code == SC.INVALID_ARGUMENT and fragment in details


def test_messages_larger_than_grpc_default_are_accepted(acme):
    # 5 MiB of mistyped column: it must reach the service (INVALID_ARGUMENT), not die at 4 MiB
    table = pa.table({"id": np.arange(650_000), "text": np.arange(650_000)})
    payload = table_to_ipc(table)
    assert len(payload) > 5 * 1024 * 1024
    assert code_of(acme.EmbedTable, pb.EmbedTableRequest(arrow_ipc=payload))[0] == SC.INVALID_ARGUMENT


def test_append_events(acme):
    events = pa.table({"stream_id": ["ev1", "ev1", "ev2", "ev1", "ev1", "bad\x01", "ev2"],
                       "seq": [1, 2, 1, 2, 5, 1, 2], "text": ["a ", "b ", "c ", "b ", "z", "x", None]})
    call = acme.AppendEvents(iter([pb.AppendEventsRequest(arrow_ipc=table_to_ipc(events)),
                                   pb.AppendEventsRequest(arrow_ipc=table_to_ipc(events.slice(0, 1)))]))
    first, second = (table_from_ipc(p.arrow_ipc).to_pylist() for p in call)
    assert [r["error_code"] for r in first] == [0, 0, 0, 0, 9, 3, 3]
    assert [r["duplicate"] for r in first][:4] == [False, False, False, True]
    assert "expected seq 3" in first[4]["error_message"] and first[4]["retryable"]
    assert second[0]["duplicate"]
    info = acme.OpenStream(pb.OpenStreamRequest(stream_id="ev1"))
    assert info.applied_seq == 2 and 0 < info.tokens <= 4  # "a b " (the engine may hold the last space back)
    bad = pa.table({"stream_id": ["x"], "text": ["y"]})
    code, details = code_of(acme.AppendEvents, iter([pb.AppendEventsRequest(arrow_ipc=table_to_ipc(bad))]))
    assert code == SC.INVALID_ARGUMENT and "seq" in details
    # optional flush and durable columns: the tail is read and the record written before the ack
    flagged = pa.table({"stream_id": ["ev3", "ev3"], "seq": [1, 2], "text": ["one ", "two"],
                        "flush": [None, True], "durable": [False, True]})
    (out,) = (table_from_ipc(p.arrow_ipc).to_pylist() for p in acme.AppendEvents(
        iter([pb.AppendEventsRequest(arrow_ipc=table_to_ipc(flagged))])))
    assert [r["error_code"] for r in out] == [0, 0] and (out[1]["applied_seq"], out[1]["durable_seq"]) == (2, 2)
    assert out[1]["tokens"] == len("one two")
    mistyped = flagged.set_column(4, "durable", pa.array([1, 0]))
    code, details = code_of(acme.AppendEvents, iter([pb.AppendEventsRequest(arrow_ipc=table_to_ipc(mistyped))]))
    assert code == SC.INVALID_ARGUMENT and "'durable'" in details and "bool" in details


# ------------------------------------------------------------------------------------------------
# scale, limits, metrics


def test_100_concurrent_streams(server, engine):
    texts = {f"c{i}": f"stream {i} says: " + " ".join(f"w{(i * 7 + j) % 13}" for j in range(60)) for i in range(100)}

    async def run():
        async with AsyncClient(f"127.0.0.1:{server.port}", token="tok-acme") as c:
            async def one(sid, text):
                cuts = [text[k : k + 97] for k in range(0, len(text), 97)]
                ack = await c.stream(sid, cuts)
                return ack, await c.embedding_array(sid)
            return await asyncio.gather(*[one(s, t) for s, t in texts.items()])

    results = asyncio.run(run())
    refs = {}
    for sid, text in texts.items():  # the references, batched by the engine too
        refs[sid] = engine.submit_append(f"ref-{sid}", 1, text, flush=True)
    for (ack, emb), (sid, text) in zip(results, texts.items()):
        refs[sid].result()
        assert ack.tokens == len(text)
        np.testing.assert_allclose(emb, engine.embedding(f"ref-{sid}"), atol=1e-5)
        engine.close(f"ref-{sid}")


def test_metrics_endpoint(server, acme):
    acme.append(req("metrics", 1, "some text for the metrics", flush=True))
    text = urllib.request.urlopen(f"http://127.0.0.1:{server.server.metrics_port}/metrics").read().decode()
    for name in ("streamret_ack_latency_seconds_count", 'streamret_engine_streams{tier="device"}',
                 "streamret_engine_tokens_processed_total", "streamret_engine_step_batch_streams_bucket",
                 "streamret_streams_held", 'streamret_rpcs_total{code="OK",method="Append"}'):
        assert name in text, name
    count = next(line for line in text.splitlines() if line.startswith("streamret_ack_latency_seconds_count"))
    assert float(count.split()[-1]) >= 1


@pytest.fixture
def small_server(tmp_path):
    """No auth, small limits, an engine that fills up after one pending chunk per stream."""
    cfg = EngineConfig(max_pending_chunks_per_stream=1, durable_every_chunks=0)
    limits = ServiceLimits(max_streams_per_tenant=3, max_message_bytes=64 * 1024, max_chunk_bytes=32 * 1024,
                           busy_wait_s=0)
    with Engine.from_model("random:tiny", device="cpu", state_dir=str(tmp_path), config=cfg) as eng:
        srv = BackgroundServer(eng, ServerConfig(port=0, limits=limits))
        yield srv, eng
        srv.stop()


def test_resource_exhausted_limits_and_backpressure(small_server):
    srv, eng = small_server
    s = Stubs(srv.port)
    for i in range(3):
        s.OpenStream(pb.OpenStreamRequest(stream_id=f"l{i}", create_if_missing=True))
    code, details = code_of(s.OpenStream, pb.OpenStreamRequest(stream_id="l3", create_if_missing=True))
    assert code == SC.RESOURCE_EXHAUSTED and "limit" in details
    s.CloseStream(pb.CloseStreamRequest(stream_id="l2"))
    s.OpenStream(pb.OpenStreamRequest(stream_id="l3", create_if_missing=True))  # a place is free again
    code, _ = code_of(s.EmbedTable, pb.EmbedTableRequest(arrow_ipc=b"x" * 100_000))  # over the message limit
    assert code == SC.RESOURCE_EXHAUSTED
    # a full engine refuses chunks at once (busy_wait_s=0): retryable RESOURCE_EXHAUSTED acks
    chunks = [pb.AppendRequest(stream_id="l0", seq=i + 1, data=TEXT.encode() * 40) for i in range(30)]
    acks = s.append(*chunks)
    busy = [a for a in acks if a.error_code == SC.RESOURCE_EXHAUSTED.value[0]]
    assert busy and all(a.retryable for a in busy)
    # the client backs off and resends until everything is in, exactly once
    with Client(f"127.0.0.1:{srv.port}", retry=RetryPolicy(initial_backoff_s=0.01)) as c:
        text = TEXT * 30
        c.stream("l1", [text[i : i + 300] for i in range(0, len(text), 300)])
        np.testing.assert_allclose(c.embedding_array("l1"), ref_embedding(eng, text, "ref-l1"), atol=1e-5)
        with pytest.raises(ChunkError, match="RESOURCE_EXHAUSTED"):  # too large is not retried
            c.append("l3", b"y" * 40_000)


def test_internal_errors_reveal_nothing(engine):
    class Broken:
        def __getattr__(self, name):
            return getattr(engine, name)

        def summarize(self, *a, **kw):
            raise RuntimeError("secret detail /srv/app.py line 3")

    srv = BackgroundServer(Broken(), ServerConfig(port=0))
    try:
        s = Stubs(srv.port)
        s.append(req("b", 1, "text"))
        code, details = code_of(s.Summarize, pb.SummarizeRequest(stream_id="b"))
        assert code == SC.INTERNAL and "secret" not in details and "Traceback" not in details and "incident" in details
    finally:
        srv.stop()


def test_without_auth_only_loopback_binds():
    with pytest.raises(ValueError, match="without --auth-tokens"):
        ServerConfig(host="0.0.0.0").check()
    ServerConfig(host="0.0.0.0", insecure_bind=True).check()
    ServerConfig(host="::1").check()
    ServerConfig(host="0.0.0.0", auth_tokens="tokens.txt").check()


def test_idle_streams_are_evicted_to_the_durable_store(tmp_path):
    with Engine.from_model("random:tiny", device="cpu", state_dir=str(tmp_path),
                           config=EngineConfig(durable_every_chunks=0)) as eng:
        srv = BackgroundServer(eng, ServerConfig(port=0, limits=ServiceLimits(idle_evict_s=0.2)))
        try:
            s = Stubs(srv.port)
            s.append(req("idle", 1, TEXT))
            before = list(s.GetEmbedding(pb.GetEmbeddingRequest(stream_id="idle")).values)
            deadline = time.monotonic() + 5
            while eng.stats()["streams"]["durable"] == 0 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert eng.stats()["streams"]["durable"] == 1
            assert list(s.GetEmbedding(pb.GetEmbeddingRequest(stream_id="idle")).values) == before  # reloaded
        finally:
            srv.stop()


# ------------------------------------------------------------------------------------------------
# drain, SIGTERM, restart


def test_drain_refuses_new_calls_finishes_running_ones_and_checkpoints(tmp_path):
    state_dir = str(tmp_path)
    with Engine.from_model("random:tiny", device="cpu", state_dir=state_dir,
                           config=EngineConfig(durable_every_chunks=0)) as eng:
        srv = BackgroundServer(eng, ServerConfig(port=0, drain_timeout_s=10))
        s = Stubs(srv.port)
        s.append(req("d", 1, TEXT))
        # a running Append call (open, waiting for its next chunk) and a running EmbedTables call
        outbox: list = [req("d", 2, "second chunk ")]
        ready, release = threading.Event(), threading.Event()

        def requests():
            yield outbox.pop()
            ready.set()
            release.wait(10)

        acks, result = [], {}

        def run_append():
            try:
                for a in s.Append(requests()):
                    acks.append(a)
            except grpc.RpcError as e:
                result["code"] = e.code()

        t = threading.Thread(target=run_append)
        t.start()
        ready.wait(10)
        time.sleep(0.2)
        stopper = threading.Thread(target=lambda: result.setdefault("clean", srv.stop()))
        stopper.start()
        t.join(10)  # the drain ends the Append call after answering the chunk it took
        assert [a.seq for a in acks] == [2] and result["code"] == SC.UNAVAILABLE
        release.set()
        stopper.join(20)
        assert result["clean"]
    with Engine.from_model("random:tiny", device="cpu", state_dir=state_dir) as again:
        info = again.info("default\x1fd")
        assert info.applied_seq == info.durable_seq == 2  # checkpointed on the way out


def test_drain_health_and_new_calls_during_drain():
    entered, release = threading.Event(), threading.Event()

    with Engine.from_model("random:tiny", device="cpu", config=EngineConfig(durable_every_chunks=0)) as eng:
        class SlowEmbedding:  # holds one GetEmbedding in flight until released
            def __getattr__(self, name):
                return getattr(eng, name)

            def embedding(self, stream_id, role="query"):
                entered.set()
                release.wait(10)
                return eng.embedding(stream_id, role)

        srv = BackgroundServer(SlowEmbedding(), ServerConfig(port=0, drain_timeout_s=10))
        s = Stubs(srv.port)
        s.append(req("slow", 1, TEXT))
        got: dict = {}

        def payloads():  # an idle EmbedTables call: the drain ends it after its answered payload
            yield pb.EmbedTablesRequest(arrow_ipc=table_to_ipc(pa.table({"id": [1], "text": ["a b"]})))
            release.wait(10)

        def run_tables():
            answers = s.EmbedTables(payloads())
            try:
                for _ in answers:
                    got["answered"] = got.get("answered", 0) + 1
            except grpc.RpcError as e:
                got["tables"] = e.code()

        def run_slow():
            got["embedding"] = s.GetEmbedding(pb.GetEmbeddingRequest(stream_id="slow"))

        threads = [threading.Thread(target=run_tables), threading.Thread(target=run_slow)]
        for t in threads:
            t.start()
        assert entered.wait(10)
        time.sleep(0.3)
        stopper = threading.Thread(target=lambda: got.setdefault("clean", srv.stop()))
        stopper.start()
        time.sleep(0.3)
        status = health_pb2_grpc.HealthStub(s.channel).Check(health_pb2.HealthCheckRequest(service="")).status
        code, details = code_of(s.OpenStream, pb.OpenStreamRequest(stream_id="late", create_if_missing=True))
        release.set()  # (gRPC's blocking client ends a call only once its request iterator returns)
        for t in (*threads, stopper):
            t.join(20)
        assert status == health_pb2.HealthCheckResponse.NOT_SERVING
        assert code == SC.UNAVAILABLE and "shutting down" in details
        # the server, not the client, ended the idle call: a client ending it would get OK
        assert got["answered"] == 1 and got["tables"] == SC.UNAVAILABLE
        assert len(got["embedding"].values) == 64 and got["clean"]  # the running call finished normally


def test_client_resumes_across_a_server_restart(tmp_path):
    state_dir = str(tmp_path)
    cfg = EngineConfig(durable_every_chunks=3)
    text = " ".join(f"word{i % 17}" for i in range(400)) + ". "
    chunks = [text[i : i + 50] for i in range(0, len(text), 50)]
    eng = Engine.from_model("random:tiny", device="cpu", state_dir=state_dir, config=cfg)
    srv = BackgroundServer(eng, ServerConfig(port=0))
    port = srv.port
    halfway = threading.Event()

    def slow_chunks():
        for i, c in enumerate(chunks):
            if i == len(chunks) // 2:
                halfway.set()
            time.sleep(0.01)
            yield c

    out: dict = {}

    def run_client():
        with Client(f"127.0.0.1:{port}", retry=RetryPolicy(timeout_s=30, initial_backoff_s=0.05)) as c:
            out["ack"] = c.stream("r", slow_chunks())
            out["emb"] = c.embedding_array("r")

    t = threading.Thread(target=run_client)
    t.start()
    assert halfway.wait(20)
    srv.stop()
    eng.shutdown()
    time.sleep(0.3)  # the client sees UNAVAILABLE and backs off
    eng2 = Engine.from_model("random:tiny", device="cpu", state_dir=state_dir, config=cfg)
    srv2 = BackgroundServer(eng2, ServerConfig(port=port))
    try:
        t.join(60)
        assert not t.is_alive() and "emb" in out
        assert out["ack"].tokens == len(text)
        np.testing.assert_allclose(out["emb"], ref_embedding(eng2, text, "ref-r"), atol=1e-5)
    finally:
        srv2.stop()
        eng2.shutdown()


def _start_cli_server(args: list[str], cwd: Path) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen([sys.executable, "-m", "streamret.cli", "serve", "--model", "random:tiny", "--device",
                             "cpu", "--port", "0", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=cwd, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    line = proc.stdout.readline()
    if "serving" not in line:
        proc.kill()
        raise AssertionError(f"server did not start: {line!r} {proc.stderr.read()}")
    return proc, int(line.split(" on ")[1].split(":")[1].split(",")[0])


def test_cli_serve_drains_on_sigterm_and_exits_0(tmp_path):
    state_dir = tmp_path / "states"
    proc, port = _start_cli_server(["--state-dir", str(state_dir), "--durable-every-chunks", "0"], tmp_path)
    try:
        with Client(f"127.0.0.1:{port}") as c:
            ack = c.stream("sig", [TEXT[:50], TEXT[50:]], flush=False, durable=False)
            # by default stream() ends with an empty chunk that asks for a record, policy or not
            kept = c.stream("sig-durable", [TEXT[:50], TEXT[50:]], flush=False)
        assert ack.applied_seq == 2 and ack.durable_seq == 0
        assert (kept.seq, kept.applied_seq, kept.durable_seq) == (3, 3, 3)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        proc.kill()
    with Engine.from_model("random:tiny", device="cpu", state_dir=str(state_dir)) as eng:
        info = eng.info("default\x1fsig")
        assert info.applied_seq == info.durable_seq == 2


def test_cli_stream_command(server, tmp_path, capsys):
    from streamret.cli import main

    path = tmp_path / "doc.txt"
    path.write_text(TEXT * 3)
    assert main(["stream", str(path), "--server", f"127.0.0.1:{server.port}", "--token", "tok-acme",
                 "--chunk-bytes", "64"]) == 0
    out = capsys.readouterr().out
    assert f"{len(TEXT) * 3:,} tokens" in out and "embedding  dim 64" in out and "summary" in out


def test_tls(engine, tmp_path):
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost"],
                   check=True, capture_output=True)
    srv = BackgroundServer(engine, ServerConfig(port=0, tls_cert=str(cert), tls_key=str(key)))
    try:
        creds = grpc.ssl_channel_credentials(root_certificates=cert.read_bytes())
        s = Stubs(srv.port, credentials=creds, host="localhost")
        assert s.OpenStream(pb.OpenStreamRequest(stream_id="tls", create_if_missing=True)).stream_id == "tls"
        plain = Stubs(srv.port, host="localhost")
        assert code_of(plain.OpenStream, pb.OpenStreamRequest(stream_id="tls"))[0] == SC.UNAVAILABLE
        with Client(f"localhost:{srv.port}", root_certificates=cert.read_bytes()) as c:
            assert c.append("tls", "over tls").applied_seq == 1
    finally:
        srv.stop()


def test_client_retries_unary_calls_until_the_server_is_up(engine):
    import socket

    with socket.socket() as sock:  # a free port, with nobody listening yet
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    started: dict = {}

    def start_later():
        time.sleep(0.5)
        started["srv"] = BackgroundServer(engine, ServerConfig(port=port))

    t = threading.Thread(target=start_later)
    t.start()
    try:
        with Client(f"127.0.0.1:{port}", retry=RetryPolicy(timeout_s=20, initial_backoff_s=0.05)) as c:
            assert c.open("late-start").stream_id == "late-start"
    finally:
        t.join()
        started["srv"].stop()
    with Client(f"127.0.0.1:{port}", retry=RetryPolicy(timeout_s=0.3, initial_backoff_s=0.05)) as c:
        with pytest.raises(grpc.aio.AioRpcError) as info:  # nobody there: gives up after timeout_s
            c.open("nobody")
        assert info.value.code() == SC.UNAVAILABLE


def test_a_client_hanging_up_mid_append_leaves_the_engine_working():
    # small steps, so that most chunks are still in the engine when the client hangs up
    with Engine.from_model("random:tiny", device="cpu", config=EngineConfig(max_step_tokens=64)) as eng:
        srv = BackgroundServer(eng, ServerConfig(port=0))
        try:
            s = Stubs(srv.port)
            call = s.Append(iter([req("hangup", i + 1, TEXT * 3) for i in range(8)]))
            next(call)  # the first ack: the others are queued in the engine
            call.cancel()  # the server's pending acks are cancelled; the engine's futures must not be
            fut = eng.submit_append("after-hangup", 1, "still working", flush=True)
            assert fut.result(timeout=60).applied_seq == 1
            # and the stream that was cut off goes on from where the engine got to
            applied = s.OpenStream(pb.OpenStreamRequest(stream_id="hangup")).applied_seq
            [ack] = s.append(req("hangup", applied + 1, "more"))
            assert ack.error_code == 0 and ack.applied_seq == applied + 1
        finally:
            srv.stop()


def test_a_large_chunk_is_tokenized_off_the_event_loop():
    """A chunk of 16 KiB or more is submitted (and so tokenized) from the server's thread pool: while its
    tokenizer takes long, the event loop answers other calls."""
    tok = GatedTokenizer()
    with Engine(LoadedModel(build_random(RetNetConfig(), seed=1).eval(), tok, "gated")) as eng:
        srv = BackgroundServer(eng, ServerConfig(port=0))
        try:
            s, out = Stubs(srv.port), []
            big = req("big", 1, "SLOW " + "word " * 4000)  # 20 KB
            sender = threading.Thread(target=lambda: out.append(s.append(big)))
            sender.start()
            assert tok.entered.wait(30)
            info = s.OpenStream(pb.OpenStreamRequest(stream_id="other", create_if_missing=True), timeout=10)
            assert info.applied_seq == 0
            health = health_pb2_grpc.HealthStub(s.channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
            assert health.status == health_pb2.HealthCheckResponse.SERVING
            tok.gate.set()
            sender.join(60)
            assert [(a.seq, a.applied_seq, a.error_code) for a in out[0]] == [(1, 1, 0)]
        finally:
            tok.gate.set()
            srv.stop()


def test_client_refuses_text_that_is_not_utf8_or_empty_before_sending_it(server):
    """One behaviour for user texts (streamret/textcheck.py): Client.stream refuses a chunk that is not UTF-8
    (or holds a NUL byte) before sending it, and a flush that would leave a new stream empty; characters may
    still be cut across chunks, and check_text=False sends any bytes (read as U+FFFD by the server)."""
    from streamret.textcheck import InvalidText

    with Client(f"127.0.0.1:{server.port}", token="tok-acme") as c:
        last = c.stream("utf8-ok", [b"caf\xc3", b"\xa9 and more. "])
        assert last.applied_seq == 3  # two chunks and the flush
        with pytest.raises(InvalidText, match=r"stream 'utf8-bad' is not UTF-8 text: byte 0xff at offset 6"):
            c.stream("utf8-bad", [b"fine. ", b"\xff bad"])
        assert c.open("utf8-bad").applied_seq == 1  # the chunk before it went; the bad one did not
        with pytest.raises(InvalidText, match="stream 'utf8-empty' is empty: nothing to embed"):
            c.stream("utf8-empty", [])
        with pytest.raises(InvalidText, match="a NUL byte at offset 2"):
            c.stream("utf8-nul", [b"ab\x00"])
        assert c.open("utf8-nul").applied_seq == 0
        last = c.stream("utf8-raw", [b"\xff raw bytes. "], check_text=False)
        assert last.applied_seq == 2
        for sid in ("utf8-ok", "utf8-bad", "utf8-empty", "utf8-nul", "utf8-raw"):
            c.close_stream(sid)
