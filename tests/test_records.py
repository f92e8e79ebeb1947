"""Hostile and corrupt state records (issue 15, item 2): every one is refused with INVALID_ARGUMENT naming the
bad field, by ImportState, by a fork and by a load from the durable store alike (record.py checks them in one
place), and none of them can stop the step loop that serves every tenant."""

import base64
import itertools
import json
import math
import shutil

import numpy as np
import pytest
import torch

from streamret.engine import Engine, EngineConfig, record
from streamret.errors import InvalidArgument

_ids = itertools.count()
SOURCE_TEXT = "First sentence here. A second one follows! And an open third"


@pytest.fixture(scope="module")
def eng():
    with Engine.from_model("random:tiny", device="cpu") as e:
        yield e


@pytest.fixture(scope="module")
def good(eng) -> bytes:
    """A healthy record with kept segments, an open segment and a text tail."""
    eng.append("source", 1, SOURCE_TEXT)
    data = eng.export_state("source")
    meta, tensors = record.decode(data)
    assert meta["segments"]["kept"] and meta["segments"]["open"]["text"] and meta["text_tail"]
    return data


def edited(data: bytes, meta_edit=None, tensor_edit=None) -> bytes:
    meta, tensors = record.decode(data)
    if meta_edit is not None:
        meta_edit(meta)
    if tensor_edit is not None:
        tensor_edit(tensors)
    return record.encode(meta, tensors)


def setter(path: str, value):
    """A meta edit that sets the field at a dotted path ("segments.kept.0.text") to value."""
    def edit(meta):
        *parents, key = path.split(".")
        for p in parents:
            meta = meta[int(p)] if isinstance(meta, list) else meta[p]
        if isinstance(meta, list):
            meta[int(key)] = value
        else:
            meta[key] = value
    return edit


def tensor_set(name: str, fn):
    def edit(tensors):
        tensors[name] = fn(tensors[name])
    return edit


def nan_at(t: torch.Tensor) -> torch.Tensor:
    t = t.clone()
    t.view(-1)[0] = math.nan
    return t


def inf_at(t: torch.Tensor) -> torch.Tensor:
    t = t.clone()
    t.view(-1)[-1] = -math.inf
    return t


