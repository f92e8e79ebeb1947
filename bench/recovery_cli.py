"""Issue 15, item 1 as a user meets it: `streamret stream BOOK --chunk-bytes 16384` to `streamret serve --model
default --state-dir DIR` (default step budget), the server killed with SIGKILL mid-stream and restarted on the same
folder and port, the client resuming by itself; the final embedding is compared with an undisturbed run.

    python bench/recovery_cli.py --kill-after-s 6

Prints the stream's record at the kill (applied_seq, tokens, and the state's position, which must equal tokens),
the final token count against the undisturbed run's, and the relative error of the embedding (must be <= 1e-5);
exits 1 otherwise. CPU, float32.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from helpers_chaos import book_text  # noqa: E402
from helpers_server import ServeProcess  # noqa: E402


def records(folder: Path) -> list[tuple[int, int, int]]:
    """(applied_seq, tokens, state position) of each record in a state folder."""
    from safetensors import safe_open

    out = []
    for path in folder.rglob("*.safetensors"):
        with safe_open(str(path), "pt") as f:
            meta = json.loads(f.metadata()["streamret"])
            out.append((meta["applied_seq"], meta["tokens"], int(f.get_tensor("state.positions")[0])))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--book-bytes", type=int, default=160_000, help="size of the prose streamed (default 160000)")
    p.add_argument("--chunk-bytes", type=int, default=16384, help="`streamret stream --chunk-bytes` (default 16384)")
    p.add_argument("--kill-after-s", type=float, default=6.0,
                   help="SIGKILL this long after the stream's first record appears (default 6)")
    p.add_argument("--seed", type=int, default=7)
    args = p.parse_args(argv)
    import numpy as np

    from streamret.engine import Engine

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        book = tmp / "book.txt"
        book.write_text(book_text(args.seed, args.book_bytes), encoding="utf-8")
        states = tmp / "states"
        with ServeProcess(states, cwd=tmp, model="default") as server:
            server.start()
            env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
            client = subprocess.Popen(
                [sys.executable, "-m", "streamret.cli", "stream", str(book), "--server", server.target,
                 "--chunk-bytes", str(args.chunk_bytes), "--json", "--keep"],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp)
            deadline = time.monotonic() + 300
            while not any(states.rglob("*.safetensors")) and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(args.kill_after_s)
            server.kill9()
            server.proc.wait()
            at_kill = records(states)
            print(f"killed; record at the kill (applied_seq, tokens, state position): {at_kill}", flush=True)
            server.start()
            out, err = client.communicate(timeout=900)
        if client.returncode:
            print(f"the client failed (exit {client.returncode}): {err.strip().splitlines()[-1:]}")
            print("FAIL")
            return 1
        got = json.loads(out)
        with Engine.from_model("default", device="cpu", dtype="float32") as engine:
            engine.append("undisturbed", 1, book.read_text(encoding="utf-8"), flush=True)
            ref, tokens = engine.embedding("undisturbed"), engine.info("undisturbed").tokens
    emb = np.asarray(got["embedding"], dtype=np.float32)
    err = float(np.linalg.norm(emb - ref) / np.linalg.norm(ref))
    ok = got["tokens"] == tokens and err <= 1e-5 and all(t == pos for _, t, pos in at_kill)
    print(f"tokens {got['tokens']:,} (undisturbed {tokens:,}), applied_seq {got['applied_seq']}, "
          f"embedding rel. error {err:.2e}")
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
