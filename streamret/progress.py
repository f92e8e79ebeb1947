"""Progress of a long command on stderr, in bytes: a bar on a terminal, one line now and then otherwise.

    progress = ByteProgress("book.txt", total=4_400_000)
    progress.update(65536)          # from any thread, as the work is done
    progress.close()

On a terminal (stderr is a TTY) it is a tqdm bar: bytes done, total, rate, ETA. Anywhere else (a log, a
pipe, a CI job) a bar would fill the file with carriage returns, so it prints one plain line every
`every_s` seconds instead, e.g.

    embed: 1.2 MB of 3.4 MB (35%), 12.1 kB/s, ETA 0:03:02, 3 parts saved

The total may come later (`set_total`, e.g. once a corpus has been measured): until then there is no
percentage and no ETA. Rates and ETA are over the whole run so far (not only the last seconds), so a
slow start or a pause shows in them as it is.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import IO

DEFAULT_EVERY_S = 10.0


def format_bytes(n: float) -> str:
    """Decimal units, as tqdm shows them: 950 B, 12.1 kB, 4.4 MB, 120 MB."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            value = n / scale
            return f"{value:.3g} {unit}" if value < 100 else f"{value:.0f} {unit}"
    return f"{n:.0f} B"


def format_duration(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class ByteProgress:
    """Bytes done against a total on stderr (module doc). Thread-safe; does nothing when not enabled.

    every_s: seconds between lines when stderr is not a terminal (> 0). tty: force the bar (True) or the
    lines (False); None asks the stream."""

    def __init__(self, desc: str, total: int | None = None, *, enabled: bool = True,
                 every_s: float = DEFAULT_EVERY_S, file: IO[str] | None = None, tty: bool | None = None):
        if not every_s > 0:
            raise ValueError(f"progress every_s must be > 0 seconds, got {every_s}")
        self.desc = desc
        self.total = total
        self.enabled = enabled
        self.every_s = every_s
        self.file = file if file is not None else sys.stderr
        self.n = 0
        self.note = ""  # extra words after the figures, e.g. "13.2k tok/s, 3 parts saved"
        self.start = time.monotonic()
        self._last_line = self.start
        self._lock = threading.Lock()
        self._bar = None
        if enabled and (tty if tty is not None else _isatty(self.file)):
            from tqdm import tqdm

            # a terminal that reports no size (a fresh pty) would get no bar at all: give it 80 x 24
            sized = _columns(self.file) > 0
            self._bar = tqdm(total=total, unit="B", unit_scale=True, desc=desc, file=self.file, dynamic_ncols=sized,
                             ncols=None if sized else 80, nrows=None if sized else 24, smoothing=0.1)

    def update(self, n: int) -> None:
        """`n` more bytes are done."""
        if not self.enabled or n == 0:
            return
        with self._lock:
            self.n += n
            if self._bar is not None:
                self._bar.update(n)
            else:
                self._maybe_line()

    def set_total(self, total: int) -> None:
        with self._lock:
            self.total = total
            if self._bar is not None:
                self._bar.total = total
                self._bar.refresh()

    def set_note(self, note: str) -> None:
        """Words shown after the figures (a bar's postfix); also prints a line when one is due."""
        if not self.enabled:
            return
        with self._lock:
            self.note = note
            if self._bar is not None:
                self._bar.set_postfix_str(note, refresh=True)
            else:
                self._maybe_line()

    def line(self) -> str:
        """The one-line form: desc, done [of total (percent)], rate, ETA, note."""
        elapsed = max(time.monotonic() - self.start, 1e-9)
        rate = self.n / elapsed
        parts = [f"{self.desc}: {format_bytes(self.n)}"]
        if self.total:
            parts[0] += f" of {format_bytes(self.total)} ({100 * self.n / self.total:.0f}%)"
        parts.append(f"{format_bytes(rate)}/s")
        if self.total and rate > 0:
            parts.append(f"ETA {format_duration(max(self.total - self.n, 0) / rate)}")
        if self.note:
            parts.append(self.note)
        return ", ".join(parts)

    def _maybe_line(self) -> None:
        now = time.monotonic()
        if now - self._last_line >= self.every_s:
            self._last_line = now
            print(self.line(), file=self.file, flush=True)

    def close(self, leave: bool = True) -> None:
        """End the bar (`leave=False` clears it, e.g. before an error line); no line is printed."""
        with self._lock:
            if self._bar is not None:
                self._bar.leave = leave
                self._bar.close()
                self._bar = None
            self.enabled = False


def _columns(file: IO[str]) -> int:
    try:
        return os.get_terminal_size(file.fileno()).columns
    except (AttributeError, ValueError, OSError):
        return 0


def _isatty(file: IO[str]) -> bool:
    try:
        return file.isatty()
    except (AttributeError, ValueError):
        return False