BAD_RECORDS = {
    # (metadata edit, tensor edit, the field the refusal must name)
    "open segment text is a list": (setter("segments.open.text", ["a", "list"]), None, "segments.open.text"),
    "open segment text is a number": (setter("segments.open.text", 7), None, "segments.open.text"),
    "kept segment text is an object": (setter("segments.kept.0.text", {"x": 1}), None, "segments.kept[0].text"),
    "segments is a list": (setter("segments", []), None, "segments"),
    "segments.open is a string": (setter("segments.open", "open"), None, "segments.open"),
    "segments.kept is an object": (setter("segments.kept", {}), None, "segments.kept"),
    "a kept segment is a number": (setter("segments.kept.0", 5), None, "segments.kept[0]"),
    "a kept segment lacks its end": (lambda m: m["segments"]["kept"][0].pop("end"), None, "segments.kept[0]"),
    "stream_id is a number": (setter("stream_id", 12), None, "stream_id"),
    "text_tail is a list": (setter("text_tail", [1, 2]), None, "text_tail"),
    "text_tail is not base64": (setter("text_tail", "%%%not base64%%%"), None, "text_tail"),
    "applied_seq is a string": (setter("applied_seq", "3"), None, "applied_seq"),
    "tokens is a float": (setter("tokens", 52.0), None, "tokens"),
    "revision is true": (setter("revision", True), None, "revision"),
    "an unknown metadata key": (setter("extra", 1), None, "metadata"),
    "a missing metadata key": (lambda m: m.pop("revision"), None, "metadata"),
    "lone surrogate in the open text": (setter("segments.open.text", "ok \ud800 bad"), None, "segments.open.text"),
    "lone surrogate in a kept text": (setter("segments.kept.1.text", "\udfff"), None, "segments.kept[1].text"),
    "lone surrogate in the stream id": (setter("stream_id", "id\ud83d"), None, "stream_id"),
    "open text over the segment text bound": (setter("segments.open.text", "x" * 513), None, "segments.open.text"),
    "a kept segment over the kept limit": (lambda m: m["segments"]["kept"].extend(
        [m["segments"]["kept"][0]] * 64), None, "segments.kept"),
    "text tail over the engine's 4 KiB bound": (setter("text_tail", base64.b64encode(b"y" * (1 << 20)).decode()),
                                                None, "text_tail"),
    "applied_seq 2^63-1": (setter("applied_seq", 2**63 - 1), None, "applied_seq"),
    "applied_seq 2^64-1": (setter("applied_seq", 2**64 - 1), None, "applied_seq"),
    "applied_seq -1": (setter("applied_seq", -1), None, "applied_seq"),
    "tokens 2^63-1": (setter("tokens", 2**63 - 1), None, "tokens"),
    "revision 2^53+1": (setter("revision", 2**53 + 1), None, "revision"),
    "text_offset 2^63-1": (setter("text_offset", 2**63 - 1), None, "text_offset"),
    "open segment count over tokens": (setter("segments.open.count", 10**6), None, "segments.open.count"),
    "a kept segment ends after the text offset": (setter("segments.kept.0.end", 10**9), None, "segments.kept[0]"),
    "a kept segment ends before it starts": (setter("segments.kept.1.start", 60), None, "segments.kept[1]"),
    "a layer state of rank 3": (None, tensor_set("state.layer.0", lambda t: t[0]), "state.layer.0"),
    "a layer state of rank 5": (None, tensor_set("state.layer.1", lambda t: t[None]), "state.layer.1"),
    "a layer state of the wrong width": (None, tensor_set("state.layer.0", lambda t: t[..., :8].contiguous()),
                                         "state.layer.0"),
    "a layer state in float16": (None, tensor_set("state.layer.0", lambda t: t.half()), "state.layer.0"),
    "pool_sum of rank 1": (None, tensor_set("state.pool_sum", lambda t: t[0].contiguous()), "state.pool_sum"),
    "positions in float32": (None, tensor_set("state.positions", lambda t: t.float()), "state.positions"),
    "open_sum of rank 2": (None, tensor_set("segments.open_sum", lambda t: t[None]), "segments.open_sum"),
    "kept embeddings of rank 1": (None, tensor_set("segments.kept_embeddings", lambda t: t[0].contiguous()),
                                  "segments.kept_embeddings"),
    "kept embeddings fewer than texts": (None, tensor_set("segments.kept_embeddings", lambda t: t[:1].contiguous()),
                                         "segments.kept_embeddings"),
    "a missing layer": (None, lambda ts: ts.pop("state.layer.1"), "state.layer.1"),
    "an unknown tensor": (None, lambda ts: ts.update({"state.layer.9": ts["state.layer.0"].clone()}), "state.layer.9"),
    "NaN in a layer state": (None, tensor_set("state.layer.0", nan_at), "state.layer.0"),
    "inf in a layer state": (None, tensor_set("state.layer.1", inf_at), "state.layer.1"),
    "NaN in pool_sum": (None, tensor_set("state.pool_sum", nan_at), "state.pool_sum"),
    "inf in the open segment sum": (None, tensor_set("segments.open_sum", inf_at), "segments.open_sum"),
    "NaN in kept embeddings": (None, tensor_set("segments.kept_embeddings", nan_at), "segments.kept_embeddings"),
    "positions apart from tokens": (None, tensor_set("state.positions", lambda t: t + 5), "state.positions"),
    "pool_count of zero": (None, tensor_set("state.pool_count", lambda t: t * 0), "state.pool_count"),
}


@pytest.mark.parametrize("case", sorted(BAD_RECORDS))
def test_a_malformed_record_is_refused_naming_its_field_and_the_engine_goes_on(eng, good, case):
    meta_edit, tensor_edit, field = BAD_RECORDS[case]
    bad = edited(good, meta_edit, tensor_edit)
    sid = f"bad-{next(_ids)}"
    with pytest.raises(InvalidArgument) as info:
        eng.import_state(sid, bad)
    message = str(info.value)
    assert repr(field) in message and "ExportState" in message, message
    assert not eng.exists(sid)
    # the step loop serves everyone as before, and the stream id is still free
    assert eng.append(sid, 1, "a fresh stream under the refused id. ", flush=True).applied_seq == 1
    assert eng._broken is None
    eng.close(sid)


