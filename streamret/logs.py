"""Logging for `streamret serve`: text lines (the default) or one JSON object per line (`--log-format json`),
with the same fields either way.

    text:  2026-12-01 12:00:00,123 INFO streamret.access: grpc Append tenant=acme status=OK 3.2 ms peer=...
    json:  {"time": "2026-12-01T12:00:00.123Z", "level": "INFO", "logger": "streamret.access",
            "message": "grpc Append tenant=acme status=OK 3.2 ms peer=...", "protocol": "grpc", "method": ...}

A JSON line has `time` (UTC, ISO 8601, milliseconds), `level`, `logger` and `message` (the text line's fields,
the message formatted the same way), `exception` (the traceback, where the text format prints one), and the
fields a record carries in `extra` as a dict (the access log's `access`: protocol, method, tenant, status,
duration_ms, peer, and http_status over HTTP) merged at the top level.
"""

from __future__ import annotations

import json
import logging
import time

LOG_FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
EXTRA_FIELDS = ("access",)  # `extra={"access": {...}}` is merged into a JSON line's top level


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in EXTRA_FIELDS:
            fields = getattr(record, key, None)
            if isinstance(fields, dict):
                out.update({k: v for k, v in fields.items() if k not in ("time", "level", "logger", "message")})
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exception"] = record.exc_text
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return json.dumps(out, ensure_ascii=False, default=str)


def setup_logging(level: str, fmt: str = "text") -> None:
    """The root logger at `level` (DEBUG, INFO, WARNING, ERROR), writing `fmt` lines (text or json) to stderr."""
    if fmt not in LOG_FORMATS:
        raise ValueError(f"--log-format {fmt!r} is not a log format; use one of {', '.join(LOG_FORMATS)}")
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ValueError(f"--log-level {level!r} is not a level; use DEBUG, INFO, WARNING or ERROR")
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    handler.streamret = True  # a second call replaces it (other handlers, e.g. pytest's, stay)
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "streamret", False)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)
