"""The command line: help, info, demo, and errors as one line with exit code 2."""

import argparse
import json
import os
import pkgutil
import socket
import subprocess
import sys
import time

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


# --- `streamret stream` against servers that cannot be reached: one line, exit 2, within 10 s ------------------

def run_command(*argv: str, timeout: float = 120, **kwargs) -> tuple[subprocess.CompletedProcess, float]:
    """The real `streamret` command (this checkout's code), and how long it ran."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    env.pop("STREAMRET_DEBUG", None)
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "streamret.cli", *argv], capture_output=True, text=True,
                            timeout=timeout, env=env, **kwargs)
    return result, time.monotonic() - started


def assert_one_line_error(result: subprocess.CompletedProcess, *needles: str) -> str:
    err = result.stderr.strip()
    assert result.returncode == 2, result.stderr
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err and "debug_error_string" not in err and "internal error" not in err
    for needle in needles:
        assert needle in err, err
    return err


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def text_file(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("A short note. It has two sentences.\n", encoding="utf-8")
    return path


def test_stream_to_a_port_nobody_listens_on_fails_in_one_line_within_10_s(text_file):
    result, took = run_command("stream", str(text_file), "--server", f"127.0.0.1:{free_port()}")
    assert_one_line_error(result, "connection refused", "--connect-timeout-s")
    assert took < 10, f"took {took:.1f} s"


def test_stream_to_a_host_that_does_not_resolve_fails_in_one_line_within_10_s(text_file):
    result, took = run_command("stream", str(text_file), "--server", "no-such-host.invalid:50051")
    assert_one_line_error(result, "no-such-host.invalid:50051", "does not resolve")
    assert took < 10, f"took {took:.1f} s"


@pytest.mark.parametrize("address, why", [("bad address::", "port ''"), ("localhost", "no port"),
                                          ("127.0.0.1:99999", "port '99999'"), (":50051", "no host")])
def test_stream_to_a_malformed_address_fails_at_once(text_file, address, why):
    result, took = run_command("stream", str(text_file), "--server", address)
    assert_one_line_error(result, f"bad server address {address!r}", why, "HOST:PORT")
    assert took < 10, f"took {took:.1f} s"


def test_stream_with_tls_to_a_plaintext_server_names_tls_in_one_line(text_file):
    from concurrent.futures import ThreadPoolExecutor

    import grpc

    server = grpc.server(ThreadPoolExecutor(max_workers=1))  # plaintext, no services: the handshake is what fails
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        result, took = run_command("stream", str(text_file), "--server", f"127.0.0.1:{port}", "--tls",
                                   "--connect-timeout-s", "1")
    finally:
        server.stop(None)
    assert_one_line_error(result, "TLS handshake failed", "drop --tls")
    assert took < 10, f"took {took:.1f} s"


def test_stream_when_the_server_dies_mid_stream_fails_in_one_line_within_10_s(tmp_path):
    from helpers_server import ServeProcess

    book = tmp_path / "book.txt"
    book.write_text("Every chunk is written durable before its ack, so this stream takes a while. " * 30_000)
    states = tmp_path / "states"
    with ServeProcess(states, cwd=tmp_path) as server:
        server.start()
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
        client = subprocess.Popen([sys.executable, "-m", "streamret.cli", "stream", str(book), "--server",
                                   server.target, "--chunk-bytes", "2048"], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, env=env)
        try:
            deadline = time.monotonic() + 60
            while not any(states.rglob("*.*")) and time.monotonic() < deadline:  # a record: the stream is under way
                assert client.poll() is None, client.communicate()
                time.sleep(0.05)
            assert any(states.rglob("*.*")), "the stream did not start"
            server.kill9()
            killed = time.monotonic()
            _, err = client.communicate(timeout=60)
            took = time.monotonic() - killed
        finally:
            if client.poll() is None:
                client.kill()
                client.wait()
    result = subprocess.CompletedProcess(client.args, client.returncode, "", err)
    assert_one_line_error(result, "connection refused", "stream 'book.txt'", "durable on the server")
    assert took < 10, f"took {took:.1f} s after the server died"


# --- one behaviour for empty and non-text input (streamret/textcheck.py) ----------------------------------------

BAD_INPUTS = [
    (b"", "is empty: nothing to embed"),
    (b"\x7fELF\x02\x01\x01\x00\x00\x00 binary", "is not text: a NUL byte at offset 7"),
    ("caf\u00e9 in latin-1".encode("latin-1"), "is not UTF-8 text: byte 0xe9 at offset 3"),
]


@pytest.mark.parametrize("data, message", BAD_INPUTS)
def test_stream_refuses_empty_and_non_text_files_before_connecting(tmp_path, data, message):
    path = tmp_path / "input.txt"
    path.write_bytes(data)
    # nobody listens on the port: the refusal must come first, without a connection attempt
    result, took = run_command("stream", str(path), "--server", f"127.0.0.1:{free_port()}")
    assert_one_line_error(result, f"{path} {message}")
    assert took < 5, f"took {took:.1f} s: it waited for the server"


@pytest.mark.parametrize("data, message", BAD_INPUTS)
def test_demo_refuses_empty_and_non_text_files_like_stream(tmp_path, data, message):
    path = tmp_path / "input.txt"
    path.write_bytes(data)
    result, _ = run_command("demo", "--model", "random:tiny", "--device", "cpu", "--file", str(path))
    assert_one_line_error(result, f"{path} {message}")


def test_stream_and_demo_say_a_directory_is_a_directory(tmp_path):
    result, _ = run_command("stream", str(tmp_path), "--server", "127.0.0.1:50051")
    assert_one_line_error(result, f"{tmp_path} is a directory")
    result, _ = run_command("demo", "--model", "random:tiny", "--file", str(tmp_path))
    assert_one_line_error(result, f"{tmp_path} is a directory")


# --- help and defaults -------------------------------------------------------------------------------------------

def subparser_actions(command: str) -> dict:
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {a.dest: a for a in sub.choices[command]._actions}


def defaults_of(*argv: str) -> argparse.Namespace:
    """The options a command runs with when none is given (serve's come through its layered options)."""
    args = cli.build_parser().parse_args(list(argv))
    resolve = getattr(args.run, "resolve", None)
    return resolve(args, env={}) if resolve is not None else args


COMMAND_ARGV = {"info": ["info", "random:tiny"], "demo": ["demo"], "serve": ["serve"],
                "embed": ["embed", "corpus/", "-o", "out/"]}


@pytest.mark.parametrize("command", sorted(COMMAND_ARGV))
def test_every_command_with_a_device_defaults_to_auto(command):
    assert defaults_of(*COMMAND_ARGV[command]).device == "auto"
    assert "(default: auto)" in subparser_actions(command)["device"].help
    assert {name for name in cli.COMMANDS if "device" in subparser_actions(name)} == set(COMMAND_ARGV)


def test_gpus_per_worker_has_one_default_and_help_for_serve_and_embed():
    from streamret.cluster.defaults import default_gpus_per_worker

    # None: decided from the cluster, the same way for both
    assert defaults_of("serve").gpus_per_worker is None and defaults_of(*COMMAND_ARGV["embed"]).gpus_per_worker is None
    serve, embed = subparser_actions("serve")["gpus_per_worker"], subparser_actions("embed")["gpus_per_worker"]
    assert serve.help.split(" [env: ")[0] == embed.help  # serve's help also names its environment variable
    assert "1 on a GPU cluster" in embed.help and "else 0" in embed.help
    assert default_gpus_per_worker("auto", 8) == 1.0 and default_gpus_per_worker("auto", 0) == 0.0
    assert default_gpus_per_worker("cuda:1", 0) == 1.0 and default_gpus_per_worker("cpu", 8) == 0.0


def test_serve_with_a_bad_model_reports_only_the_model_error():
    result, _ = run_command("serve", "--model", "nosuch", "--port", "0")
    err = assert_one_line_error(result, "bad model spec 'nosuch'")
    assert "state-dir" not in err


def test_stream_errors_the_server_answers_are_one_line_with_the_fix(tmp_path):
    from helpers_server import ServeProcess

    tokens = tmp_path / "tokens.txt"
    tokens.write_text("tok-cli acme\n")
    book = tmp_path / "book.txt"
    book.write_text("word " * 300_000)  # 1.5 MB: one chunk over the server's 1 MiB limit
    with ServeProcess(tmp_path / "states", "--auth-tokens", str(tokens), cwd=tmp_path) as server:
        server.start()
        result, _ = run_command("stream", str(book), "--server", server.target)
        assert_one_line_error(result, "answered UNAUTHENTICATED", "pass --token")
        result, _ = run_command("stream", str(book), "--server", server.target, "--token", "tok-cli",
                                "--chunk-bytes", str(2 * 1024 * 1024))
        assert_one_line_error(result, "exceeds the server's limit", "lower --chunk-bytes")


@pytest.mark.parametrize("argv", [
    ("serve", "--port", "0", "--engine-procs", "0"),
    ("embed", "corpus.parquet", "-o", "out", "--engine-procs", "many"),
    ("embed", "corpus.parquet", "-o", "out", "--ray", "--engine-procs", "4"),  # a count means this process's
])
def test_a_bad_engine_process_count_is_one_line_before_any_model_loads(argv, tmp_path):
    result, _ = run_command(*argv, cwd=tmp_path, timeout=60)
    assert_one_line_error(result, "--engine-procs" if "--ray" in argv else "engine processes must be")
