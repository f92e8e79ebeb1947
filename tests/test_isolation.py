"""Auth and tenant isolation, table-driven over every RPC of both services (StreamRet and Batch).

- Callers without a valid bearer token get UNAUTHENTICATED from every RPC, and the call changes nothing.
- A read-only token reads (OpenStream of an existing stream, GetEmbedding, Summarize, ExportState,
  EmbedTable, EmbedTables) and gets PERMISSION_DENIED for every write.
- Tenant globex, naming streams of tenant acme, gets exactly what it gets for ids nobody ever used (same
  status, same message, same response with the id swapped): nothing tells it that acme's stream exists;
  writes land in globex's own namespace, acme's streams do not change, and no acme id, text or tenant name
  appears in anything globex receives.
"""

import uuid

import grpc
import numpy as np
import pyarrow as pa
import pytest
from helpers_rpc import RpcCaller

from streamret.batch.arrow_table import table_from_ipc, table_to_ipc
from streamret.engine import Engine, EngineConfig
from streamret.service.proto_gen import streamret_pb2 as pb
from streamret.service.server import BackgroundServer, ServerConfig

SC = grpc.StatusCode
TOKENS = {"tok-acme-6b1f": "acme", "tok-acme-ro-0c2d": "acme read", "tok-globex-93ea": "globex"}
SECRET = "Acme quarterly numbers: zebra-violet-7731. "


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    with Engine.from_model("random:tiny", device="cpu", state_dir=str(tmp_path_factory.mktemp("states")),
                           config=EngineConfig(durable_every_chunks=0)) as eng:
        yield eng


@pytest.fixture(scope="module")
def server(engine, tmp_path_factory):
    tokens = tmp_path_factory.mktemp("auth") / "tokens"
    tokens.write_text("".join(f"{t} {tenant}\n" for t, tenant in TOKENS.items()))
    srv = BackgroundServer(engine, ServerConfig(port=0, auth_tokens=str(tokens)))
    yield srv
    srv.stop()


class Caller(RpcCaller):
    """Every RPC by name, with one `authorization` header (or none)."""

    def __init__(self, port: int, header: str | None):
        super().__init__(f"127.0.0.1:{port}", (("authorization", header),) if header is not None else ())


def bearer(token: str) -> str:
    return f"Bearer {token}"


def events(sid: str, seq: int) -> list[pb.AppendEventsRequest]:
    table = pa.table({"stream_id": [sid], "seq": [seq], "text": ["event text "]})
    return [pb.AppendEventsRequest(arrow_ipc=table_to_ipc(table))]


DOCS = table_to_ipc(pa.table({"id": [1, 2], "text": ["one two", "three four"]}))
# every Batch response carries one Arrow IPC stream in arrow_ipc
ARROW_RESPONSES = (pb.EmbedTableResponse, pb.EmbedTablesResponse, pb.AppendEventsResponse)


def requests_for(sid: str, other: str, blob: bytes) -> dict:
    """rpc -> (request, writes?) touching stream id `sid` (`other`: a second id for ForkStream's target)."""
    return {
        "OpenStream": (pb.OpenStreamRequest(stream_id=sid), False),
        "OpenStream+create": (pb.OpenStreamRequest(stream_id=sid, create_if_missing=True), True),
        "Append": ([pb.AppendRequest(stream_id=sid, seq=2, text="more ")], True),
        "Append+first": ([pb.AppendRequest(stream_id=sid, seq=1, text="first ")], True),
        "GetEmbedding": (pb.GetEmbeddingRequest(stream_id=sid), False),
        "Summarize": (pb.SummarizeRequest(stream_id=sid), False),
        "CloseStream": (pb.CloseStreamRequest(stream_id=sid), True),
        "ForkStream": (pb.ForkStreamRequest(source_id=sid, new_id=other), True),
        "ForkStream+onto": (pb.ForkStreamRequest(source_id="g-own", new_id=sid), True),
        "ExportState": (pb.ExportStateRequest(stream_id=sid), False),
        "ImportState": (pb.ImportStateRequest(stream_id=sid, state=pb.ExportStateResponse(data=blob)), True),
        "EmbedTable": (pb.EmbedTableRequest(arrow_ipc=DOCS), False),
        "EmbedTables": ([pb.EmbedTablesRequest(arrow_ipc=DOCS)], False),
        "AppendEvents": (events(sid, 1), True),
        "GetModelInfo": (pb.GetModelInfoRequest(), False),  # names no stream: the same for every tenant
    }


CASES = list(requests_for("x", "y", b""))
ALL_RPCS = {c.split("+")[0] for c in CASES}


def test_the_table_covers_every_rpc():
    declared = {m.name for s in ("StreamRet", "Batch") for m in pb.DESCRIPTOR.services_by_name[s].methods}
    assert ALL_RPCS == declared


def _own_blob(port: int) -> bytes:
    globex = Caller(port, bearer("tok-globex-93ea"))
    globex.call("OpenStream", pb.OpenStreamRequest(stream_id="g-own", create_if_missing=True))
    return globex.call("ExportState", pb.ExportStateRequest(stream_id="g-own"))[2].data


