"""Per-key locks: calls on one volume serialise, calls on different volumes run in parallel."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class KeyedLocks:
    """A lock per key, created on first use and dropped when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, tuple[threading.Lock, int]] = {}

    @contextmanager
    def hold(self, *keys: str) -> Iterator[None]:
        """Hold the locks of ``keys`` (sorted, so two callers never deadlock on the same pair)."""
        ordered = sorted(set(keys))
        acquired: list[str] = []
        try:
            for key in ordered:
                self._lock_for(key).acquire()
                acquired.append(key)
            yield
        finally:
            for key in reversed(acquired):
                self._release(key)

    def held(self) -> int:
        with self._guard:
            return len(self._locks)

    def _lock_for(self, key: str) -> threading.Lock:
        with self._guard:
            lock, users = self._locks.get(key, (threading.Lock(), 0))
            self._locks[key] = (lock, users + 1)
            return lock

    def _release(self, key: str) -> None:
        with self._guard:
            lock, users = self._locks[key]
            lock.release()
            self._drop(key, lock, users)

    def _drop(self, key: str, lock: threading.Lock, users: int) -> None:
        if users <= 1:
            del self._locks[key]
        else:
            self._locks[key] = (lock, users - 1)