def test_a_list_as_open_segment_text_no_longer_stops_the_step_loop(eng, good):
    """The issue's reproduction: import, then append. It killed the step loop with a TypeError, and every
    tenant got UNAVAILABLE."""
    bad = edited(good, setter("segments.open.text", ["not", "text"]))
    with pytest.raises(InvalidArgument, match="segments.open.text"):
        eng.import_state("victim-import", bad)
    with pytest.raises(Exception):  # noqa: B017  (the refused import left no stream behind to append to)
        eng.append("victim-import", 2, " more text.", flush=True)
    assert eng.append("other-tenant", 1, "still served. ", flush=True).applied_seq == 1
    assert eng._broken is None


def test_a_good_record_and_its_limits_are_accepted(eng, good):
    """The checks refuse nothing an engine writes: a healthy import works, and counts up to 2^53 are taken
    and keep working after appends (the record stays readable)."""
    info = eng.import_state(f"ok-{next(_ids)}", good)
    assert info.applied_seq == 1
    big = 2**53

    def at_the_limit(meta):
        meta["applied_seq"] = meta["revision"] = big

    sid = f"big-{next(_ids)}"
    assert eng.import_state(sid, edited(good, at_the_limit)).applied_seq == big
    assert eng.append(sid, big + 1, " closes it.", flush=True).applied_seq == big + 1
    assert eng.fork(sid, sid + "-fork").applied_seq == big + 1  # a fork takes the engine's own counts
    meta, _ = record.decode(eng.export_state(sid))
    assert meta["applied_seq"] == big + 1


def test_records_read_from_the_durable_store_are_checked_the_same_way(tmp_path):
    """A record on disk that was damaged (NaN in a state, a list as text) or copied under another stream's
    name is refused with INVALID_ARGUMENT when the stream is loaded, without naming the other stream."""
    cfg = EngineConfig()
    with Engine.from_model("random:tiny", device="cpu", state_dir=str(tmp_path), config=cfg) as e:
        e.append("secret-of-another-tenant", 1, "private words. ")
        e.append("mine", 1, "my words. ")
        e.append("damaged", 1, "about to break. ")
        store = e.durable
    shutil.copy(store.path("secret-of-another-tenant"), store.path("mine"))
    data = store.read("damaged")
    store.write("damaged", 10**6, edited(data, setter("segments.open.text", ["x"]),
                                         tensor_set("state.layer.0", nan_at)))
    with Engine.from_model("random:tiny", device="cpu", state_dir=str(tmp_path), config=cfg) as e:
        with pytest.raises(InvalidArgument) as info:
            e.open("mine", create_if_missing=False)
        assert "secret" not in str(info.value) and "'mine'" in str(info.value)
        with pytest.raises(InvalidArgument, match="state record field 'state.layer.0' holds NaN"):
            e.embedding("damaged")
        assert e.append("fresh", 1, "served. ", flush=True).applied_seq == 1
        np.testing.assert_array_equal(np.isfinite(e.embedding("fresh")), True)


def test_model_mismatch_names_the_callers_stream_not_the_recorded_one(eng):
    with Engine.from_model("random:tiny:3", device="cpu") as other:
        other.append("othertenant\x1fprivate-name", 1, "hello")
        foreign = other.export_state("othertenant\x1fprivate-name")
    with pytest.raises(Exception) as info:
        eng.import_state("mine-mismatch", foreign)
    assert "private-name" not in str(info.value) and "'mine-mismatch'" in str(info.value)
    json.dumps(str(info.value))  # a plain message


def _tensor_regions(data: bytes) -> dict[str, tuple[int, int, str]]:
    """name -> (first byte, end, dtype) of each tensor's data in a record's bytes."""
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + n])
    return {k: (8 + n + v["data_offsets"][0], 8 + n + v["data_offsets"][1], v["dtype"])
            for k, v in header.items() if k != "__metadata__"}


