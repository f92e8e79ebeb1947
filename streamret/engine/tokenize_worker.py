"""Cutting chunks into text pieces and tokenizing them, in the engine process or in a process of its own, for one
tokenize thread of the engine (EngineConfig.tokenize_procs).

`cut_and_encode` is what a tokenize thread runs on a batch of accepted chunks: each chunk's text cut into
tokenizer-safe pieces (text.py: sentence cuts are most of it) from where its stream's text front stood, and all
the pieces tokenized in one call. In an engine process that Python holds the GIL that the step thread needs
between its CUDA calls (on an H200 the sentence cuts alone took 0.4-0.5 us a token of the caller's thread:
bench/RESULTS.md, session 22). With `tokenize_procs` each tokenize thread hands its batches to a child process
over a pipe and waits without holding the GIL; the child runs `cut_and_encode` and sends back the whole batch's
pieces (as columns of plain values and arrays) and ids, and each chunk's text front after it (`batch_reply`).

The child is a plain subprocess running this file by its path, not `python -m` (an engine process is a
multiprocessing daemon, which may not start multiprocessing children, and importing the package would
import torch): it loads streamret/model/tokenizer.py and streamret/engine/text.py (with sentences.py) by path
too (they import only numpy, re and `tokenizers`). It rebuilds the tokenizer from what `child_spec` gives (the
shipped tokenizer.json, or the byte tokenizer) and the text front's settings, serves requests until its pipe
closes (the engine shut down or died), and exits.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from itertools import chain
from multiprocessing.connection import Connection
from pathlib import Path
from typing import NamedTuple

import numpy as np

TOKENIZER_PY = Path(__file__).resolve().parents[1] / "model" / "tokenizer.py"
ENGINE_DIR = Path(__file__).resolve().parent  # text.py and sentences.py, which the child loads as a package

# A request: (base, raw, ending) per chunk. base: where the stream's text front stands before it (a TextSnapshot;
# its fields as a tuple on the pipe), the index of an earlier request of the same call whose front after it is
# this one's, or None (an earlier chunk of its stream failed: so does this one); ending: "" (an append), "flush"
# or "close" (raw is then b"").
Request = tuple


class Cut(NamedTuple):
    """What a request gives (or the error that fails it alone): the stream's text front after it, its ids, the tokens
    of each of its pieces and the pieces' columns (`text.piece_columns`: texts, numbers, facts), which the engine
    makes pieces of only if a step needs them."""

    front: object  # a TextSnapshot
    ids: np.ndarray
    lens: np.ndarray
    columns: tuple[list[str], np.ndarray, np.ndarray]


def cut_and_encode(new_assembler: Callable, encode: Callable, requests: Sequence[Request]) -> list[tuple | Exception]:
    """Each request's text cut into pieces by a text front made with new_assembler(base), then every piece of
    every request tokenized by one call of encode (an `encode_pieces`: one input per request), or request by
    request when that call fails, so that one bad chunk fails alone. A request after a failed one of its stream
    (its base an index) fails too. Per request (its pieces' `text.Rows`, its front after it, ids, tokens of each
    piece), or its error: `batch_reply` makes the whole batch's columns of them."""
    cut: list[tuple | Exception] = []
    for base, raw, ending in requests:
        if base is None:  # the engine knew its stream's chunk before it failed
            cut.append(ValueError("an earlier chunk of this stream failed"))
            continue
        if isinstance(base, int):
            before = cut[base]
            if isinstance(before, Exception):
                cut.append(ValueError(f"an earlier chunk of this stream failed ({before})"))
                continue
            base = before[1]
        try:
            text = new_assembler(base)
            rows = text.close_rows() if ending == "close" else text.feed_rows(raw, flush=ending == "flush")
            cut.append((rows, text.snapshot()))
        except Exception as e:  # noqa: BLE001  (that chunk's outcome)
            cut.append(e)
    ok = [k for k, c in enumerate(cut) if not isinstance(c, Exception)]
    out: list[tuple | Exception] = list(cut)
    for k, encoded in zip(ok, _encode_each(encode, [cut[k][0][0] for k in ok]), strict=True):
        out[k] = encoded if isinstance(encoded, Exception) else (*cut[k], *encoded)
    return out


