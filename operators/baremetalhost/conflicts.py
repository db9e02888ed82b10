"""Duplicate boot / BMC MAC addresses across all namespaces (pure).

Every host sharing a MAC is flagged. The oldest holder (creation time, then namespace/name)
keeps its reservations; the others get none, so a copy-pasted host never steals a lease.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from trellis.api.common import normalize_mac

ZERO_MAC = "00:00:00:00:00:00"


@dataclass(frozen=True, order=True)
class Holder:
    created: str
    namespace: str
    name: str

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


def mac_keys(spec: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(kind, mac) pairs a host claims: its boot MAC and its BMC MAC."""
    keys = []
    boot = spec.get("bootMACAddress")
    if boot and normalize_mac(boot) != ZERO_MAC:
        keys.append(("boot", normalize_mac(boot)))
    bmc_mac = (spec.get("bmc") or {}).get("mac")
    if bmc_mac and normalize_mac(bmc_mac) != ZERO_MAC:
        keys.append(("bmc", normalize_mac(bmc_mac)))
    return keys


@dataclass(frozen=True)
class Conflict:
    kind: str  # boot or bmc
    mac: str
    others: tuple[str, ...]  # namespace/name of the other holders
    loser: bool  # this host is not the oldest holder


def find_conflicts(
    me: Holder, spec: Mapping[str, Any], index: Mapping[Any, Iterable[Holder]]
) -> list[Conflict]:
    result = []
    for key in mac_keys(spec):
        holders = sorted(set(index.get(key, ())) | {me})
        others = tuple(h.key for h in holders if h.key != me.key)
        if others:
            result.append(Conflict(key[0], key[1], others, loser=holders[0].key != me.key))
    return result


def describe(conflicts: list[Conflict]) -> str:
    return "; ".join(f"{c.kind} MAC {c.mac} is also used by {', '.join(c.others)}" for c in conflicts)
