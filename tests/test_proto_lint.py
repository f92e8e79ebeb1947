"""`buf lint` (proto/buf.yaml: STANDARD) passes on the public API.

buf comes from npm at the version package.json pins; this test runs `npm ci` when node_modules/ lacks it, so the
README's test command covers it on a fresh machine. Without node and npm it fails (never skips): CI must not
pass without linting the API.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BUF = ROOT / "node_modules" / ".bin" / "buf"
NPM_TIMEOUT_S = 600


def _pinned_version() -> str:
    return json.loads((ROOT / "package.json").read_text())["devDependencies"]["@bufbuild/buf"]


def _installed_version() -> str | None:
    if not BUF.exists():
        return None
    out = subprocess.run([str(BUF), "--version"], capture_output=True, text=True, timeout=60)
    return out.stdout.strip() if out.returncode == 0 else None


def _buf() -> Path:
    """node_modules/.bin/buf at the pinned version, installed with `npm ci` if it is not there."""
    pinned = _pinned_version()
    if _installed_version() == pinned:
        return BUF
    missing = [tool for tool in ("node", "npm") if shutil.which(tool) is None]
    if missing:
        pytest.fail(f"{' and '.join(missing)} not found: buf lint needs Node.js and npm to install buf {pinned}; "
                    "install them (Debian/Ubuntu: apt-get install nodejs npm), then run the tests again")
    try:
        out = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=ROOT, capture_output=True, text=True,
                             timeout=NPM_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"`npm ci` (installing buf {pinned}) took over {NPM_TIMEOUT_S} s; is the npm registry reachable?")
    if out.returncode != 0:
        pytest.fail(f"`npm ci` could not install buf {pinned} (exit {out.returncode}):\n{out.stderr[-3000:]}")
    if (found := _installed_version()) != pinned:
        pytest.fail(f"`npm ci` left buf {found} at {BUF}, package.json pins {pinned}; "
                    "update package-lock.json (npm install --package-lock-only)")
    return BUF


def test_buf_lint_passes():
    out = subprocess.run([str(_buf()), "lint"], cwd=ROOT / "proto", capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, f"buf lint proto/ (exit {out.returncode}):\n{out.stdout}{out.stderr}"


def test_without_node_the_lint_fails_with_the_fix(monkeypatch, tmp_path):
    monkeypatch.setattr(sys.modules[__name__], "BUF", tmp_path / "no-buf")
    monkeypatch.setattr(shutil, "which", lambda tool: None)
    with pytest.raises(pytest.fail.Exception, match="node and npm not found.*apt-get install nodejs npm"):
        _buf()


def test_every_disabled_rule_says_why():
    """buf.yaml turns a STANDARD rule off only with a comment right above it that gives the reason."""
    lines = (ROOT / "proto" / "buf.yaml").read_text().splitlines()
    disabled = lines[lines.index("  except:") + 1:] if "  except:" in lines else []
    for i, line in enumerate(disabled):
        if line.startswith("    - "):
            above = disabled[i - 1].strip() if i else ""
            assert above.startswith("#") and len(above) > 20, (
                f"buf.yaml disables {line.strip()[2:]} without a comment above it saying why")
