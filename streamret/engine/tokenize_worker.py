"""A tokenizer in a process of its own, for one tokenize thread of the engine (EngineConfig.tokenize_procs).

In an engine process the tokenize threads' Python (the word cache's look-ups, the piece lists) holds the GIL
that the step thread needs between its CUDA calls, and a chunk waits for a tokenize thread that waits for the
GIL. With `tokenize_procs` each tokenize thread hands its batch's pieces to a child process over a pipe and
waits for the ids without holding the GIL; the child runs `encode_pieces` and sends back the ids and the
pieces' ends.

The child is a plain subprocess running this file by its path, not `python -m` (an engine process is a
multiprocessing daemon, which may not start multiprocessing children, and importing the package would
import torch): it loads streamret/model/tokenizer.py by path too (that module imports only numpy and
`tokenizers`). It rebuilds the tokenizer from what `child_spec` gives (the shipped tokenizer.json, or the
byte tokenizer), serves requests until its pipe closes (the engine shut down or died), and exits.
"""

from __future__ import annotations

import os
import subprocess
import sys
from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np

TOKENIZER_PY = Path(__file__).resolve().parents[1] / "model" / "tokenizer.py"


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
    """`encode_pieces` in a child process (the engine side). One request at a time: one per tokenize thread."""

    def __init__(self, spec: tuple, start_timeout_s: float = 60.0):
        self.spec, self.start_timeout_s = spec, start_timeout_s
        self._proc: subprocess.Popen | None = None
        self._start()

    def _start(self) -> None:
        req_r, req_w = os.pipe()
        res_r, res_w = os.pipe()
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-u", str(Path(__file__).resolve()), str(req_r), str(res_w), str(TOKENIZER_PY)],
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
            self._send.send(self.spec)
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

    def encode_pieces(self, items: list[list[str]]) -> tuple[np.ndarray, np.ndarray]:
        """The child's `encode_pieces(items)`. A child that died (killed, out of memory) is started again once
        for the same batch; an error the tokenizer raised comes back as a ValueError naming it."""
        try:
            status, out = self._call(items)
        except (EOFError, OSError):
            self.close()
            self._start()
            try:
                status, out = self._call(items)
            except (EOFError, OSError) as e:
                code = self._proc.poll() if self._proc else None
                self.close()
                raise TokenizerProcessError(f"the tokenizer process died twice on one batch (exit code {code})") from e
        if status != "ok":
            raise ValueError(f"the tokenizer failed: {out}")
        return out

    def _call(self, items: list[list[str]]) -> tuple[str, object]:
        self._send.send(items)
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


def _load_tokenizer_module(path: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location("streamret_tokenizer_child", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # (dataclasses and typing look their module up)
    spec.loader.exec_module(module)
    return module


def serve(requests: Connection, results: Connection, tokenizer_py: str) -> None:
    """The child's loop: the spec first, then one `encode_pieces` per request until the pipe closes."""
    try:
        spec = requests.recv()
        module = _load_tokenizer_module(tokenizer_py)
        tokenizer = module.HFTokenizer.from_json(spec[1], spec[2]) if spec[0] == "hf" else module.ByteTokenizer()
    except EOFError:
        return
    except Exception as e:  # noqa: BLE001  (reported to the engine, which then tokenizes in its own process)
        results.send(("error", f"{type(e).__name__}: {e}"))
        return
    results.send(("ready", None))
    while True:
        try:
            items = requests.recv()
        except EOFError:
            return
        try:
            out = ("ok", module.encode_pieces(tokenizer, items))
        except Exception as e:  # noqa: BLE001  (the engine fails the batch's items with it, item by item)
            out = ("error", f"{type(e).__name__}: {e}")
        results.send(out)


if __name__ == "__main__":
    serve(Connection(int(sys.argv[1]), writable=False), Connection(int(sys.argv[2]), readable=False), sys.argv[3])
