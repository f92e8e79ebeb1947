"""The Node.js tools that package.json pins (buf; grpc-js and proto-loader for the interop test), installed with
`npm ci` into node_modules/ when one is missing or at another version. Without node and npm the caller's test
fails naming the fix: CI must not pass without them."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NODE_MODULES = ROOT / "node_modules"
NPM_TIMEOUT_S = 600


def pinned() -> dict[str, str]:
    """{package: version} of package.json's devDependencies."""
    return json.loads((ROOT / "package.json").read_text())["devDependencies"]


def _installed(package: str) -> str | None:
    manifest = NODE_MODULES / package / "package.json"
    return json.loads(manifest.read_text()).get("version") if manifest.is_file() else None


def require_node_tools() -> Path:
    """node_modules/ with every pinned package at its version (`npm ci` first if needed); fails the test when
    node or npm is missing or npm cannot install them."""
    wanted = pinned()
    missing = [tool for tool in ("node", "npm") if shutil.which(tool) is None]
    if missing:
        pytest.fail(f"{' and '.join(missing)} not found: these tests need Node.js and npm (for {', '.join(wanted)}); "
                    "install them (Debian/Ubuntu: apt-get install nodejs npm), then run the tests again")
    if all(_installed(p) == v for p, v in wanted.items()):
        return NODE_MODULES
    try:
        out = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=ROOT, capture_output=True, text=True,
                             timeout=NPM_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"`npm ci` took over {NPM_TIMEOUT_S} s; is the npm registry reachable?")
    if out.returncode != 0:
        pytest.fail(f"`npm ci` failed (exit {out.returncode}):\n{out.stderr[-3000:]}")
    wrong = {p: _installed(p) for p, v in wanted.items() if _installed(p) != v}
    if wrong:
        pytest.fail(f"after `npm ci`, node_modules has {wrong}, package.json pins {wanted}; "
                    "update package-lock.json (npm install --package-lock-only)")
    return NODE_MODULES
