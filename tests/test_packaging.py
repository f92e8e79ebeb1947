"""Packaging: every package folder is in pyproject's list, and a built wheel carries the kernels."""

import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
# what a source checkout needs to build (pyproject's readme and the two package roots)
SOURCES = ["pyproject.toml", "README.md", "streamret", "kernels"]


def package_folders() -> set[str]:
    """Import names of every folder with an __init__.py, kernels/ mapped as pyproject maps it."""
    mapped = {folder: name for name, folder in PYPROJECT["tool"]["setuptools"]["package-dir"].items()}
    names = set()
    for root in ("streamret", "kernels"):
        for init in (ROOT / root).rglob("__init__.py"):
            parts = list(init.parent.relative_to(ROOT).parts)
            parts[0] = mapped.get(parts[0], parts[0])
            names.add(".".join(parts))
    return names


def test_every_package_folder_is_listed_in_pyproject():
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    missing = package_folders() - listed
    assert not missing, f"add {sorted(missing)} to [tool.setuptools] packages in pyproject.toml"
    stale = listed - package_folders()
    assert not stale, f"pyproject lists packages with no folder: {sorted(stale)}"


def test_console_script_and_extras():
    project = PYPROJECT["project"]
    assert project["scripts"]["streamret"] == "streamret.cli:main"
    assert {"ray", "dev"} <= set(project["optional-dependencies"])


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    """A wheel built from a clean copy of the sources (no build/ or egg-info left over from elsewhere)."""
    src, out = tmp_path_factory.mktemp("src"), tmp_path_factory.mktemp("wheel")
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
    return zipfile.ZipFile(built)


def test_wheel_contains_every_package_and_the_kernel_references(wheel):
    names = set(wheel.namelist())
    assert "streamret_kernels/chunk_retention/reference.py" in names
    assert "streamret/cli.py" in names
    for package in package_folders():
        assert package.replace(".", "/") + "/__init__.py" in names, package
    assert not any(n.startswith("kernels/") for n in names), "kernels/ must install as streamret_kernels only"
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "streamret = streamret.cli:main" in wheel.read(entry_points).decode()


def test_wheel_ships_the_listed_package_data_and_py_typed(wheel):
    names = set(wheel.namelist())
    assert "streamret/py.typed" in names  # PEP 561: type checkers read the package's annotations
    for pattern in PYPROJECT["tool"]["setuptools"]["package-data"]["streamret"]:
        if not any(c in pattern for c in "*?["):  # a plain file name: it must exist and be shipped
            assert (ROOT / "streamret" / pattern).is_file(), f"pyproject lists streamret/{pattern}; add the file"
            assert f"streamret/{pattern}" in names, pattern


def test_version_has_one_source(wheel):
    import importlib.metadata

    import streamret

    declared = PYPROJECT["project"]["version"]
    init = (ROOT / "streamret" / "__init__.py").read_text()
    assert declared not in init, "streamret/__init__.py must read the version from the package metadata"
    assert streamret.__version__ == importlib.metadata.version("streamret") == declared
    metadata = next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
    assert f"\nVersion: {declared}\n" in wheel.read(metadata).decode()
