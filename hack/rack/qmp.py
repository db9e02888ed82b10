"""A minimal synchronous QMP client that also records asynchronous events.

QEMU serves one QMP client per socket, so the machine manager keeps this connection for the whole
life of the process; a reader thread splits replies (matched by ``id``) from events.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


class QMPError(Exception):
    pass


class QMP:
    def __init__(self, path: Path, on_event: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.path = path
        self.on_event = on_event
        self._sock: socket.socket | None = None
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._replies: dict[str, dict[str, Any]] = {}
        self._cond = threading.Condition()
        self._closed = False

    def connect(self, timeout: float = 15.0, alive: Callable[[], bool] = lambda: True) -> None:
        """Connect once the socket exists; ``alive`` aborts the wait when QEMU died early."""
        deadline = time.monotonic() + timeout
        while True:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(str(self.path))
                break
            except OSError as exc:
                sock.close()
                if not alive():
                    raise QMPError("QEMU exited before its QMP socket opened") from exc
                if time.monotonic() > deadline:
                    raise QMPError(f"no QMP socket at {self.path} after {timeout}s") from exc
                time.sleep(0.05)
        self._sock = sock
        reader = sock.makefile("rb")
        greeting = json.loads(reader.readline() or b"{}")
        if "QMP" not in greeting:
            raise QMPError(f"unexpected QMP greeting {greeting!r}")
        threading.Thread(target=self._read, args=(reader,), daemon=True, name=f"qmp-{self.path.name}").start()
        self.command("qmp_capabilities")

    def _read(self, reader: Any) -> None:
        try:
            for line in reader:
                msg = json.loads(line)
                if "event" in msg:
                    if self.on_event is not None:
                        self.on_event(msg)
                    continue
                with self._cond:
                    self._replies[str(msg.get("id"))] = msg
                    self._cond.notify_all()
        except (OSError, ValueError):
            pass
        finally:
            with self._cond:
                self._closed = True
                self._cond.notify_all()

    def command(self, name: str, timeout: float = 10.0, **arguments: Any) -> Any:
        if self._sock is None:
            raise QMPError("not connected")
        ident = str(next(self._ids))
        msg: dict[str, Any] = {"execute": name, "id": ident}
        if arguments:
            msg["arguments"] = arguments
        with self._lock:
            try:
                self._sock.sendall(json.dumps(msg).encode() + b"\n")
            except OSError as exc:
                raise QMPError(f"QMP {name}: {exc}") from exc
        deadline = time.monotonic() + timeout
        with self._cond:
            while ident not in self._replies:
                remaining = deadline - time.monotonic()
                if self._closed:
                    raise QMPError(f"QMP {name}: connection closed")
                if remaining <= 0:
                    raise QMPError(f"QMP {name}: no reply within {timeout}s")
                self._cond.wait(remaining)
            reply = self._replies.pop(ident)
        if "error" in reply:
            raise QMPError(f"QMP {name}: {reply['error'].get('desc', reply['error'])}")
        return reply.get("return")

    def close(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)
            self._sock.close()
            self._sock = None
