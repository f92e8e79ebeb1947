"""The `streamret` command line: `streamret --help`, `streamret <command> --help`.

Each command lives in its own module, `streamret/commands/<name>.py`, which exposes

    def register(subparsers) -> None:
        p = subparsers.add_parser("<name>", help="one line for `streamret --help`")
        p.add_argument(...)                        # commands/__init__.py has the shared --model options
        p.set_defaults(run=run)

    def run(args) -> int:                          # the exit code
        ...

Adding a command is that module plus its name in COMMANDS below. Keep heavy imports (torch, grpc,
ray) inside `run`, so that `--help` stays fast. Errors the user can fix (a bad MODEL spec, a missing
file, a refused checkpoint) are raised as ValueError, OSError or a streamret.errors exception: `main`
prints them as one line on stderr and exits with 2, never with a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from streamret import __version__
from streamret.errors import StreamRetError

COMMANDS = [
    "info",
    "demo",
    "serve",
    "stream",
    "embed",
    "cluster",
]

USER_ERRORS = (ValueError, OSError, StreamRetError)

# Import names of the [server] extra (pyproject.toml): a command that needs one of them runs the model or the
# service, which `pip install streamret` (the client) leaves out. tests/test_client_only.py keeps this in step.
SERVER_MODULES = frozenset({"torch", "triton", "safetensors", "tokenizers", "grpc_health", "grpc_reflection",
                            "fsspec", "prometheus_client", "aiohttp"})


def missing_server_install(e: ModuleNotFoundError) -> str | None:
    """The one-line hint for a command run on a client-only install, or None if `e` is about another module."""
    root = (e.name or "").split(".")[0]
    if root not in SERVER_MODULES:
        return None
    return f"this command needs the server install ({root} is not installed): pip install 'streamret[server]'"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="streamret",
        description="Embeddings and summaries of arbitrarily long text streams with a RetNet.",
        epilog="MODEL is a spec used by every command: a checkpoint folder (streamret or fla-hub layout), "
        "random:<preset>[:seed] (presets: tiny, small, default, fla-1.3b), or default (the bundled model).",
    )
    parser.add_argument("--version", action="version", version=f"streamret {__version__}",
                        help="print the installed version and exit")
    subparsers = parser.add_subparsers(title="commands", metavar="<command>", dest="command")
    for name in COMMANDS:
        importlib.import_module(f"streamret.commands.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(argv) if argv is not None else sys.argv[1:]  # as typed, e.g. for the command that resumes
    if not hasattr(args, "run"):
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        return 130
    except USER_ERRORS as e:
        if os.environ.get("STREAMRET_DEBUG"):
            raise
        print(f"streamret {args.command}: error: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # a bug: still one line, the traceback on request
        if os.environ.get("STREAMRET_DEBUG"):
            raise
        hint = missing_server_install(e) if isinstance(e, ModuleNotFoundError) else None
        if hint is not None:  # not a bug: a client-only install
            print(f"streamret {args.command}: error: {hint}", file=sys.stderr)
            return 2
        print(f"streamret {args.command}: internal error: {type(e).__name__}: {e} "
              "(set STREAMRET_DEBUG=1 for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
