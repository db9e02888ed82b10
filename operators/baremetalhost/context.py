"""What all host runners of one operator process share."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, cast

import kopf

from trellis.operators.baremetalhost.config import Settings
from trellis.operators.baremetalhost.kube import Kube

NETWORK_CACHE_SECONDS = 30.0


@dataclass
class Context:
    kube: Kube
    settings: Settings
    bmc_slots: asyncio.Semaphore
    # (namespace, name) of an owned DHCPReservation -> {"ip", "phase", "message"}, fed by a watch.
    reservation_info: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    wakers: dict[tuple[str, str], asyncio.Event] = field(default_factory=dict)
    dirty_reservations: set[tuple[str, str]] = field(default_factory=set)  # hosts to resync now
    # (namespace, name) of a TalosDevice -> {"mac", "ref", "phase", "lastConfigFetch"}, fed by a watch.
    devices: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    devices_listed: set[str] = field(default_factory=set)  # namespaces read once, watched since
    _networks: dict[str, tuple[float, bool]] = field(default_factory=dict)

    @classmethod
    def create(cls, settings: Settings, kube: Kube | None = None) -> Context:
        return cls(kube or Kube(), settings, asyncio.Semaphore(settings.max_concurrent_bmc))

    def waker(self, namespace: str, name: str) -> asyncio.Event:
        return self.wakers.setdefault((namespace, name), asyncio.Event())

    def wake(self, namespace: str, name: str) -> None:
        event = self.wakers.get((namespace, name))
        if event is not None:
            event.set()

    async def network_exists(self, name: str) -> bool:
        cached = self._networks.get(name)
        if cached and time.monotonic() - cached[0] < NETWORK_CACHE_SECONDS:
            return cached[1]
        exists = await self.kube.get_cluster_object("networks", name) is not None
        self._networks[name] = (time.monotonic(), exists)
        return exists

    def forget_network(self, name: str) -> None:
        self._networks.pop(name, None)

    def network_seen(self, name: str, exists: bool) -> None:
        """A watch event is fresher than any cached read: a Network that appears counts at once."""
        self._networks[name] = (time.monotonic(), exists)


def info(body: dict[str, Any], reason: str, message: str) -> None:
    kopf.info(cast(kopf.Body, body), reason=reason, message=message)


def warn(body: dict[str, Any], reason: str, message: str) -> None:
    kopf.warn(cast(kopf.Body, body), reason=reason, message=message)
