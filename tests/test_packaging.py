"""Packaging: every package folder is in pyproject's list, and a built wheel carries the kernels, the .proto and
py.typed, with the client's dependencies only (the model's are the [server] extra)."""

import tomllib
import zipfile

import pytest
from helpers_wheel import ROOT, build_wheel
from packaging.requirements import Requirement

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


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


def data_packages() -> set[str]:
    """Packages pyproject maps to a folder that holds data only (proto/ as streamret.proto)."""
    dirs = PYPROJECT["tool"]["setuptools"]["package-dir"]
    return {name for name, folder in dirs.items() if not (ROOT / folder / "__init__.py").exists()}


def test_every_package_folder_is_listed_in_pyproject():
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    missing = package_folders() - listed
    assert not missing, f"add {sorted(missing)} to [tool.setuptools] packages in pyproject.toml"
    stale = listed - package_folders() - data_packages()
    assert not stale, f"pyproject lists packages with no folder: {sorted(stale)}"


def test_console_script_and_extras():
    project = PYPROJECT["project"]
    assert project["scripts"]["streamret"] == "streamret.cli:main"
    assert {"server", "ray", "train", "dev"} <= set(project["optional-dependencies"])


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    return zipfile.ZipFile(build_wheel(tmp_path_factory.mktemp("src"), tmp_path_factory.mktemp("wheel")))


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


def test_wheel_ships_the_proto_where_protoc_finds_it(wheel):
    shipped = wheel.read("streamret/proto/streamret/v1/streamret.proto")
    assert shipped == (ROOT / "proto/streamret/v1/streamret.proto").read_bytes()


def test_wheel_requires_the_client_only_and_the_model_under_server(wheel):
    metadata = wheel.read(next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))).decode()
    requires = [Requirement(line.split(":", 1)[1]) for line in metadata.splitlines()
                if line.startswith("Requires-Dist:")]
    base = {r.name for r in requires if r.marker is None}
    assert base == {"numpy", "pyarrow", "grpcio", "protobuf", "tqdm"}, base
    server = {r.name: r for r in requires if r.marker is not None and r.marker.evaluate({"extra": "server"})}
    assert {"torch", "triton", "safetensors", "tokenizers"} <= set(server)
    on = {"extra": "server", "platform_system": "Linux", "platform_machine": "x86_64"}
    assert server["triton"].marker.evaluate(on)  # Triton ships wheels for Linux x86-64 only
    for system, machine in (("Darwin", "arm64"), ("Windows", "AMD64"), ("Linux", "aarch64")):
        assert not server["triton"].marker.evaluate({**on, "platform_system": system, "platform_machine": machine})
