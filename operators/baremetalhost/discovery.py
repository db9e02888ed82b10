"""Discovered hosts: BareMetalHosts made from the MACs a Network saw asking for DHCP.

The Network operator publishes DHCP clients without a reservation in
``Network.status.observedLeases`` (it reads its backends; it has no rights on hosts). This
operator, which owns hosts, turns each unknown MAC of a ``discovery.purpose: hosts`` Network
into a BareMetalHost without ``spec.bmc`` — state Unmanaged — and, on a ``purpose: bmcs``
Network, matches each MAC to the host whose ``bmc.mac`` it is.

Known means: the MAC is some host's bootMACAddress, bmc.mac or NIC MAC, or the client's host
name is some host's name or NIC host name — in every namespace the operator watches (the
``bmh_known`` index). Exactly one host per MAC: the name is derived from the MAC
(``discovered-<mac>``, so a second create is a 409), every decision runs under one lock, and a
MAC created here counts as known until the watch shows the new host. Creation is rate-limited
per Network (``discovery.maxPerMinute``, a token bucket). Nothing else is written: no
reservations, no other hosts, and a host is never deleted by discovery.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from trellis import API_VERSION
from trellis.api.common import normalize_mac

ANN = "baremetalhost.trellis.dev/"
# Only machines seen asking recently become hosts: a deleted discovered host comes back when its
# machine asks again, not from an old sighting still listed in the Network's status.
RECENT_SECONDS = 600.0
DISCOVERED_LABEL = ANN + "discovered-on"  # the Network (label value, truncated to 63)
ANN_MAC, ANN_IP, ANN_HOSTNAME = ANN + "discovered-mac", ANN + "discovered-ip", ANN + "discovered-hostname"
ANN_NETWORK, ANN_FIRST_SEEN = ANN + "discovered-network", ANN + "discovered-first-seen"
log = logging.getLogger(__name__)

Key = tuple[str, str]
Holder = tuple[str, str]  # (namespace, name)


def recently_seen(lease: Mapping[str, Any], now: dt.datetime, window: float = RECENT_SECONDS) -> bool:
    stamp = str(lease.get("lastSeen") or lease.get("firstSeen") or "")
    try:
        seen = dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return False
    return (now - seen).total_seconds() <= window


def discovered_name(mac: str) -> str:
    return "discovered-" + normalize_mac(mac).replace(":", "")


def known_keys(name: str, spec: Mapping[str, Any]) -> list[Key]:
    """Everything that identifies a host: its MACs (boot, BMC, NICs) and names (its own, NICs')."""
    keys: list[Key] = [("name", name.lower())]
    macs = [spec.get("bootMACAddress"), (spec.get("bmc") or {}).get("mac")]
    for nic in spec.get("nics") or []:
        macs.append(nic.get("mac"))
        if nic.get("hostname"):
            keys.append(("name", str(nic["hostname"]).lower()))
    keys += [("mac", normalize_mac(str(m))) for m in macs if m]
    bmc_mac = (spec.get("bmc") or {}).get("mac")
    if bmc_mac:
        keys.append(("bmc", normalize_mac(str(bmc_mac))))
    return list(dict.fromkeys(keys))


def holder_of(lease: Mapping[str, Any], lookup: Callable[[Key], Iterable[Holder]]) -> Holder | None:
    """The host a lease belongs to: by MAC, else by the host name the client sent (short name)."""
    found = sorted(lookup(("mac", normalize_mac(str(lease.get("mac", ""))))))
    hostname = str(lease.get("hostname") or "").lower().split(".")[0]
    if not found and hostname:
        found = sorted(lookup(("name", hostname)))
    return found[0] if found else None


def host_body(network: str, namespace: str, lease: Mapping[str, Any]) -> dict[str, Any]:
    mac = normalize_mac(str(lease["mac"]))
    annotations = {ANN_MAC: mac, ANN_NETWORK: network, ANN_FIRST_SEEN: str(lease.get("firstSeen", ""))}
    if lease.get("ip"):
        annotations[ANN_IP] = str(lease["ip"])
    if lease.get("hostname"):
        annotations[ANN_HOSTNAME] = str(lease["hostname"])
    return {
        "apiVersion": API_VERSION,
        "kind": "BareMetalHost",
        "metadata": {
            "name": discovered_name(mac),
            "namespace": namespace,
            "labels": {DISCOVERED_LABEL: network[:63].rstrip("-.")},
            "annotations": annotations,
        },
        "spec": {
            "bootMACAddress": mac,
            "online": False,
            "description": f"discovered from DHCP on Network {network}; set spec.bmc to adopt",
        },
    }


@dataclass
class RateLimiter:
    """A token bucket per key: ``per_minute`` tokens, refilled evenly over the minute."""

    clock: Callable[[], float] = time.monotonic
    _buckets: dict[str, tuple[float, float]] = field(default_factory=dict)  # key -> (tokens, at)

    def _level(self, key: str, per_minute: int) -> float:
        tokens, at = self._buckets.get(key, (float(per_minute), self.clock()))
        return min(float(per_minute), tokens + (self.clock() - at) * per_minute / 60.0)

    def take(self, key: str, per_minute: int) -> bool:
        level = self._level(key, per_minute)
        if level < 1.0:
            self._buckets[key] = (level, self.clock())
            return False
        self._buckets[key] = (level - 1.0, self.clock())
        return True

    def wait(self, key: str, per_minute: int) -> float:
        """Seconds until the next token."""
        return max(0.0, (1.0 - self._level(key, per_minute)) * 60.0 / per_minute)


@dataclass
class Discoverer:
    """Runs the decisions for every Network event, one at a time."""

    create: Callable[[dict[str, Any]], Any]  # async: create a host; raises on failure (409: exists)
    event: Callable[[dict[str, Any], str, str], None]  # (object, reason, message)
    default_namespace: str
    limiter: RateLimiter = field(default_factory=RateLimiter)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    created: dict[str, Holder] = field(default_factory=dict)  # mac -> host, until the index has it
    reported: set[tuple[str, str]] = field(default_factory=set)  # (reason, mac) Events already posted
    retry: dict[str, asyncio.TimerHandle] = field(default_factory=dict)

    async def network(
        self, network: Mapping[str, Any], lookup: Callable[[Key], Iterable[Holder]]
    ) -> float | None:
        """Act on one Network's observedLeases; seconds until the rate limit allows more, if any."""
        discovery = (network.get("spec") or {}).get("discovery") or {}
        if not discovery or not discovery.get("enabled", True):
            return None
        leases = (network.get("status") or {}).get("observedLeases") or []
        async with self.lock:
            self.seen_in_index(lookup)
            if discovery.get("purpose", "hosts") == "bmcs":
                self._bmcs(network, leases, lookup)
                return None
            return await self._hosts(network, discovery, leases, lookup)

    async def _hosts(
        self,
        network: Mapping[str, Any],
        discovery: Mapping[str, Any],
        leases: Iterable[Mapping[str, Any]],
        lookup: Callable[[Key], Iterable[Holder]],
    ) -> float | None:
        name = str(network["metadata"]["name"])
        namespace = str(discovery.get("namespace") or self.default_namespace)
        per_minute = int(discovery.get("maxPerMinute", 10))
        now = dt.datetime.now(dt.UTC)
        for lease in sorted(leases, key=lambda e: str(e.get("firstSeen", ""))):
            mac = normalize_mac(str(lease.get("mac", "")))
            if mac in self.created or holder_of(lease, lookup) is not None:
                continue
            if not recently_seen(lease, now):
                continue
            if not self.limiter.take(name, per_minute):
                wait = self.limiter.wait(name, per_minute)
                log.info("Network %s: discovery rate limit reached; next host in %.0fs", name, wait)
                return wait
            body = host_body(name, namespace, lease)
            try:
                made = await self.create(body)
            except Exception as exc:
                if getattr(exc, "status", None) != 409:
                    log.warning(
                        "Network %s: cannot create %s/%s: %s", name, namespace, body["metadata"]["name"], exc
                    )
                    continue
                made = None  # someone (an earlier run of ours) made it: exactly one host per MAC
            self.created[mac] = (namespace, body["metadata"]["name"])
            if made is not None:
                where = f"{lease.get('ip') or 'no address'}" + (
                    f", host name {lease['hostname']}" if lease.get("hostname") else ""
                )
                message = (
                    f"discovered {mac} asking for DHCP on Network {name} ({where}); set spec.bmc to adopt"
                )
                self.event(made, "Discovered", message)
                self.event(
                    dict(network),
                    "HostDiscovered",
                    f"{mac} -> BareMetalHost {namespace}/{body['metadata']['name']}",
                )
        return None

    def _bmcs(
        self,
        network: Mapping[str, Any],
        leases: Iterable[Mapping[str, Any]],
        lookup: Callable[[Key], Iterable[Holder]],
    ) -> None:
        name = str(network["metadata"]["name"])
        for lease in leases:
            mac = normalize_mac(str(lease.get("mac", "")))
            holders = sorted(lookup(("bmc", mac)))
            if holders:
                if ("BMCObserved", mac) in self.reported:
                    continue
                self.reported.add(("BMCObserved", mac))
                ns, host = holders[0]
                ref = {
                    "apiVersion": API_VERSION,
                    "kind": "BareMetalHost",
                    "metadata": {"namespace": ns, "name": host},
                }
                self.event(
                    ref,
                    "BMCObserved",
                    f"BMC {mac} asked for DHCP on Network {name} ({lease.get('ip') or 'no address'})",
                )
            elif ("UnmatchedBMC", mac) not in self.reported:
                self.reported.add(("UnmatchedBMC", mac))
                ip = lease.get("ip") or "no address"
                message = (
                    f"BMC {mac} ({ip}) asked for DHCP and is no host's bmc.mac; "
                    "set bmc.mac (and bmc.address) on the host it belongs to"
                )
                self.event(dict(network), "UnmatchedBMC", message)

    def seen_in_index(self, lookup: Callable[[Key], Iterable[Holder]]) -> None:
        """Forget created MACs the index has caught up with (they are known from now on)."""
        for mac in [m for m in self.created if list(lookup(("mac", m)))]:
            del self.created[mac]