def _encode_each(encode: Callable, items: list[list[str]]) -> list[tuple[np.ndarray, np.ndarray] | Exception]:
    """Per item (its pieces' texts): its ids and the tokens of each piece, from one encode call over all the
    items, checked (one end per piece, the last at the number of ids); item by item when that fails."""
    try:
        ids, ends = encode(items)
        n_pieces = sum(map(len, items))
        if len(ends) != n_pieces or (ends[-1] if n_pieces else 0) != len(ids):
            raise ValueError(f"the tokenizer's encode_pieces gave {len(ends)} piece ends (the last at "
                             f"{ends[-1] if len(ends) else None}) for {n_pieces} pieces of {len(ids)} ids; "
                             "it must give one end per piece, the last at the number of ids")
    except Exception as e:  # noqa: BLE001  (in a batch, each item tried alone)
        if len(items) == 1:
            return [e]
        return [_encode_each(encode, [item])[0] for item in items]
    lens = np.diff(np.asarray(ends, dtype=np.int64), prepend=0)
    first = np.cumsum([0] + [len(item) for item in items]).tolist()
    bounds = np.concatenate([[0], ends])[first].tolist()  # where each item's tokens start and end
    return [(ids[a:b], lens[p:q]) for a, b, p, q in zip(bounds, bounds[1:], first, first[1:])]


class TokenizerProcessError(RuntimeError):
    """The tokenizer process could not start, or died twice in a row on one batch."""


def child_spec(tokenizer) -> tuple | None:
    """What the child needs to rebuild `tokenizer`, or None for a tokenizer it cannot rebuild (tokenize in
    the engine process then)."""
    from ..model.tokenizer import ByteTokenizer, HFTokenizer  # (here: the child runs this file without its package)

    if type(tokenizer) is HFTokenizer:
        return ("hf", tokenizer.source_json, tokenizer.name)
    if type(tokenizer) is ByteTokenizer:
        return ("bytes",)
    return None


class TokenizerProcess:
    """`cut_and_encode` in a child process (the engine side). One request at a time: one per tokenize thread.
    text_params: the text front's settings (TextAssembler's keyword arguments but the snapshot)."""

    def __init__(self, spec: tuple, text_params: dict, start_timeout_s: float = 60.0):
        self.spec, self.text_params, self.start_timeout_s = spec, text_params, start_timeout_s
        self._proc: subprocess.Popen | None = None
        self._start()

    def _start(self) -> None:
        req_r, req_w = os.pipe()
        res_r, res_w = os.pipe()
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-u", str(Path(__file__).resolve()), str(req_r), str(res_w), str(TOKENIZER_PY),
                 str(ENGINE_DIR)],
                pass_fds=(req_r, res_w), stdin=subprocess.DEVNULL,
            )
        except OSError as e:  # no interpreter to run, no processes left
            os.close(req_w)
            os.close(res_r)
            raise TokenizerProcessError(f"the tokenizer process could not be started: {e}") from e
        finally:
            os.close(req_r)
            os.close(res_w)
        self._send, self._recv = Connection(req_w, readable=False), Connection(res_r, writable=False)
        try:
            self._send.send((self.spec, self.text_params))
            if not self._recv.poll(self.start_timeout_s):
                raise TokenizerProcessError(f"the tokenizer process did not start within {self.start_timeout_s:g} s")
            status, detail = self._recv.recv()
        except (EOFError, OSError) as e:
            self.close()
            raise TokenizerProcessError(f"the tokenizer process exited while starting "
                                        f"(exit code {self._proc.poll() if self._proc else None})") from e
        if status != "ready":
            self.close()
            raise TokenizerProcessError(f"the tokenizer process could not load the tokenizer: {detail}")

    def cut_and_encode(self, requests: Sequence[Request]) -> list[Cut | Exception]:
        """The child's `cut_and_encode(requests)` (bases as TextSnapshots or indices) as one `Cut` per request; an
        error of one request comes back as a ValueError naming it. A child that died (killed, out of memory) is
        started again once for the same batch."""

        wire = [(b if b is None or isinstance(b, int) else (b.tail, b.offset, b.segment_start), raw, ending)
                for b, raw, ending in requests]
        try:
            got = self._call(wire)
        except (EOFError, OSError):
            self.close()
            self._start()
            try:
                got = self._call(wire)
            except (EOFError, OSError) as e:
                code = self._proc.poll() if self._proc else None
                self.close()
                raise TokenizerProcessError(f"the tokenizer process died twice on one batch (exit code {code})") from e
        return split_reply(got)

    def _call(self, wire: list) -> list:
        self._send.send(wire)
        return self._recv.recv()

    def close(self, timeout_s: float = 5.0) -> None:
        """Close the pipes (the child exits at their end) and wait for it; kill it past timeout_s."""
        for conn in (getattr(self, "_send", None), getattr(self, "_recv", None)):
            if conn is not None and not conn.closed:
                conn.close()
        if self._proc is not None:
            try:
                self._proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None