@pytest.mark.parametrize("header", [None, "Bearer tok-wrong", "Bearer", "Bearer ", "Basic tok-acme-6b1f",
                                    "tok-acme-6b1f", "Bearer tok-acme-6b1fX", "Bearer TOK-ACME-6B1F"],
                         ids=["none", "wrong", "empty", "blank", "basic", "no-scheme", "suffix", "case"])
@pytest.mark.parametrize("case", CASES)
def test_no_valid_token_is_unauthenticated_and_changes_nothing(server, engine, header, case):
    sid = f"unauth-{uuid.uuid4().hex[:8]}"
    request, _ = requests_for(sid, sid + "-2", b"junk")[case]
    code, details, _ = Caller(server.port, header).call(case.split("+")[0], request)
    assert code == SC.UNAUTHENTICATED, (case, header, code, details)
    assert "acme" not in details.lower() and "tok-" not in details, details
    assert not [s for s in engine.store.streams if sid in s], "a refused call created a stream"


READS = {"OpenStream", "GetEmbedding", "Summarize", "ExportState", "EmbedTable", "EmbedTables", "GetModelInfo"}


@pytest.mark.parametrize("case", CASES)
def test_read_only_tokens_read_and_cannot_write(server, case):
    acme, ro = Caller(server.port, bearer("tok-acme-6b1f")), Caller(server.port, bearer("tok-acme-ro-0c2d"))
    sid = f"ro-{uuid.uuid4().hex[:8]}"
    acme.call("Append", [pb.AppendRequest(stream_id=sid, seq=1, text=SECRET)])
    blob = acme.call("ExportState", pb.ExportStateRequest(stream_id=sid))[2].data
    target = sid + "-new" if case in ("ImportState", "OpenStream+create") else sid  # creating needs write
    request, writes = requests_for(target, sid + "-fork", blob)[case]
    code, details, _ = ro.call(case.split("+")[0], request)
    if writes:
        assert code == SC.PERMISSION_DENIED and "read-only" in details, (case, code, details)
    else:
        assert case.split("+")[0] in READS and code == SC.OK, (case, code, details)
    code, _, info = acme.call("OpenStream", pb.OpenStreamRequest(stream_id=sid))
    assert code == SC.OK and info.applied_seq == 1  # untouched


def _normalized(result, sid: str, fresh: str) -> tuple:
    """A call's outcome with the stream id it named replaced, so calls on two ids can be compared."""
    code, details, response = result
    if response is None:
        return code, details.replace(sid, "<ID>").replace(fresh, "<ID>")
    items = response if isinstance(response, list) else [response]
    out = []
    for item in items:
        if isinstance(item, ARROW_RESPONSES):
            table = table_from_ipc(item.arrow_ipc)
            rows = table.drop_columns([c for c in table.column_names if c == "embedding"]).to_pylist()
            out.append(repr(rows).replace(sid, "<ID>").replace(fresh, "<ID>"))
        else:
            out.append(item.SerializeToString(deterministic=True).replace(sid.encode(), b"<ID>")
                       .replace(fresh.encode(), b"<ID>"))
    return code, out


SECRETS = ("acme", "zebra", "violet", "7731", "quarterly")  # what no answer to another tenant may hold


def _unrelated_id(prefix: str) -> str:
    """A random stream id that holds none of SECRETS (the answers may echo the id: a hex id once held 7731)."""
    while True:
        sid = f"{prefix}-{uuid.uuid4().hex[:8]}"
        if not any(secret in sid for secret in SECRETS):
            return sid


@pytest.mark.parametrize("case", CASES)
def test_another_tenants_streams_are_indistinguishable_from_missing_ones(server, case):
    acme, globex = Caller(server.port, bearer("tok-acme-6b1f")), Caller(server.port, bearer("tok-globex-93ea"))
    blob = _own_blob(server.port)
    taken, fresh = _unrelated_id("t"), _unrelated_id("f")  # same length
    for seq, text in enumerate([SECRET, "Second chunk of it. "], 1):
        assert acme.call("Append", [pb.AppendRequest(stream_id=taken, seq=seq, text=text)])[0] == SC.OK
    acme.call("OpenStream", pb.OpenStreamRequest(stream_id=taken + "-f", create_if_missing=True))
    before = acme.call("GetEmbedding", pb.GetEmbeddingRequest(stream_id=taken))[2]

    on_taken = globex.call(case.split("+")[0], requests_for(taken, taken + "-f", blob)[case][0])
    on_fresh = globex.call(case.split("+")[0], requests_for(fresh, fresh + "-f", blob)[case][0])
    assert _normalized(on_taken, taken, fresh) == _normalized(on_fresh, fresh, taken), case

    received = repr(on_taken[1]) + repr(on_taken[2])
    for secret in SECRETS:
        assert secret not in received.lower(), (case, secret)
    after = acme.call("GetEmbedding", pb.GetEmbeddingRequest(stream_id=taken))[2]
    assert (after.applied_seq, after.tokens) == (before.applied_seq, before.tokens) and before.applied_seq == 2
    np.testing.assert_array_equal(after.values, before.values)
    code, _, info = acme.call("OpenStream", pb.OpenStreamRequest(stream_id=taken + "-f"))
    assert code == SC.OK and info.applied_seq == 0  # globex's fork or import did not land on acme's stream
