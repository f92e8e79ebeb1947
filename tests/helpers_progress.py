"""Reading the progress lines `streamret embed` and `streamret stream` print on stderr when it is not a terminal
(streamret/progress.py), for the tests and bench/embed_resume.py:

    embed: 1.2 MB of 3.4 MB (35%), 12.1 kB/s, ETA 0:03:02, 13.2k tok/s, 3 parts saved
"""

from __future__ import annotations

import re

PROGRESS = re.compile(r"^(?P<desc>\S+): (?P<done>[\d.]+ [kMG]?B)(?: of (?P<total>[\d.]+ [kMG]?B) \((?P<pct>\d+)%\))?, "
                      r"[\d.]+ [kMG]?B/s(?P<rest>.*)$")
_UNITS = {"B": 1, "kB": 1e3, "MB": 1e6, "GB": 1e9}


def to_bytes(text: str) -> float:
    """'4.4 MB' -> 4.4e6 (what format_bytes printed, to its 3 digits)."""
    value, unit = text.split()
    return float(value) * _UNITS[unit]


def progress_lines(stderr: str, desc: str) -> list[re.Match]:
    return [m for line in stderr.splitlines() if (m := PROGRESS.match(line)) and m["desc"] == desc]


def other_lines(stderr: str) -> list[str]:
    """The lines of stderr that are not progress lines."""
    return [line for line in stderr.splitlines() if line.strip() and not PROGRESS.match(line)]
