"""A streamret wheel built from a clean copy of this checkout, for the packaging tests."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# what a source checkout needs to build (pyproject's readme, the two package roots and the .proto it ships)
SOURCES = ["pyproject.toml", "README.md", "streamret", "kernels", "proto"]


def build_wheel(src: Path, out: Path) -> Path:
    """Copy the sources to `src` (no build/ or egg-info left over from elsewhere), build into `out`."""
    src.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build")
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=ignore)
        else:
            shutil.copy2(ROOT / name, src / name)
    cmd = [sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation", "-q", "-w", str(out)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    (built,) = out.glob("streamret-*.whl")
    return built