def _load_by_path(name: str, path: str, package_dir: str | None = None):
    """The module at path, named name; with package_dir, a package of that folder (its modules' relative imports
    then load its other files), without running the folder's __init__.py."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        name, path, submodule_search_locations=[package_dir] if package_dir is not None else None)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # (dataclasses and typing look their module up)
    if package_dir is None:
        spec.loader.exec_module(module)
    return module


def _child_modules(tokenizer_py: str, engine_dir: str):
    """tokenizer.py, and text.py inside a stand-in package of the engine's folder (for `from . import sentences`)."""
    import importlib

    tokenizer = _load_by_path("streamret_child_tokenizer", tokenizer_py)
    _load_by_path("streamret_child_engine", os.path.join(engine_dir, "__init__.py"), engine_dir)
    return tokenizer, importlib.import_module("streamret_child_engine.text")


def serve(requests: Connection, results: Connection, tokenizer_py: str, engine_dir: str) -> None:
    """The child's loop: the tokenizer's spec and the text front's settings first, then one `cut_and_encode` per
    request until the pipe closes; an error becomes its message, pieces and fronts plain tuples."""
    try:
        spec, text_params = requests.recv()
        module, text = _child_modules(tokenizer_py, engine_dir)
        tokenizer = module.HFTokenizer.from_json(spec[1], spec[2]) if spec[0] == "hf" else module.ByteTokenizer()
    except EOFError:
        return
    except Exception as e:  # noqa: BLE001  (reported to the engine, which then tokenizes in its own process)
        results.send(("error", f"{type(e).__name__}: {e}"))
        return
    results.send(("ready", None))

    def new_assembler(base: object) -> object:
        return text.TextAssembler(snapshot=base, **text_params)

    def encode(items: list[list[str]]) -> tuple[np.ndarray, np.ndarray]:
        return module.encode_pieces(tokenizer, items)

    while True:
        try:
            batch = requests.recv()
        except EOFError:
            return
        cut = cut_and_encode(new_assembler, encode, [
            (b if b is None or isinstance(b, int) else text.TextSnapshot(*b), raw, ending) for b, raw, ending in batch])
        results.send(batch_reply(text.columns_of_rows, cut))


def batch_reply(columns_of_rows: Callable, cut: list[tuple | Exception]) -> tuple:
    """What the child sends for a batch (`cut_and_encode`'s): per request its error's message, or its text front after
    it and its numbers of pieces and of ids; then the pieces' columns (`text.columns_of_rows`) and the ids and tokens
    of each piece of all the requests, one after the other. Whole-batch arrays: one columns call and a few arrays to
    pickle instead of each per request (fixed costs that a 512 B chunk's ~125 tokens paid alone)."""
    ok = [r for r in cut if not isinstance(r, Exception)]
    texts, numbers, facts = columns_of_rows(list(chain.from_iterable(r[0][0] for r in ok)),
                                            list(chain.from_iterable(r[0][1] for r in ok)))
    per = [f"{type(r).__name__}: {r}" if isinstance(r, Exception)
           else ((r[1].tail, r[1].offset, r[1].segment_start), len(r[0][0]), len(r[2])) for r in cut]
    ids = np.concatenate([r[2] for r in ok]) if ok else np.zeros(0, dtype=np.int64)
    lens = np.concatenate([r[3] for r in ok]) if ok else np.zeros(0, dtype=np.int64)
    return per, texts, numbers, facts, ids, lens


def split_reply(reply: tuple) -> list[Cut | Exception]:
    """`batch_reply` back into one `Cut` per request (views of its arrays), or a ValueError naming a request's
    error."""
    from .text import TextSnapshot

    per, texts, numbers, facts, ids, lens = reply
    out: list[Cut | Exception] = []
    p = t = 0
    for r in per:
        if isinstance(r, str):
            out.append(ValueError(f"cutting or tokenizing the chunk failed: {r}"))
            continue
        front, n_pieces, n_ids = r
        q, u = p + n_pieces, t + n_ids
        out.append(Cut(TextSnapshot(*front), ids[t:u], lens[p:q], (texts[p:q], numbers[p:q], facts[p:q])))
        p, t = q, u
    return out


if __name__ == "__main__":
    serve(Connection(int(sys.argv[1]), writable=False), Connection(int(sys.argv[2]), readable=False), sys.argv[3],
          sys.argv[4])
