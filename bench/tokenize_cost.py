"""What cutting and tokenizing a token costs a core when N tokenizer processes run at once.

Each of --copies workers (processes) drives one tokenizer process (engine/tokenize_worker.py, as an engine's
tokenize thread does) with batches of --streams 2 KB chunks of real text, every stream's text front carried
from chunk to chunk, and reads the child's CPU time from /proc. With one copy this is the work's own cost; with
as many copies as the host has cores it is what a token costs when every core is busy (shared caches, sibling
hyperthreads), which is what bounds the engine's tokens/s when its tokenize processes and step threads fill
the host. The host's tokens/s ceiling for tokenizing alone is copies / (us per token). Each copy reads its text
twice: the first pass fills the tokenizer's word cache (new text), the second finds its words there (the steady
state of a long run, where most words have been seen).

    python bench/tokenize_cost.py --text .device/text/man.txt.gz --copies 1,8,16

Prints one row per copies value and writes DIR/tokenize_cost.json (DIR: --out, else $OUT, else .).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from text_file import read_text_file  # noqa: E402  (bench/text_file.py)

os.environ["TOKENIZERS_PARALLELISM"] = "false"  # as in an engine process: one core per tokenizer process


def _worker(args: tuple) -> list[dict]:
    """One copy: its tokenizer process's tokens, wall and CPU seconds on each of the two passes."""
    path, nbytes, offset, streams, chunk_bytes, model, start = args
    from cpu_threads import process_cpu_s  # (bench/cpu_threads.py)

    from streamret.engine.config import EngineConfig
    from streamret.engine.text import TextAssembler
    from streamret.engine.tokenize_worker import TokenizerProcess, child_spec
    from streamret.model.spec import load_model

    raw = read_text_file(path, offset + nbytes)[offset:]
    chunks = [raw[i:i + chunk_bytes] for i in range(0, len(raw), chunk_bytes)]
    per = len(chunks) // streams
    params = EngineConfig().text_params
    proc = TokenizerProcess(child_spec(load_model(model, device="cpu").tokenizer), params)
    start.wait()  # every copy starts its work together
    passes = []
    for _ in range(2):  # the text's first pass fills the tokenizer's word cache, the second finds its words there
        fronts = [TextAssembler(**params).snapshot() for _ in range(streams)]
        cpu0, t0, tokens = process_cpu_s(proc._proc.pid), time.perf_counter(), 0
        for j in range(per):
            results = proc.cut_and_encode([(fronts[s], chunks[s * per + j], "") for s in range(streams)])
            for s, r in enumerate(results):
                if isinstance(r, Exception):
                    raise r
                fronts[s] = r.front
                tokens += len(r.ids)
        passes.append({"tokens": tokens, "wall_s": time.perf_counter() - t0,
                       "child_cpu_s": process_cpu_s(proc._proc.pid) - cpu0})
    proc.close()
    return passes


def run(path: str, copies: int, nbytes: int, streams: int, chunk_bytes: int, model: str) -> dict:
    with mp.Manager() as manager:
        start = manager.Barrier(copies)
        with mp.get_context("spawn").Pool(copies) as pool:
            got = pool.map(_worker, [(path, nbytes, k * nbytes, streams, chunk_bytes, model, start)
                                     for k in range(copies)])
    row = {"copies": copies}
    for k, name in enumerate(("first", "again")):
        tokens = sum(g[k]["tokens"] for g in got)
        cpu, wall = sum(g[k]["child_cpu_s"] for g in got), max(g[k]["wall_s"] for g in got)
        row[name] = {"tokens": tokens, "child_cpu_us_per_token": round(1e6 * cpu / tokens, 3),
                     "wall_us_per_token_per_copy": round(1e6 * sum(g[k]["wall_s"] for g in got) / tokens, 3),
                     "host_tokens_per_s": round(tokens / wall)}
    return row


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--text", required=True, help="a UTF-8 text file (.gz read as gzip)")
    ap.add_argument("--copies", default="1,8,16", help="comma-separated numbers of tokenizer processes at once")
    ap.add_argument("--mb", type=float, default=0.5, help="MB of text per copy")
    ap.add_argument("--streams", type=int, default=32, help="chunks of distinct streams per tokenizer call")
    ap.add_argument("--chunk-bytes", type=int, default=2048)
    ap.add_argument("--model", default="default", help="whose tokenizer (a load_model spec)")
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    args = ap.parse_args(argv)
    copies = [int(c) for c in args.copies.split(",")]
    nbytes = int(args.mb * 1e6)
    if len(read_text_file(args.text, nbytes * max(copies))) < nbytes * max(copies):
        raise SystemExit(f"{args.text} holds less than {nbytes * max(copies):,} bytes ({max(copies)} copies x "
                         f"{args.mb} MB each); give less --mb or fewer --copies")
    calls = nbytes // args.chunk_bytes // args.streams
    if calls < 4:
        raise SystemExit(f"{args.mb} MB a copy makes {calls} calls of {args.streams} chunks of {args.chunk_bytes} B: "
                         "too few to time; give more --mb or fewer --streams")
    rows = [run(args.text, n, nbytes, args.streams, args.chunk_bytes, args.model) for n in copies]
    out = {"host_cores": os.cpu_count(), "model": args.model, "streams": args.streams,
           "chunk_bytes": args.chunk_bytes, "rows": rows}
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "tokenize_cost.json").write_text(json.dumps(out, indent=1))
    print(f"host cores {os.cpu_count()}; cut + tokenize in tokenizer processes, {args.streams} x "
          f"{args.chunk_bytes} B chunks a call")
    print(f"{'copies':>7} {'pass':>6} {'child CPU us/tok':>17} {'wall us/tok/copy':>17} {'host M tok/s':>13}")
    for r in rows:
        for name in ("first", "again"):
            x = r[name]
            print(f"{r['copies']:>7} {name:>6} {x['child_cpu_us_per_token']:>17.3f} "
                  f"{x['wall_us_per_token_per_copy']:>17.3f} {x['host_tokens_per_s'] / 1e6:>13.2f}")


if __name__ == "__main__":
    main()
