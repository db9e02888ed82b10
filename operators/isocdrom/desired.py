"""Pure decisions for an ISOCDROM: names, paths, subscribers and the status that follows."""

from __future__ import annotations

import hashlib
import posixpath
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from trellis.api.isocdrom import ISOCDROMSpec

SLOT_MAX = 32
SLOT_PREFIX = "iso-"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def slot_name(name: str, spec: ISOCDROMSpec) -> str:
    """The /disk slot: the spec's, or ``iso-<name>`` shortened with a hash to RouterOS' 32 characters."""
    if spec.slot:
        return spec.slot
    base = SLOT_PREFIX + _UNSAFE.sub("-", name)
    if len(base) <= SLOT_MAX:
        return base
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return base[: SLOT_MAX - 9].rstrip("-.") + "-" + digest


@dataclass(frozen=True)
class Placement:
    path: str  # absolute SFTP path, e.g. /storage-pool/iso/talos.iso
    created_by_us: bool  # transferred by the operator (so deletePolicy may remove it)


def placement(name: str, spec: ISOCDROMSpec, default_pool: str) -> Placement:
    if spec.source.rds_path:
        return Placement("/" + spec.source.rds_path, created_by_us=False)
    pool = spec.target.pool or default_pool
    return Placement(posixpath.join("/", pool, spec.target.directory, f"{name}.iso"), created_by_us=True)


def subscribers(hosts: Iterable[Mapping[str, Any]], isocdrom: str) -> list[dict[str, str]]:
    """BareMetalHosts whose spec.bootSource boots this ISOCDROM (type isocdrom, isocdromRef = name)."""
    found = []
    for host in hosts:
        source = (host.get("spec") or {}).get("bootSource") or {}
        if source.get("type") == "isocdrom" and source.get("isocdromRef") == isocdrom:
            meta = host.get("metadata") or {}
            found.append({"namespace": str(meta.get("namespace", "")), "name": str(meta.get("name", ""))})
    return sorted(found, key=lambda s: (s["namespace"], s["name"]))


def describe_subscribers(subs: list[dict[str, str]], limit: int = 5) -> str:
    names = [f"{s['namespace']}/{s['name']}" for s in subs[:limit]]
    more = f" and {len(subs) - limit} more" if len(subs) > limit else ""
    return ", ".join(names) + more


def status_changes(current: Mapping[str, Any], wanted: Mapping[str, Any]) -> dict[str, Any]:
    """Only the keys whose value differs: a no-op reconcile sends no status patch."""
    return {k: v for k, v in wanted.items() if current.get(k) != v}
