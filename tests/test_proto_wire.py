"""Clients built from an older streamret.proto still work: every RPC they know has the same path and streaming
kinds, and its request and response messages the same fields (numbers, names, types, labels), so the bytes on
the wire and the JSON names are unchanged. Message names may change (they are not on the wire).

tests/proto_history/ keeps each published version of the .proto; the code's own descriptor is compared
with each of them.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2

from streamret.service.proto_gen import streamret_pb2 as pb

HISTORY = Path(__file__).resolve().parent / "proto_history"
PUBLISHED = sorted(HISTORY.glob("*.proto"))


def _compile(proto: Path, tmp_path: Path) -> descriptor_pb2.FileDescriptorProto:
    protoc = pytest.importorskip("grpc_tools.protoc", reason="grpcio-tools (dev extra) compiles the old .proto")
    out = tmp_path / f"{proto.parent.name}-{proto.stem}.binpb"
    if protoc.main(["grpc_tools.protoc", f"-I{proto.parent}", f"--descriptor_set_out={out}", str(proto)]) != 0:
        raise RuntimeError(f"protoc failed on {proto}")
    (file,) = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file
    return file


def _current() -> descriptor_pb2.FileDescriptorProto:
    return descriptor_pb2.FileDescriptorProto.FromString(pb.DESCRIPTOR.serialized_pb)


class _Types:
    """A file's messages and enums by full name ('.streamret.v1.X', '.streamret.v1.X.Y'), as fields name them."""

    def __init__(self, file: descriptor_pb2.FileDescriptorProto):
        self.messages: dict[str, descriptor_pb2.DescriptorProto] = {}
        self.enums: dict[str, descriptor_pb2.EnumDescriptorProto] = {}
        self._add(f".{file.package}", file.message_type, file.enum_type)

    def _add(self, prefix: str, messages, enums) -> None:
        for enum in enums:
            self.enums[f"{prefix}.{enum.name}"] = enum
        for message in messages:
            name = f"{prefix}.{message.name}"
            self.messages[name] = message
            self._add(name, message.nested_type, message.enum_type)


def _wire_differences(old: _Types, old_name: str, new: _Types, new_name: str, where: str) -> list[str]:
    """What a peer using message `old_name` would read differently from one using `new_name`."""
    problems = []
    new_fields = {f.number: f for f in new.messages[new_name].field}
    for field in old.messages[old_name].field:
        at = f"{where}.{field.name} (field {field.number})"
        other = new_fields.get(field.number)
        if other is None:
            problems.append(f"{at} is gone")
            continue
        for attr in ("name", "type", "label"):
            if getattr(field, attr) != getattr(other, attr):
                problems.append(f"{at}: {attr} {getattr(field, attr)!r} is now {getattr(other, attr)!r}")
        if field.HasField("oneof_index") != other.HasField("oneof_index"):
            problems.append(f"{at}: moved in or out of a oneof")
        if field.type == field.TYPE_MESSAGE and other.type == field.TYPE_MESSAGE:
            problems += _wire_differences(old, field.type_name, new, other.type_name, at)
        elif field.type == field.TYPE_ENUM and other.type == field.TYPE_ENUM:
            numbers = {v.number for v in new.enums[other.type_name].value}
            problems += [f"{at}: enum value {v.name} = {v.number} is gone"
                         for v in old.enums[field.type_name].value if v.number not in numbers]
    return problems


def _api_differences(old_file, new_file) -> tuple[list[str], int]:
    """(what a client built from old_file would see changed in new_file, how many RPCs were compared)."""
    old, new = _Types(old_file), _Types(new_file)
    new_services = {s.name: {m.name: m for m in s.method} for s in new_file.service}
    problems, compared = [], 0
    if old_file.package != new_file.package:
        problems.append(f"package {old_file.package} is now {new_file.package}")
    for service in old_file.service:
        for method in service.method:
            path = f"/{old_file.package}.{service.name}/{method.name}"
            now = new_services.get(service.name, {}).get(method.name)
            if now is None:
                problems.append(f"{path} is gone")
                continue
            if (method.client_streaming, method.server_streaming) != (now.client_streaming, now.server_streaming):
                problems.append(f"{path}: streaming changed")
            problems += _wire_differences(old, method.input_type, new, now.input_type, f"{path} request")
            problems += _wire_differences(old, method.output_type, new, now.output_type, f"{path} response")
            compared += 1
    return problems, compared


@pytest.mark.parametrize("published", PUBLISHED, ids=[p.stem for p in PUBLISHED])
def test_every_published_rpc_keeps_its_wire_format(published, tmp_path):
    problems, compared = _api_differences(_compile(published, tmp_path), _current())
    assert compared >= 12, f"only {compared} RPCs compared; is {published.name} the whole API?"
    assert not problems, "\n".join(problems)


def test_the_comparison_sees_a_renumbered_field(tmp_path):
    """The check itself: the newest published .proto against a copy with one field renumbered."""
    newest = PUBLISHED[-1]
    text = newest.read_text()
    assert text.count("  string stream_id = 1;") >= 2
    renumbered = tmp_path / "src" / newest.name
    renumbered.parent.mkdir()
    renumbered.write_text(text.replace("  string stream_id = 1;", "  string stream_id = 21;", 1))
    old = _compile(newest, tmp_path)
    assert _api_differences(old, old)[0] == []
    problems, _ = _api_differences(old, _compile(renumbered, tmp_path))
    assert problems and all("stream_id (field 1) is gone" in p for p in problems), problems
