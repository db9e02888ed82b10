"""Structured logs: one JSON object per line carrying the CSI operation and the volume it is about.

The server binds ``operation`` (and a request id) for each RPC; services add ``volume_id`` /
``snapshot_id`` with `bind` as soon as they know them, so every line logged while handling the
call — including the SSH layer's — says which volume it concerns.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_fields: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "csi_log_fields", default=None
)

# Attributes every LogRecord has; anything else passed with `extra=` is a structured field.
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


def bind(**fields: Any) -> None:
    """Add fields to every log line of the current call."""
    current = _fields.get()
    if current is not None:
        current.update({k: v for k, v in fields.items() if v})


@contextmanager
def scope(**fields: Any) -> Iterator[dict[str, Any]]:
    bound = {k: v for k, v in fields.items() if v}
    token = _fields.set(bound)
    try:
        yield bound
    finally:
        _fields.reset(token)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update(_fields.get() or {})
        entry.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = {**(_fields.get() or {}), **{k: v for k, v in record.__dict__.items() if k not in _STANDARD}}
        tail = " ".join(f"{k}={v}" for k, v in fields.items())
        line = f"{record.levelname[0]} {record.name}: {record.getMessage()}" + (f" {tail}" if tail else "")
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def configure(fmt: str = "json", level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("paramiko").setLevel(logging.WARNING)
