"""Options from three places besides their defaults: a command's flags, `STREAMRET_*` environment variables
and a TOML file (`--config FILE`), in that order of precedence: flag > environment > file > default.

    p = subparsers.add_parser("serve", ...)
    p.add_argument("--state-dir", ...)               # also STREAMRET_STATE_DIR, and `state-dir = "..."` in the file
    p.set_defaults(run=LayeredOptions(p, run))      # after every add_argument

Each option's environment variable is STREAMRET_ and its destination in capitals (--state-dir:
STREAMRET_STATE_DIR); its key in the file is the flag's long name without dashes (`state-dir`; `state_dir`
is accepted too). The file is named by --config, else by STREAMRET_CONFIG. A key the command does not
know, a value of the wrong type, or an environment value that does not parse is a ValueError that names it
and says what fits. Switches (store_true) take true/false in the file and 1/0, true/false, yes/no, on/off in
the environment; an option with an optional value (--ray [ADDRESS]) takes true (or 1) for its bare form. An
empty environment variable counts as unset (a switch: off).
"""

from __future__ import annotations

import argparse
import difflib
import os
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

PREFIX = "STREAMRET_"
CONFIG_DEST = "config"
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class _Unset:
    """The parsed value of an option that was not on the command line (its real default is kept apart)."""

    def __repr__(self) -> str:
        return "<not given>"


UNSET = _Unset()


def _options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if a.option_strings and a.dest not in (argparse.SUPPRESS, "help")]


def env_name(action: argparse.Action) -> str:
    return PREFIX + action.dest.upper()


def file_key(action: argparse.Action) -> str:
    long = next((s for s in action.option_strings if s.startswith("--")), action.option_strings[0])
    return long.lstrip("-")


class LayeredOptions:
    """The `run` of a command whose options also come from the environment and a TOML file.

    Built after the parser's last add_argument: it adds --config, replaces every option's default with
    UNSET (so that a flag given on the command line can be told from one left out) and notes each option's
    environment variable in its help. Calling it resolves the options (`resolve`), then runs `run`.
    """

    def __init__(self, parser: argparse.ArgumentParser, run: Callable[[argparse.Namespace], int]):
        parser.add_argument(
            "--config", metavar="FILE", default=None,
            help=f"TOML file of options (keys are the flag names: port = 50051, state-dir = \"states\"); "
                 f"precedence: flag > environment > file > default [env: {PREFIX}CONFIG]")
        self.run = run
        self.actions = [a for a in _options(parser) if a.dest != CONFIG_DEST]
        self.defaults: dict[str, Any] = {}
        for action in self.actions:
            self.defaults[action.dest] = action.default
            action.default = UNSET
            if action.help != argparse.SUPPRESS:
                note = f"[env: {env_name(action)}]"
                action.help = f"{action.help} {note}" if action.help else note
        self.by_key = {}
        for action in self.actions:
            self.by_key[file_key(action)] = action
            self.by_key[action.dest] = action

    def __call__(self, args: argparse.Namespace) -> int:
        return self.run(self.resolve(args))

    def resolve(self, args: argparse.Namespace, env: Mapping[str, str] | None = None) -> argparse.Namespace:
        """A copy of `args` with every option not given as a flag taken from env, else the file, else its default."""
        env = os.environ if env is None else env
        path = getattr(args, CONFIG_DEST, None) or env.get(PREFIX + "CONFIG") or None
        from_file = self._read_file(path) if path else {}
        out = argparse.Namespace(**vars(args))
        setattr(out, CONFIG_DEST, path)
        for action in self.actions:
            if getattr(args, action.dest, UNSET) is not UNSET:
                continue  # given on the command line
            name = env_name(action)
            if env.get(name, "") != "" or (name in env and _kind(action) == "switch"):  # empty: not set
                value = self._from_env(action, name, env[name])
            elif action.dest in from_file:
                value = from_file[action.dest]
            else:
                value = self.defaults[action.dest]
            setattr(out, action.dest, value)
        return out

    # ------------------------------------------------------------------------------------------------

    def _read_file(self, path: str) -> dict[str, Any]:
        try:
            with Path(path).open("rb") as f:
                data = tomllib.load(f)
        except FileNotFoundError:
            raise FileNotFoundError(f"config file {path!r} does not exist; fix --config or {PREFIX}CONFIG") from None
        except tomllib.TOMLDecodeError as e:
            raise ValueError(f"config file {path!r} is not valid TOML: {e}") from None
        unknown = [k for k in data if k not in self.by_key]
        if unknown:
            hints = []
            for key in unknown:
                close = difflib.get_close_matches(key, sorted({file_key(a) for a in self.actions}), n=1)
                hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
            known = ", ".join(sorted({file_key(a) for a in self.actions}))
            raise ValueError(f"config file {path!r} has unknown key(s) {', '.join(hints)}; the keys are: {known}")
        values: dict[str, Any] = {}
        for key, raw in data.items():
            action = self.by_key[key]
            if action.dest in values:
                raise ValueError(f"config file {path!r} sets {file_key(action)!r} twice (as {file_key(action)!r} "
                                 f"and {action.dest!r}); keep one")
            values[action.dest] = self._from_file(action, f"{key!r} in config file {path!r}", raw)
        return values

    def _from_file(self, action: argparse.Action, where: str, value: Any) -> Any:
        kind = _kind(action)
        if kind == "switch":
            if not isinstance(value, bool):
                raise ValueError(f"{where} is {value!r}; it is a switch: write true or false")
            return action.const if value else self.defaults[action.dest]
        if kind == "optional-value" and isinstance(value, bool):
            return action.const if value else None
        if isinstance(value, (dict, list)) or isinstance(value, bool):
            raise ValueError(f"{where} is {value!r}; {_expected(action)}")
        if action.type is int and not isinstance(value, int):
            raise ValueError(f"{where} is {value!r}; {_expected(action)}")
        if action.type is float and not isinstance(value, (int, float)):
            raise ValueError(f"{where} is {value!r}; {_expected(action)}")
        if action.type in (None, str) and not isinstance(value, str):
            raise ValueError(f"{where} is {value!r}; {_expected(action)} (quote it)")
        return self._check_choice(action, where, action.type(value) if action.type else value)

    def _from_env(self, action: argparse.Action, name: str, text: str) -> Any:
        kind = _kind(action)
        where = f"environment variable {name}"
        if kind == "switch":
            if text.strip().lower() in _TRUE:
                return action.const
            if text.strip().lower() in _FALSE:
                return self.defaults[action.dest]
            raise ValueError(f"{where}={text!r} is not a switch value; set it to 1 or 0 (true/false, yes/no, on/off)")
        if kind == "optional-value" and text.strip().lower() in _TRUE:
            return action.const
        if action.type is None:
            return self._check_choice(action, where, text)
        try:
            value = action.type(text)
        except (TypeError, ValueError):
            raise ValueError(f"{where}={text!r} does not parse; {_expected(action)}") from None
        return self._check_choice(action, where, value)

    @staticmethod
    def _check_choice(action: argparse.Action, where: str, value: Any) -> Any:
        if action.choices is not None and value not in action.choices:
            raise ValueError(f"{where} is {value!r}; choose one of {', '.join(map(str, action.choices))}")
        return value


def _kind(action: argparse.Action) -> str:
    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
        return "switch"
    if action.nargs == "?" and action.const is not None:
        return "optional-value"
    return "value"


def _expected(action: argparse.Action) -> str:
    what = {int: "an integer", float: "a number"}.get(action.type, "a string")
    return f"{file_key(action)} takes {what}" + (" (or true for its default)" if _kind(action) == "optional-value"
                                                  else "")
