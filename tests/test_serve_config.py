"""`streamret serve` options from flags, STREAMRET_* environment variables and a TOML --config file:
precedence flag > environment > file > default, and errors that name the bad key or value."""

import os
import signal
import subprocess
import sys

import pytest

from streamret import cli


def resolve(argv: list[str], env: dict[str, str] | None = None):
    args = cli.build_parser().parse_args(["serve", *argv])
    return args.run.resolve(args, env=env or {})


@pytest.fixture
def cfg(tmp_path):
    def write(text: str) -> str:
        path = tmp_path / "serve.toml"
        path.write_text(text)
        return str(path)
    return write


def test_defaults_without_flags_env_or_file():
    args = resolve([])
    assert (args.port, args.host, args.model, args.insecure_bind, args.state_dir, args.ray) == (
        50051, "127.0.0.1", "default", False, None, None)
    assert args.busy_wait_s == 5.0 and args.config is None


@pytest.mark.parametrize("key, flag, env_var, file_value, env_value, flag_value, want", [
    # option      flag                  env var                     in the file     in env     on the cmd line
    ("port", ["--port", "7003"], "STREAMRET_PORT", "7001", "7002", None, (7001, 7002, 7003)),
    ("idle_evict_s", ["--idle-evict-s", "3.5"], "STREAMRET_IDLE_EVICT_S", "1.5", "2.5", None, (1.5, 2.5, 3.5)),
    ("state_dir", ["--state-dir", "c"], "STREAMRET_STATE_DIR", '"a"', "b", None, ("a", "b", "c")),
    ("model", ["--model", "random:tiny:3"], "STREAMRET_MODEL", '"random:tiny:1"', "random:tiny:2", None,
     ("random:tiny:1", "random:tiny:2", "random:tiny:3")),
])
def test_flag_beats_env_beats_file_beats_default(cfg, key, flag, env_var, file_value, env_value, flag_value, want):
    file_key = key.replace("_", "-")
    path = cfg(f"{file_key} = {file_value}\n")
    from_file, from_env, from_flag = want
    assert getattr(resolve(["--config", path]), key) == from_file
    assert getattr(resolve(["--config", path], {env_var: env_value}), key) == from_env
    assert getattr(resolve(["--config", path, *flag], {env_var: env_value}), key) == from_flag
    assert getattr(resolve(flag, {env_var: env_value}), key) == from_flag
    default = getattr(resolve([]), key)
    assert default not in want


def test_switches_and_optional_values(cfg):
    assert resolve(["--config", cfg("insecure-bind = true\n")]).insecure_bind is True
    assert resolve(["--config", cfg("insecure-bind = true\n")], {"STREAMRET_INSECURE_BIND": "0"}).insecure_bind is False
    assert resolve([], {"STREAMRET_INSECURE_BIND": "yes"}).insecure_bind is True
    assert resolve([], {"STREAMRET_INSECURE_BIND": ""}).insecure_bind is False
    assert resolve(["--insecure-bind"], {"STREAMRET_INSECURE_BIND": "off"}).insecure_bind is True
    # --ray [ADDRESS]: true is the bare flag (a local Ray), a string an address
    assert resolve(["--config", cfg("ray = true\n")]).ray == "local"
    assert resolve(["--config", cfg('ray = "auto"\n')]).ray == "auto"
    assert resolve(["--config", cfg("ray = false\n")]).ray is None
    assert resolve([], {"STREAMRET_RAY": "ray://head:10001"}).ray == "ray://head:10001"
    assert resolve(["--ray"], {"STREAMRET_RAY": "auto"}).ray == "local"


def test_empty_env_value_is_unset_and_underscore_keys_work(cfg):
    path = cfg('state_dir = "from-file"\nmax-streams-per-tenant = 7\n')
    args = resolve(["--config", path], {"STREAMRET_STATE_DIR": ""})
    assert args.state_dir == "from-file" and args.max_streams_per_tenant == 7


