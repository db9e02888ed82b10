"""Persisting the device model: an atomically written state file, rewritten shortly after changes."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rossim.device import Settings, Table
    from rossim.schema import Menu

STATE_VERSION = 1


class Persistence:
    """Mixed into Device: turns its tables into JSON and back."""

    lock: threading.RLock
    settings: Settings
    users: dict[str, dict[str, Any]]
    file_ids: dict[str, int]
    file_counter: list[int]
    tables: dict[str, Table]
    menus: dict[str, Menu]
    state_path: Path
    _dirty: threading.Event
    _stop: threading.Event
    _saver: threading.Thread | None

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {
                "version": STATE_VERSION,
                "settings": asdict(self.settings),
                "file_ids": self.file_ids,
                "file_counter": self.file_counter[0],
                "tables": {
                    path: {
                        "counter": t.counter[0],
                        "items": [{".id": num, **item} for num, item in t.items.items()],
                    }
                    for path, t in self.tables.items()
                },
                "users": json.loads(json.dumps(self.users)),
            }

    def _load(self, state: dict[str, Any]) -> None:
        from rossim.device import Settings, Table, is_virtual

        self.settings = Settings(**state.get("settings", {}))
        self.users = state.get("users", {})
        self.file_ids = dict(state.get("file_ids", {}))
        self.file_counter = [int(state.get("file_counter", 1))]
        self.tables = {path: Table() for path in self.menus if not is_virtual(self.menus[path])}
        shared = [1]
        for path in ("interface/ethernet", "interface/bridge", "interface/vlan"):
            self.tables[path].counter = shared
        for path, saved in state.get("tables", {}).items():
            if path not in self.tables:
                continue
            table = self.tables[path]
            table.counter[0] = max(table.counter[0], int(saved["counter"]))
            for raw in saved["items"]:
                item = dict(raw)
                num = int(item.pop(".id"))
                table.items[num] = item

    def save(self) -> None:
        data = json.dumps(self.snapshot(), separators=(",", ":"))
        write_atomic(self.state_path, data.encode())

    def start_saver(self, delay: float = 0.02) -> None:
        """Write the state file shortly after changes, coalescing bursts.

        The pause between writes grows with the cost of a write so that a large state (thousands
        of items) is not re-serialised after every single command.
        """

        def loop() -> None:
            pause = delay
            while not self._stop.is_set():
                if self._dirty.wait(0.5):
                    time.sleep(pause)
                    self._dirty.clear()
                    started = time.monotonic()
                    self.save()
                    pause = max(delay, 10 * (time.monotonic() - started))

        self._saver = threading.Thread(target=loop, name="rossim-saver", daemon=True)
        self._saver.start()

    def stop_saver(self) -> None:
        self._stop.set()
        if self._saver is not None:
            self._saver.join(timeout=5)
        self.save()


def write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
