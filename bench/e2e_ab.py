"""An A/B of `bench/e2e.py` settings on one machine: runs A and B in alternating pairs (A B, then B A, ...), so that
a machine whose speed drifts during the call favours neither, and prints each part's change in every pair.

The GPU machines drift by up to 20% within a call (bench/RESULTS.md, session 36), so a difference counts only when
it holds in every pair; more pairs of shorter runs tell more than two long ones. Each run gets its own folder under
--out (a1, b1, b2, a2, ...) with its log and e2e.json; ab.json holds every figure and the summary.

    python3 bench/e2e_ab.py --pairs 3 --timeout 80 --b "--draining-step-chunks 2" --out $OUT -- \\
        --text .device/text/man.txt.gz --packed-seconds 0.3 --parts packed,engine --engine-procs auto

Everything after `--` goes to every run; --a and --b are each side's own flags (A: none by default). --warmup FLAGS
runs once before the pairs, with the common flags and these (e.g. "--parts packed,batch --packed-seconds 0.3"), into
--out/warm, and is not read: a fresh GPU machine's first e2e run reads cold (bench/RESULTS.md, session 52: long
documents at 0.21-0.26 of packed against 0.55-0.66 after it).

--a-tree DIR makes it an A/B of code: A's runs are DIR's own bench/e2e.py, run in DIR with DIR's streamret and
kernels first on the path. DIR is an older commit's tree (`git archive REV streamret bench kernels pyproject.toml`,
bench/results and the model assets left out); the model assets and the carried .device, .whl and .tcache are linked
into it from here. The warm-up run is B's.

    python3 bench/e2e_ab.py --a-tree .device/ab_base --pairs 2 --out $OUT -- --text .device/text/man.txt.gz ...
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

from e2e_brief import lines  # (bench/ is on the path: this script's folder)

HERE = Path(__file__).resolve().parent


def order(pairs: int) -> list[str]:
    """Run labels in order: pair i runs A first when i is odd, B first when even (a1 b1 b2 a2 a3 b3 ...)."""
    labels = []
    for i in range(1, pairs + 1):
        first, second = ("a", "b") if i % 2 else ("b", "a")
        labels += [f"{first}{i}", f"{second}{i}"]
    return labels


def run_once(e2e: str, args: list[str], folder: Path, timeout: float, tree: Path | None = None) -> tuple[int, float]:
    """One e2e run into folder (its log: log.txt); the whole process group is killed past timeout, engine and
    front processes included, so that nothing of it runs on into the next run. tree: run there, its package first on
    the path (`tree_env`). (exit code, seconds)."""
    folder = folder.resolve()
    folder.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    with open(folder / "log.txt", "wb") as log:
        proc = subprocess.Popen([sys.executable, e2e, *args, "--out", str(folder)], stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True, cwd=tree,
                                env=None if tree is None else tree_env(tree))
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            code = proc.wait()
    return code, time.monotonic() - start


def tree_env(tree: Path) -> dict[str, str]:
    """The environment of a run of another tree (module doc): its streamret, and its kernels under their import
    name, ahead of this tree's on the path; what it reads from here (the model assets, .device, .whl, .tcache)
    linked into it."""
    srpath = tree / ".srpath"
    srpath.mkdir(exist_ok=True)
    here = Path.cwd()
    links = {srpath / "streamret_kernels": tree / "kernels",
             tree / "streamret" / "assets": HERE.parent / "streamret" / "assets",
             **{tree / name: here / name for name in (".device", ".whl", ".tcache")}}
    for link, target in links.items():
        if not target.exists() or not link.parent.is_dir():
            continue
        if link.is_symlink() and link.resolve() != target.resolve():  # (made on another machine, or stale)
            link.unlink()
        if not link.exists():
            link.symlink_to(target.resolve())
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(tree.resolve()), str(srpath.resolve()),
                                                         *([path] if path else [])])}


def rates(folder: Path) -> dict[str, float]:
    """Tokens/s of each part the run saved ({} when it saved none)."""
    path = folder / "e2e.json"
    if not path.exists():
        return {}
    parts = json.loads(path.read_text()).get("parts", {})
    return {name: p["tokens_per_s"] for name, p in parts.items() if isinstance(p, dict) and p.get("tokens_per_s")}


def summary(runs: dict[str, dict[str, float]], pairs: int) -> dict[str, dict]:
    """Per part: A's and B's tokens/s per pair, B's change over A in each pair that has both, and the smallest and
    largest change (a part B changes by at least x% holds min_change >= x)."""
    names = sorted({name for r in runs.values() for name in r}, key=lambda n: (n != "packed", n))
    out = {}
    for name in names:
        a = [runs.get(f"a{i}", {}).get(name) for i in range(1, pairs + 1)]
        b = [runs.get(f"b{i}", {}).get(name) for i in range(1, pairs + 1)]
        change = [None if x is None or y is None else y / x - 1 for x, y in zip(a, b, strict=True)]
        known = [c for c in change if c is not None]
        out[name] = {"a": a, "b": b, "change": change, "pairs": len(known),
                     "min_change": min(known) if known else None, "max_change": max(known) if known else None,
                     "b_higher": sum(c > 0 for c in known)}
    return out


def table(result: dict[str, dict]) -> str:
    """The summary as text: one line a part."""
    def m(x):
        return "   -  " if x is None else f"{x / 1e6:6.2f}"

    def pct(x):
        return "    -" if x is None else f"{100 * x:+5.1f}"

    lines = ["part               A M tokens/s (pair by pair) | B                    | B vs A, % by pair | min / max %"]
    for name, r in result.items():
        lines.append(f"{name:18s} {' '.join(m(x) for x in r['a'])} | {' '.join(m(x) for x in r['b'])} | "
                     f"{' '.join(pct(c) for c in r['change'])} | {pct(r['min_change'])} / {pct(r['max_change'])}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    common = []
    if "--" in argv:
        cut = argv.index("--")
        argv, common = argv[:cut], argv[cut + 1:]
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--a", default="", help="A's own e2e.py flags, one string (default: none, the defaults)")
    ap.add_argument("--b", default="", help="B's own e2e.py flags, one string (default: none)")
    ap.add_argument("--a-tree", default=None, help="A's runs from this tree's bench/e2e.py (module doc)")
    ap.add_argument("--pairs", type=int, default=2, help="alternating pairs (default 2)")
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds a run may take before it is killed")
    ap.add_argument("--out", default=os.environ.get("OUT", "ab"), help="folder for the runs and ab.json")
    ap.add_argument("--warmup", default=None, help="flags of one run before the pairs, not read (module doc)")
    ap.add_argument("--warmup-timeout", type=float, default=90.0, help="seconds the warm-up run may take")
    ap.add_argument("--e2e", default=str(HERE / "e2e.py"), help=argparse.SUPPRESS)  # (the tests' stand-in)
    args = ap.parse_args(argv)
    if args.pairs < 1:
        ap.error(f"--pairs must be >= 1, got {args.pairs}")
    if "--out" in common:
        ap.error("--out after -- would send every run to one folder: give it before --")
    a_tree = None if args.a_tree is None else Path(args.a_tree)
    if a_tree is not None and not (a_tree / "bench" / "e2e.py").is_file():
        ap.error(f"--a-tree {args.a_tree} holds no bench/e2e.py: give a tree made with git archive (module doc)")
    if a_tree is None and not args.b:
        ap.error("--b is empty and there is no --a-tree: A and B would run the same")
    sides = {"a": shlex.split(args.a), "b": shlex.split(args.b)}
    out = Path(args.out)
    runs, meta = {}, {}
    if args.warmup is not None:
        code, seconds = run_once(args.e2e, [*common, *shlex.split(args.warmup)], out / "warm", args.warmup_timeout)
        meta["warm"] = {"exit": code, "seconds": round(seconds, 1), "flags": args.warmup}
        print(f"warm rc {code} {seconds:.0f} s (not read)", flush=True)
    for label in order(args.pairs):
        tree = a_tree if label[0] == "a" else None
        e2e = args.e2e if tree is None else str(tree.resolve() / "bench" / "e2e.py")
        code, seconds = run_once(e2e, [*common, *sides[label[0]]], out / label, args.timeout, tree)
        runs[label] = rates(out / label)
        meta[label] = {"exit": code, "seconds": round(seconds, 1)}
        print(f"{label} rc {code} {seconds:.0f} s", flush=True)
    result = summary(runs, args.pairs)
    (out / "ab.json").write_text(json.dumps({"a": args.a, "a_tree": args.a_tree, "b": args.b, "common": common,
                                              "pairs": args.pairs, "runs": runs, "meta": meta, "summary": result},
                                             indent=1))
    for label in order(args.pairs):
        print("\n".join(lines(str(out / label))))
    print(f"A: {args.a or '(defaults)'}{f' from {args.a_tree}' if a_tree else ''}   B: {args.b or '(defaults)'}")
    print(table(result))
    return 0 if all(m["exit"] == 0 for label, m in meta.items() if label != "warm") else 1


if __name__ == "__main__":
    sys.exit(main())
