"""The command line: help, info, demo, and errors as one line with exit code 2."""

import json
import pkgutil
import subprocess
import sys

import pytest
import torch

import streamret.commands
from streamret import cli
from streamret.model import build_random
from streamret.model import spec as spec_module
from streamret.model.checkpoint import model_fingerprint, save_checkpoint
from streamret.model.tokenizer import ByteTokenizer


def run_cli(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_help_lists_every_command_module():
    result = subprocess.run([sys.executable, "-m", "streamret.cli", "--help"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0
    for name in cli.COMMANDS:
        assert name in result.stdout
    modules = {m.name for m in pkgutil.iter_modules(streamret.commands.__path__)}
    assert modules == set(cli.COMMANDS), "every streamret/commands module must be listed in cli.COMMANDS"


def test_no_command_prints_usage_and_exits_2(capsys):
    code, _, err = run_cli(capsys)
    assert code == 2 and "usage: streamret" in err


def test_info_reports_config_size_state_and_fingerprint(capsys):
    code, out, _ = run_cli(capsys, "info", "random:tiny:3", "--json")
    assert code == 0
    info = json.loads(out)
    model = build_random("tiny", 3)
    assert info["parameters"] == model.num_parameters()
    assert info["state_bytes_per_stream"] == model.config.state_bytes_per_stream() == model.init_state(1).nbytes()
    assert info["fingerprint"] == model_fingerprint(model)
    assert info["config"] == model.config.to_dict()
    code, out, _ = run_cli(capsys, "info", "random:tiny:3")
    assert code == 0 and f"{model.num_parameters():,}" in out and info["fingerprint"] in out


def test_info_on_a_checkpoint_folder(capsys, tmp_path):
    model = build_random("tiny", 5)
    save_checkpoint(model, ByteTokenizer(), tmp_path / "ck")
    code, out, _ = run_cli(capsys, "info", str(tmp_path / "ck"), "--json")
    assert code == 0 and json.loads(out)["fingerprint"] == model_fingerprint(model)


def embedding_line(out: str) -> list[float]:
    line = next(ln for ln in out.splitlines() if ln.startswith("first"))
    return [float(v) for v in line.split()[1:]]


def test_demo_prints_the_stream_embedding_of_the_text(capsys):
    code, out, _ = run_cli(capsys, "demo", "--model", "random:tiny", "--device", "cpu", "the stream never ends")
    assert code == 0
    assert "dim 64, L2 norm 1.000000" in out and "21 tokens in 1 piece" in out
    model = build_random("tiny")
    with torch.no_grad():
        _, state = model(torch.tensor(ByteTokenizer().encode("the stream never ends")), mode="parallel")
    want = model.stream_embedding(state)[0, :8].tolist()
    assert embedding_line(out) == pytest.approx(want, abs=1e-4)


def test_demo_pieces_do_not_change_the_embedding(capsys, tmp_path):
    (tmp_path / "t.txt").write_text("ünïcode text, read as a stream " * 5, encoding="utf-8")
    base = ["demo", "--model", "random:tiny", "--device", "cpu", "--file", str(tmp_path / "t.txt")]
    _, whole, _ = run_cli(capsys, *base)
    code, pieces, _ = run_cli(capsys, *base, "--piece-tokens", "7", "--chunk-size", "3")
    assert code == 0 and "165 tokens in 24 piece(s)" in pieces
    assert embedding_line(pieces) == pytest.approx(embedding_line(whole), abs=2e-4)


def test_demo_runs_the_built_in_sample(capsys):
    code, out, _ = run_cli(capsys, "demo", "--model", "random:tiny:1", "--device", "cpu")
    assert code == 0 and "embedding  dim 64" in out


def test_default_model_when_bundled_and_when_not(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(spec_module, "DEFAULT_MODEL_DIR", tmp_path / "absent")
    code, out, err = run_cli(capsys, "info", "default")
    assert code == 2 and "not bundled yet" in err and out == ""
    save_checkpoint(build_random("tiny", 9), ByteTokenizer(), tmp_path / "bundled")
    monkeypatch.setattr(spec_module, "DEFAULT_MODEL_DIR", tmp_path / "bundled")
    code, out, _ = run_cli(capsys, "demo", "--device", "cpu")
    assert code == 0 and out.startswith("model      default")


@pytest.mark.parametrize(
    "argv, message",
    [
        (["info", "nonsense"], "bad model spec 'nonsense'"),
        (["info", "random:huge"], "unknown preset 'huge'"),
        (["info", "random:tiny:x"], "bad seed"),
        (["info", "random:tiny", "--dtype", "fp8"], "dtype='fp8'"),
        (["demo", "--model", "random:tiny", "--file", "/no/such/file.txt"], "No such file"),
        (["demo", "--model", "random:tiny", "text", "--file", "x"], "not both"),
        (["demo", "--model", "random:tiny", ""], "empty"),
    ],
)
def test_errors_are_one_line_with_exit_code_2(capsys, argv, message):
    code, out, err = run_cli(capsys, *argv)
    assert code == 2 and out == ""
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_refused_checkpoint_is_one_line_from_the_installed_command(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "retnet"}))
    (tmp_path / "pytorch_model.bin").write_bytes(b"x")
    result = subprocess.run([sys.executable, "-m", "streamret.cli", "info", str(tmp_path)], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 2 and "refusing pytorch_model.bin" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_version_flag_prints_the_installed_version(capsys):
    import importlib.metadata

    with pytest.raises(SystemExit) as info:
        cli.main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"streamret {importlib.metadata.version('streamret')}"