def test_a_byte_changed_in_any_tensor_is_refused_by_the_checksum(eng, good):
    """Issue 15, item 6: a flipped low byte of a float keeps every value finite and every shape right, so only
    a checksum over the whole record tells. Before it, each of these records was served as it was."""
    for start, end, dtype in _tensor_regions(good).values():
        if not dtype.startswith("F"):
            continue
        data = bytearray(good)
        data[(start + end) // 2 // 4 * 4] ^= 0x01  # the lowest mantissa bit of one value
        with pytest.raises(InvalidArgument, match="'checksum' does not match") as err:
            eng.import_state(f"flipped-{next(_ids)}", bytes(data))
        assert "ExportState" in str(err.value), err.value  # says how to get a good record


def test_a_changed_metadata_text_is_refused_by_the_checksum(eng, good):
    """A segment text changed in place (same length, still valid JSON and UTF-8) is caught too."""
    n = int.from_bytes(good[:8], "little")
    header = good[8 : 8 + n]
    at = header.index(b"First sentence")
    data = good[: 8 + at] + b"Worst" + good[8 + at + 5 :]
    with pytest.raises(InvalidArgument, match="'checksum' does not match"):
        eng.import_state(f"text-{next(_ids)}", data)


def test_a_record_without_a_checksum_is_refused(eng, good):
    meta, tensors = record.decode(good)
    del meta["checksum"]
    raw = record.safetensors.torch.save(tensors, metadata={"streamret": json.dumps(meta)})
    with pytest.raises(InvalidArgument, match="missing \\['checksum'\\]"):
        eng.import_state(f"nosum-{next(_ids)}", raw)


def test_a_v1_record_of_an_earlier_version_is_still_read(eng, good):
    """Records written before the checksum (format v1, the same fields) load, so a state dir survives the
    upgrade; their fields are still checked."""
    meta, tensors = record.decode(good)
    del meta["checksum"]
    meta["format"] = record.FORMAT_V1
    raw = record.safetensors.torch.save(tensors, metadata={"streamret": json.dumps(meta)})
    sid = f"v1-{next(_ids)}"
    info = eng.import_state(sid, raw)
    assert info.applied_seq == meta["applied_seq"] and info.tokens == meta["tokens"]
    assert np.array_equal(eng.embedding(sid), eng.embedding(eng.import_state(f"v2-{next(_ids)}", good).stream_id))
    meta["tokens"] = -1
    bad = record.safetensors.torch.save(tensors, metadata={"streamret": json.dumps(meta)})
    with pytest.raises(InvalidArgument, match="'tokens'"):
        eng.import_state(f"v1-{next(_ids)}", bad)
    meta["format"] = "streamret.stream.v0"
    with pytest.raises(InvalidArgument, match="is not 'streamret.stream.v2'"):
        eng.import_state(f"v0-{next(_ids)}", record.safetensors.torch.save(
            tensors, metadata={"streamret": json.dumps(meta)}))


def test_a_damaged_record_in_the_store_can_be_closed_and_its_id_used_again(tmp_path):
    """A stream whose durable record is damaged is refused on every use (naming the caller's id only) and,
    before, could not be closed either; closing it without keeping its state now deletes the record."""
    with Engine.from_model("random:tiny", device="cpu", state_dir=str(tmp_path)) as e:
        e.append("mine", 1, SOURCE_TEXT)
        e.append("theirs-secret", 1, "Another tenant's words. ")
        e.evict("mine")
        e.evict("theirs-secret")
        path = e.durable.path("mine")
        data = bytearray(open(path, "rb").read())
        start, end, _ = _tensor_regions(bytes(data))["state.layer.0"]
        data[start + 4] ^= 0x01
        open(path, "wb").write(bytes(data))
        for call in (lambda: e.open("mine"), lambda: e.embedding("mine"), lambda: e.close("mine", keep_state=True)):
            with pytest.raises(InvalidArgument, match="'checksum' does not match.*CloseStream, keep_state=false"):
                call()
        e.close("mine")  # deletes the record unread
        assert not e.exists("mine")
        assert e.append("mine", 1, "A fresh start. ").applied_seq == 1
        # another stream's record copied over this one's: refused without a word of the other stream
        e.evict("mine")
        shutil.copyfile(e.durable.path("theirs-secret"), e.durable.path("mine"))
        with pytest.raises(InvalidArgument) as err:
            e.open("mine")
        assert "theirs" not in str(err.value) and "Another" not in str(err.value), err.value
        e.close("mine")
        assert e.open("mine").applied_seq == 0
