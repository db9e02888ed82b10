"""Fault injection and the command log shared by every protocol front end."""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from rossim import errors


class DropConnection(Exception):
    """Raised inside a command: the front end must close the client connection at once."""


@dataclass
class FailRule:
    message: str
    category: int = errors.CAT_FAILURE
    count: int = 1
    protocol: str = "any"
    menu: str | None = None
    verb: str | None = None

    def matches(self, protocol: str, menu: str, verb: str) -> bool:
        return (
            self.protocol in ("any", protocol)
            and (self.menu is None or self.menu == menu)
            and (self.verb is None or self.verb == verb)
        )


@dataclass
class DropRule:
    after: int
    protocol: str = "any"
    when: str = "before"  # before: the command is not executed; after: executed, reply lost


@dataclass
class Faults:
    latency_ms: float = 0.0
    latency_protocol: str = "any"
    latency_menu: str | None = None
    pool_full: bool = False
    fail: list[FailRule] = field(default_factory=list)
    drop: DropRule | None = None
    down_until: float = 0.0
    exports_at: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def clear(self) -> None:
        with self.lock:
            self.latency_ms = 0.0
            self.latency_protocol = "any"
            self.latency_menu = None
            self.pool_full = False
            self.fail.clear()
            self.drop = None

    def latency_for(self, protocol: str, menu: str) -> float:
        if not self.latency_ms or self.latency_protocol not in ("any", protocol):
            return 0.0
        if self.latency_menu is not None and self.latency_menu != menu:
            return 0.0
        return self.latency_ms / 1000.0

    def take(self, protocol: str, menu: str, verb: str) -> tuple[str | None, errors.RosError | None]:
        """Consume the faults that apply to one command: (drop-mode or None, error or None)."""
        with self.lock:
            drop_mode = None
            if self.drop is not None and self.drop.protocol in ("any", protocol):
                if self.drop.after <= 0:
                    drop_mode = self.drop.when
                    self.drop = None
                else:
                    self.drop.after -= 1
            for rule in self.fail:
                if rule.matches(protocol, menu, verb):
                    rule.count -= 1
                    if rule.count <= 0:
                        self.fail.remove(rule)
                    return drop_mode, errors.RosError(rule.message, rule.category)
            return drop_mode, None

    def is_down(self) -> bool:
        return time.monotonic() < self.down_until

    def exports_ready(self) -> bool:
        return time.monotonic() >= self.exports_at

    def describe(self) -> dict[str, Any]:
        now = time.monotonic()
        return {
            "latency_ms": self.latency_ms,
            "latency_protocol": self.latency_protocol,
            "latency_menu": self.latency_menu,
            "pool_full": self.pool_full,
            "fail": [vars(r) for r in self.fail],
            "drop": vars(self.drop) if self.drop else None,
            "down_for": max(0.0, self.down_until - now),
            "exports_in": max(0.0, self.exports_at - now),
        }


WRITE_VERBS = frozenset(
    {"add", "set", "remove", "unset", "enable", "disable", "make-static", "move", "comment", "copy"}
)


class CommandLog:
    """Every command any client issued, so tests can count writes per menu."""

    def __init__(self, limit: int = 200_000) -> None:
        self._entries: deque[dict[str, Any]] = deque(maxlen=limit)
        self._seq = 0
        self._lock = threading.Lock()

    def record(
        self,
        protocol: str,
        user: str,
        menu: str,
        verb: str,
        text: str,
        error: str | None = None,
    ) -> dict[str, Any]:
        with self._lock:
            self._seq += 1
            entry = {
                "seq": self._seq,
                "time": time.time(),
                "protocol": protocol,
                "user": user,
                "menu": "/" + menu,
                "verb": verb,
                "write": verb in WRITE_VERBS,
                "ok": error is None,
                "error": error,
                "text": text,
            }
            self._entries.append(entry)
            return entry

    def entries(self, since: int = 0) -> list[dict[str, Any]]:
        with self._lock:
            return [e for e in self._entries if e["seq"] > since]

    def last_seq(self) -> int:
        with self._lock:
            return self._seq

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
