"""A client in another language speaks the API from the .proto alone: tests/node/interop.js (Node.js, @grpc/grpc-js,
messages loaded from proto/ at run time, a bearer token) calls every StreamRet RPC and Batch.EmbedTable, and gets
what the Python client gets for the same input. Needs node and npm (helpers_node.py); fails without them."""

from __future__ import annotations

import base64
import json
import subprocess

import numpy as np
import pyarrow as pa
import pytest
from helpers_node import ROOT, require_node_tools

from streamret.batch.arrow_table import table_from_ipc, table_to_ipc
from streamret.client import Client
from streamret.engine import Engine
from streamret.service.server import BackgroundServer, ServerConfig

TOKEN = "tok-node-5c1e"
# what interop.js sends to stream node-1: the second chunk cuts "é" in two
CHUNKS = [b"A stream from Node. It was read in three chunks, caf", b"\xc3", b"\xa9."]
DOCS = pa.table({"id": [1, 2], "text": ["one document", "and a second, longer document for the table"]})


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tokens = tmp_path_factory.mktemp("auth") / "tokens"
    tokens.write_text(f"{TOKEN} node\n")
    with Engine.from_model("random:tiny", device="cpu") as engine:
        srv = BackgroundServer(engine, ServerConfig(port=0, auth_tokens=str(tokens)))
        yield srv, engine
        srv.stop()


def _run_node(port: int, tmp_path) -> dict:
    require_node_tools()
    arrow = tmp_path / "docs.arrow"
    arrow.write_bytes(table_to_ipc(DOCS))
    out = subprocess.run(["node", "tests/node/interop.js", f"127.0.0.1:{port}", TOKEN, str(arrow)], cwd=ROOT,
                         capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, f"interop.js failed (exit {out.returncode}):\n{out.stderr[-3000:]}"
    return json.loads(out.stdout)


def test_a_node_client_gets_what_the_python_client_gets(server, tmp_path):
    srv, engine = server
    node = _run_node(srv.port, tmp_path)
    with Client(f"127.0.0.1:{srv.port}", token=TOKEN) as py:
        py.stream("py-1", CHUNKS)
        expected = np.asarray(py.embedding("py-1").values, dtype=np.float32)
        expected_segments = [s.text for s in py.summarize("py-1").segments]
        expected_table = py.embed_table(DOCS)

    assert node["opened"]["stream_id"] == "node-1" and node["opened"]["applied_seq"] == 0
    assert node["opened"]["model_fingerprint"] == engine.fingerprint
    assert [(a["seq"], a["error_code"]) for a in node["acks"]] == [(1, 0), (2, 0), (3, 0)]
    values = np.asarray(node["embedding"]["values"], dtype=np.float32)
    assert values.shape == expected.shape == (node["model_info"]["embedding_dim"],)
    np.testing.assert_allclose(values, expected, atol=1e-6)
    assert node["embedding"]["applied_seq"] == 3 and node["embedding"]["tokens"] > 0
    # no role asked: the query embedding, named in the answer; the model serves no other role
    assert node["embedding"]["role"] == "EMBEDDING_ROLE_QUERY"
    assert node["model_info"]["roles"] == ["EMBEDDING_ROLE_QUERY"]
    assert [s["text"] for s in node["summary"]["segments"]] == expected_segments != []

    # the exported state, imported under another id, is the same stream
    assert node["imported"]["stream_id"] == "node-2" and node["imported"]["applied_seq"] == 3
    assert node["imported"]["tokens"] == node["embedding"]["tokens"]
    np.testing.assert_allclose(node["imported_embedding"]["values"], values, atol=1e-6)
    np.testing.assert_allclose(node["closed"]["embedding"]["values"], values, atol=1e-6)
    assert 1 <= len(node["closed"]["summary"]["segments"]) <= 2

    table = table_from_ipc(base64.b64decode(node["embed_table_ipc"]))
    assert table.column("id").to_pylist() == [1, 2] and table.column("error").to_pylist() == [None, None]
    np.testing.assert_allclose(np.asarray(table.column("embedding").to_pylist()),
                               np.asarray(expected_table.column("embedding").to_pylist()), atol=1e-6)
