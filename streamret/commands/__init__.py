"""One module per `streamret` subcommand (see streamret/cli.py), and the options they share."""

from __future__ import annotations

import argparse


def add_model_args(parser: argparse.ArgumentParser, *, positional: bool = False, default: str = "default",
                   device: str = "auto") -> None:
    """MODEL (positional or --model), --device and --dtype, the way every command takes them."""
    if positional:
        parser.add_argument("model", metavar="MODEL", help="checkpoint folder, random:<preset>[:seed] or default")
    else:
        parser.add_argument("--model", default=default, metavar="SPEC",
                            help=f"checkpoint folder, random:<preset>[:seed] or default (default: {default})")
    parser.add_argument("--device", default=device, help=f"auto, cpu, cuda, cuda:N (default: {device})")
    parser.add_argument("--dtype", default="auto", help="auto (bf16 on GPU, float32 on CPU), float32, bfloat16")


ENGINE_PROCS_HELP = ("engine processes on the device, streams sharded over them by id (an int, or auto: on a GPU one "
                     "per 4/3 host cores, at most 12 and one per 8 GiB of GPU memory, as one process's Python feeds "
                     "a GPU a fraction of what it can compute; on the CPU 1; default auto)")


def check_engine_procs(args: argparse.Namespace) -> None:
    """--engine-procs is the local engine's: with --ray each worker runs one engine, so a count there is refused
    (rather than ignored) with the flag that does that."""
    if getattr(args, "ray", None) is not None and str(args.engine_procs) not in ("auto", "1"):
        raise ValueError(f"--engine-procs {args.engine_procs} is for the engine in this process; with --ray each "
                         "worker runs one engine: use --workers (and --gpus-per-worker) instead")


def load_from_args(args: argparse.Namespace):
    """The LoadedModel named by add_model_args' options."""
    from streamret.model.spec import load_model

    return load_model(args.model, device=args.device, dtype=args.dtype)