def test_config_file_from_env_and_flag_wins(cfg, tmp_path):
    env_file = tmp_path / "env.toml"
    env_file.write_text("port = 1111\n")
    flag_file = cfg("port = 2222\n")
    assert resolve([], {"STREAMRET_CONFIG": str(env_file)}).port == 1111
    assert resolve(["--config", flag_file], {"STREAMRET_CONFIG": str(env_file)}).port == 2222


def test_unknown_keys_are_an_error_naming_them(cfg):
    path = cfg('prot = 1\nstate-dir = "s"\nbogus_thing = 2\n')
    with pytest.raises(ValueError) as info:
        resolve(["--config", path])
    message = str(info.value)
    assert "'prot' (did you mean 'port'?)" in message and "'bogus_thing'" in message and path in message
    assert "state-dir" in message  # the list of valid keys


@pytest.mark.parametrize("text, words", [
    ('port = "fifty"\n', ["'port'", "'fifty'", "integer"]),
    ("port = 1.5\n", ["'port'", "1.5", "integer"]),
    ("busy-wait-s = \"x\"\n", ["'busy-wait-s'", "number"]),
    ("insecure-bind = \"yes\"\n", ["'insecure-bind'", "true or false"]),
    ("state-dir = 3\n", ["'state-dir'", "string"]),
    ("port = true\n", ["'port'", "integer"]),
    ('state-dir = "a"\nstate_dir = "b"\n', ["twice", "keep one"]),
    ("port = [1]\n", ["'port'", "integer"]),
    ("port = \n", ["not valid TOML"]),
])
def test_bad_file_values_are_errors_naming_key_and_fix(cfg, text, words):
    with pytest.raises(ValueError) as info:
        resolve(["--config", cfg(text)])
    for word in words:
        assert word in str(info.value)


@pytest.mark.parametrize("env, words", [
    ({"STREAMRET_PORT": "abc"}, ["STREAMRET_PORT='abc'", "integer"]),
    ({"STREAMRET_BUSY_WAIT_S": "soon"}, ["STREAMRET_BUSY_WAIT_S='soon'", "number"]),
    ({"STREAMRET_INSECURE_BIND": "maybe"}, ["STREAMRET_INSECURE_BIND='maybe'", "1 or 0"]),
])
def test_bad_env_values_are_errors_naming_the_variable(env, words):
    with pytest.raises(ValueError) as info:
        resolve([], env)
    for word in words:
        assert word in str(info.value)


def test_missing_config_file(tmp_path):
    missing = str(tmp_path / "nope.toml")
    with pytest.raises(FileNotFoundError, match="nope.toml.*does not exist"):
        resolve(["--config", missing])


def test_cli_reports_a_bad_config_in_one_line(cfg, capsys, monkeypatch):
    monkeypatch.setenv("STREAMRET_CONFIG", cfg("prot = 1\n"))
    assert cli.main(["serve"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("streamret serve: error:") and "'prot'" in err and "\n" not in err


def test_help_documents_env_vars_and_config(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["serve", "--help"])
    assert info.value.code == 0
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    for text in ("--config FILE", "[env: STREAMRET_STATE_DIR]", "[env: STREAMRET_PORT]", "[env: STREAMRET_RAY]",
                 "[env: STREAMRET_INSECURE_BIND]", "[env: STREAMRET_CONFIG]",
                 "Precedence: flag > environment > file > default"):
        assert text in out, text


def test_serve_starts_from_a_config_file_with_an_env_override(tmp_path):
    # the file picks the model and a port that cannot be bound (1); the environment overrides the port
    cfg = tmp_path / "serve.toml"
    cfg.write_text('model = "random:tiny:7"\ndevice = "cpu"\ndtype = "float32"\nport = 1\nlog-level = "WARNING"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMRET_")}
    env.update(PYTHONPATH=os.pathsep.join(sys.path), PYTHONUNBUFFERED="1", STREAMRET_PORT="0")
    proc = subprocess.Popen([sys.executable, "-m", "streamret.cli", "serve", "--config", str(cfg)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    try:
        line = proc.stdout.readline()
        assert line.startswith("streamret serving random:tiny:7 on 127.0.0.1:"), (line, proc.stderr.read())
        port = int(line.rsplit(":", 1)[1].split(",")[0])
        assert port not in (0, 1)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
