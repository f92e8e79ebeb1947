"""The committed generated code must be exactly what scripts/gen_proto.py makes of the .proto today."""

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = ROOT / "streamret" / "service" / "proto_gen"


def _load_generator():
    spec = importlib.util.spec_from_file_location("gen_proto", ROOT / "scripts" / "gen_proto.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_code_matches_proto(tmp_path):
    pytest.importorskip("grpc_tools", reason="grpcio-tools (dev extra) regenerates the code")
    gen = _load_generator()
    written = gen.generate(tmp_path)
    assert [p.name for p in written] == list(gen.GENERATED)
    for fresh in written:
        committed = COMMITTED / fresh.name
        assert committed.is_file(), f"{committed} is missing; run python scripts/gen_proto.py"
        assert committed.read_text() == fresh.read_text(), (
            f"{committed.name} differs from what proto/streamret/v1/streamret.proto generates; "
            "run python scripts/gen_proto.py and commit the result"
        )


def test_generated_grpc_module_imports_within_the_package():
    text = (COMMITTED / "streamret_pb2_grpc.py").read_text()
    assert "from . import streamret_pb2" in text
    assert "from streamret.v1" not in text
