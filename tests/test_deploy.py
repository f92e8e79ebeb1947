"""deploy/: every YAML loads, has the pieces a streamret cluster needs, and every `streamret ...` command
the files run (YAML values, the Dockerfile's RUN and CMD) parses with the real CLI."""

import json
import re
import shlex
from pathlib import Path

import pytest
import yaml

from streamret.cli import build_parser

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
YAMLS = sorted(DEPLOY.glob("*.yaml"))
SHELL_OPS = {";", "&", "&&", "|", "||", "(", ")", ">", ">>", "<"}
PREFIXES = {"exec", "nohup", "then", "do", "time", "env"}


def strings(node):
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for v in node.values():
            yield from strings(v)
    elif isinstance(node, list):
        for v in node:
            yield from strings(v)


def commands_in(shell: str) -> list[list[str]]:
    """Every `streamret ...` argv in a shell string, cut at shell operators."""
    lexer = shlex.shlex(shell, posix=True, punctuation_chars=";&|()<>")
    lexer.whitespace_split = True
    tokens = list(lexer)
    out = []
    for i, tok in enumerate(tokens):
        at_command = i == 0 or tokens[i - 1] in SHELL_OPS or tokens[i - 1] in PREFIXES
        if tok == "streamret" and at_command:
            argv = []
            for t in tokens[i + 1 :]:
                if t in SHELL_OPS:
                    break
                argv.append(t)
            out.append(argv)
    return out


def dockerfile_commands() -> list[list[str]]:
    text = re.sub(r"\\\n\s*", " ", (DEPLOY / "Dockerfile").read_text())
    out = []
    for line in text.splitlines():
        kind, _, rest = line.strip().partition(" ")
        if kind == "CMD" and rest.startswith("["):
            argv = json.loads(rest)
            out.append(argv[1:] if argv[0] == "streamret" else [])
        elif kind in ("RUN", "CMD", "ENTRYPOINT"):
            out += commands_in(rest)
    return [c for c in out if c]


def yaml_commands(path: Path) -> list[list[str]]:
    docs = yaml.safe_load_all(path.read_text())
    return [argv for doc in docs for s in strings(doc) for argv in commands_in(s) if argv]  # a bare word is a name


def test_deploy_has_a_cluster_yaml_a_kuberay_manifest_and_a_dockerfile():
    names = {p.name for p in YAMLS}
    assert "ray-cluster.yaml" in names and "kuberay-raycluster.yaml" in names and (DEPLOY / "Dockerfile").exists()


@pytest.mark.parametrize("path", YAMLS, ids=lambda p: p.name)
def test_every_streamret_command_in_the_yaml_exists_in_the_cli(path):
    found = yaml_commands(path)
    assert found, f"{path.name} runs no streamret command"
    parser = build_parser()
    for argv in found:
        args = parser.parse_args(argv)  # SystemExit (a test failure) on an unknown command or option
        if argv[0] == "serve":
            assert args.ray == "auto" and args.state_dir and args.auth_tokens, argv  # joins the cluster, safely


def test_the_dockerfile_commands_exist_in_the_cli():
    found = dockerfile_commands()
    assert any(argv[:1] == ["serve"] for argv in found)
    parser = build_parser()
    for argv in found:
        argv = [a for a in argv if a not in ("--help", "-h")]  # --help exits; the rest must parse
        if argv:
            parser.parse_args(argv)


def test_the_ray_cluster_yaml_has_gpu_workers_and_a_head_without_gpus():
    cfg = yaml.safe_load((DEPLOY / "ray-cluster.yaml").read_text())
    types = cfg["available_node_types"]
    assert types[cfg["head_node_type"]]["resources"].get("GPU", 0) == 0
    assert any(t["resources"].get("GPU", 0) >= 1 and t.get("max_workers", 0) >= 1 for t in types.values())


def test_the_kuberay_manifest_has_a_gpu_worker_group_and_a_grpc_service():
    docs = {d["kind"]: d for d in yaml.safe_load_all((DEPLOY / "kuberay-raycluster.yaml").read_text())}
    cluster = docs["RayCluster"]
    assert cluster["apiVersion"] == "ray.io/v1"
    assert cluster["spec"]["headGroupSpec"]["rayStartParams"]["num-gpus"] == "0"
    gpus = [c["resources"]["limits"].get("nvidia.com/gpu") for g in cluster["spec"]["workerGroupSpecs"]
            for c in g["template"]["spec"]["containers"]]
    assert any(int(n or 0) >= 1 for n in gpus)
    ports = {p["port"] for p in docs["Service"]["spec"]["ports"]}
    assert 50051 in ports
