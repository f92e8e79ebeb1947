"""`pip install streamret` is the client: it runs without the [server] extra (no torch, no triton).

The subprocess tests hide the server's packages behind an import blocker, so they hold on any install; the slow
test installs a built wheel into a fresh venv from the package index, as a user would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
import venv
from pathlib import Path

import pytest
from helpers_wheel import ROOT, build_wheel
from packaging.requirements import Requirement

from streamret.cli import SERVER_MODULES

# distribution name -> import name, for every distribution of the [server] extra
IMPORT_NAMES = {"torch": "torch", "triton": "triton", "safetensors": "safetensors", "tokenizers": "tokenizers",
                "grpcio-health-checking": "grpc_health", "grpcio-reflection": "grpc_reflection", "fsspec": "fsspec",
                "prometheus-client": "prometheus_client", "aiohttp": "aiohttp"}
BLOCKED = sorted(SERVER_MODULES | {"ray"})
BLOCKER = f"""
import sys
BLOCKED = {BLOCKED!r}
class _Blocker:  # a client-only install: the server's packages are not there
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
sys.meta_path.insert(0, _Blocker())
"""


def run_blocked(code: str) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-c", BLOCKER + code], capture_output=True, text=True, timeout=120,
                            cwd=ROOT, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_server_modules_are_the_server_extra():
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["server"]
    names = {Requirement(r).name for r in extra}
    assert names <= set(IMPORT_NAMES), f"add the import name of {sorted(names - set(IMPORT_NAMES))} to IMPORT_NAMES"
    assert {IMPORT_NAMES[n] for n in names} == SERVER_MODULES, "streamret/cli.py SERVER_MODULES != the [server] extra"


def test_client_imports_and_fails_cleanly_without_the_server_packages():
    out = run_blocked("""
import json
import streamret.client as client
from streamret.client import ChunkError, Client, ResumeError, RetryPolicy, ServerUnreachable
from streamret.textcheck import InvalidText

with Client("127.0.0.1:1", retry=RetryPolicy(connect_timeout_s=0.2)) as c:
    try:
        c.model_info()
        error = None
    except ServerUnreachable as e:
        error = [e.kind, isinstance(e, ConnectionError)]
try:
    Client("no-port")
except ValueError as e:
    bad = str(e)
loaded = sorted(m for m in sys.modules if m.partition(".")[0] in BLOCKED)
print(json.dumps({"error": error, "bad": bad, "loaded": loaded}))
""")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["error"] == ["refused", True]
    assert "no port" in result["bad"]
    assert result["loaded"] == []


def test_cli_needs_the_server_install_for_the_model_commands():
    out = run_blocked("""
import contextlib, io, json
from streamret.cli import main
results = {}
for argv in (["serve"], ["demo"], ["info", "default"], ["embed", "in.parquet", "-o", "out"], ["--version"],
             ["stream", "--help"]):
    err, std = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(std):
        try:
            code = main(argv)
        except SystemExit as e:
            code = e.code
    results[" ".join(argv)] = [code, err.getvalue(), std.getvalue()]
print(json.dumps(results))
""")
    results = json.loads(out.stdout.strip().splitlines()[-1])
    for command in ("serve", "demo", "info default", "embed in.parquet -o out"):
        code, err, _ = results[command]
        assert code == 2, (command, err)
        assert err.count("\n") == 1 and "pip install 'streamret[server]'" in err, (command, err)
        assert err.startswith(f"streamret {command.split()[0]}: error:"), err
    assert results["--version"][0] == 0 and results["--version"][2].startswith("streamret ")
    assert results["stream --help"][0] == 0 and "--server" in results["stream --help"][2]


def _index_reachable(tmp: Path) -> bool:
    probe = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(tmp), "tqdm"],
                           capture_output=True, timeout=120)
    return probe.returncode == 0


@pytest.mark.slow
def test_client_only_install_in_a_fresh_venv(tmp_path):
    """The built wheel with its declared dependencies from the index: no torch or triton, and the client works."""
    if not _index_reachable(tmp_path / "probe"):
        pytest.skip("no Python package index reachable to install the client's dependencies from")
    wheel = build_wheel(tmp_path / "src", tmp_path / "wheel")
    venv.create(tmp_path / "venv", with_pip=True)
    bin_dir = tmp_path / "venv" / ("Scripts" if os.name == "nt" else "bin")
    python = str(bin_dir / "python")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    install = subprocess.run([python, "-m", "pip", "install", "-q", str(wheel)], capture_output=True, text=True,
                             timeout=600, env=env)
    assert install.returncode == 0, install.stderr[-3000:]
    listed = subprocess.run([python, "-m", "pip", "list", "--format", "json"], capture_output=True, text=True,
                            timeout=120, env=env, check=True)
    installed = {p["name"].lower() for p in json.loads(listed.stdout)}
    assert "streamret" in installed
    assert not installed & {"torch", "triton", "safetensors", "tokenizers"}, installed
    check = subprocess.run([python, "-c", "import streamret.client, streamret; print(streamret.__version__)"],
                           capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    assert check.returncode == 0, check.stderr[-3000:]
    serve = subprocess.run([str(bin_dir / "streamret"), "serve"], capture_output=True, text=True, timeout=120,
                           env=env, cwd=tmp_path)
    assert serve.returncode == 2 and "pip install 'streamret[server]'" in serve.stderr, serve.stderr
