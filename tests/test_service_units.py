"""Unit tests of the service's small parts: token file, tenant names, limits registry, status mapping,
the client's chunk ledger. The end-to-end behaviour is in test_service.py."""

import grpc
import pytest

from streamret.client import ResumeError, _Ledger
from streamret.errors import InvalidArgument, NotFound, PermissionDenied, ResourceExhausted, SeqGap, Unauthenticated
from streamret.service.auth import Authenticator, Caller, check_name, client_id, scrub, tenant_of
from streamret.service.limits import ServiceLimits, StreamRegistry
from streamret.service.proto_gen import streamret_pb2 as pb
from streamret.service.status import code_number, status_of


def _tokens(tmp_path, text):
    path = tmp_path / "tokens"
    path.write_text(text)
    return path


def test_token_file_maps_bearer_tokens_to_tenants(tmp_path):
    text = "# comment\n\ntok-a acme\ntok-r acme read  # ro\ntok-b globex write\n"
    auth = Authenticator.from_file(_tokens(tmp_path, text))
    assert auth.authenticate([("authorization", "Bearer tok-a")]) == Caller("acme", True)
    assert auth.authenticate([("authorization", "bearer tok-r")]) == Caller("acme", False)
    assert auth.authenticate([("x", "y"), ("authorization", "Bearer tok-b")]) == Caller("globex", True)
    for metadata in ([], [("authorization", "Bearer nope")], [("authorization", "Basic tok-a")],
                     [("authorization", "Bearer ")]):
        with pytest.raises(Unauthenticated):
            auth.authenticate(metadata)


@pytest.mark.parametrize("text, fragment", [
    ("", "holds no tokens"),
    ("tok\n", "expected 'TOKEN TENANT"),
    ("tok acme admin\n", "expected 'TOKEN TENANT"),
    ("tok acme\ntok globex\n", "tokens must be unique"),
    ("tok a\x01b\n", "control character"),
])
def test_bad_token_files_are_refused_with_the_line(tmp_path, text, fragment):
    with pytest.raises(ValueError, match=fragment):
        Authenticator.from_file(_tokens(tmp_path, text))


def test_without_a_token_file_everyone_is_the_default_tenant():
    assert Authenticator().authenticate([]) == Caller("default", True)


def test_stream_ids_are_checked_and_namespaced_per_tenant():
    a, b = Caller("acme"), Caller("globex")
    assert a.engine_id("s/../1") != b.engine_id("s/../1")
    assert client_id(a.engine_id("s/../1")) == "s/../1" and tenant_of(a.engine_id("x")) == "acme"
    for bad in ("", "x" * 257, "a\x1fb", "new\nline"):
        with pytest.raises(InvalidArgument):
            a.engine_id(bad)
    assert check_name("ünïcode ✓") == "ünïcode ✓"
    eid = a.engine_id("s1")
    assert scrub(f"stream {eid!r} is busy; {eid}", "acme") == "stream 's1' is busy; s1"


def test_read_only_callers_cannot_write():
    with pytest.raises(PermissionDenied, match="read-only"):
        Caller("acme", can_write=False).require_write("appending")
    Caller("acme").require_write("appending")


def test_registry_counts_streams_per_tenant_and_finds_idle_ones():
    reg = StreamRegistry(max_per_tenant=2)
    assert reg.reserve("a", "a1") and reg.reserve("a", "a2") and not reg.reserve("a", "a1")
    with pytest.raises(ResourceExhausted, match="limit"):
        reg.reserve("a", "a3")
    assert reg.reserve("b", "b1")  # another tenant's count is its own
    reg.release("a1")
    assert reg.reserve("a", "a3") and reg.per_tenant() == {"a": 2, "b": 1}
    reg.touch("a", "a3", {"k": "v"})
    now = reg._held["a3"].last_used
    assert sorted(reg.idle(10, now=now + 11)) == ["a2", "a3", "b1"]
    assert reg.idle(10, now=now + 20) == []  # evicted once, until used again
    assert reg.touch("a", "a3") == {"k": "v"} and reg.idle(10, now=now + 1e9) == ["a3"]


def test_limits_validate():
    with pytest.raises(ValueError, match="max_chunk_bytes"):
        ServiceLimits(max_chunk_bytes=10, max_message_bytes=5)
    with pytest.raises(InvalidArgument):
        ServiceLimits(max_labels=1).check_labels({"a": "1", "b": "2"})


def test_status_mapping_hides_internals():
    assert status_of(SeqGap("s", 5, 3)) == (grpc.StatusCode.FAILED_PRECONDITION,
                                            "stream 's': got seq 5, expected seq 3; resend from 3")
    assert status_of(NotFound("no stream 'x'"))[0] == grpc.StatusCode.NOT_FOUND
    code, message = status_of(RuntimeError("secret internals /srv/x.py"))
    assert code == grpc.StatusCode.INTERNAL and "secret" not in message and "incident" in message
    assert code_number(grpc.StatusCode.RESOURCE_EXHAUSTED) == 8


def _ack(seq, durable):
    return pb.AppendResponse(stream_id="s", seq=seq, applied_seq=seq, durable_seq=durable)


def test_ledger_keeps_chunks_until_durable_and_plans_the_resend():
    ledger = _Ledger(next_seq=1, max_kept_bytes=1 << 20)
    for i in range(5):
        assert ledger.add(b"c%d" % i, False, False) == i + 1
    ledger.on_ack(_ack(1, 0))
    ledger.on_ack(_ack(2, 2))
    assert list(ledger.kept) == [3, 4, 5] and ledger.unacked == 3
    # the server restarted from its durable state (seq 2): everything after goes again
    ledger.resume(pb.OpenStreamResponse(stream_id="s", applied_seq=2, durable_seq=2))
    assert [seq for seq, *_ in ledger.to_resend] == [3, 4, 5]
    # the connection broke but the server kept going (applied 4): only 5 goes again
    ledger.resume(pb.OpenStreamResponse(stream_id="s", applied_seq=4, durable_seq=2))
    assert [seq for seq, *_ in ledger.to_resend] == [5] and ledger.unacked == 1


def test_ledger_memory_bound_limits_how_far_back_it_can_resume():
    ledger = _Ledger(next_seq=1, max_kept_bytes=10)
    for _ in range(4):
        ledger.add(b"x" * 6, False, False)
    for seq in range(1, 5):
        ledger.on_ack(_ack(seq, 0))  # nothing durable: the bound drops the oldest acked chunks
    assert ledger.kept_bytes <= 10 and ledger.floor == 3
    with pytest.raises(ResumeError, match="kept chunks only from 4"):
        ledger.resume(pb.OpenStreamResponse(stream_id="s", applied_seq=0, durable_seq=0))


def test_ledger_resends_everything_to_a_server_that_lost_the_stream():
    ledger = _Ledger(next_seq=1, max_kept_bytes=1 << 20)
    for i in range(3):
        ledger.add(b"c%d" % i, i == 2, i == 2)
        ledger.on_ack(_ack(i + 1, 0))  # applied, never durable
    ledger.resume(pb.OpenStreamResponse(stream_id="s", applied_seq=0, durable_seq=0))  # recreated empty after a crash
    assert [(seq, flush, durable) for seq, _, flush, durable in ledger.to_resend] == [
        (1, False, False), (2, False, False), (3, True, True)]
