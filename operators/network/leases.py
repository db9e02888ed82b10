"""Hardware discovery, the pure part: DHCP clients without a reservation, from either backend.

Sightings come from RouterOS dynamic leases (``/ip/dhcp-server/lease`` rows with ``dynamic``) or
from the managed dnsmasq's DHCP log lines (``log-dhcp``), and are folded into the Network's
``status.observedLeases``: one entry per MAC, bounded, newest first. ``lastSeen`` only moves
when it is ``refresh`` seconds newer, so a chatty client does not rewrite the status at every pass.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from trellis.api.common import normalize_mac
from trellis.operators.network.routersync import duration_seconds

MAX_OBSERVED = 64
REFRESH_SECONDS = 60.0
_MAC = r"[0-9a-fA-F]{2}(?::[0-9a-fA-F]{2}){5}"
_IP = r"\d{1,3}(?:\.\d{1,3}){3}"
# dnsmasq with log-dhcp: "dnsmasq-dhcp[7]: 3712 DHCPACK(lan0) 10.77.0.120 52:54:00:77:00:99 node-x"
# (kubelet's timestamps=true puts an RFC 3339 time in front).
_DNSMASQ = re.compile(
    rf"(?P<verb>DHCPDISCOVER|DHCPREQUEST|DHCPOFFER|DHCPACK|DHCPINFORM)\([^)]*\)\s+"
    rf"(?:(?P<ip>{_IP})\s+)?(?P<mac>{_MAC})(?:\s+(?P<rest>.*))?$"
)
_STAMP = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d))\s")
_HOSTNAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9.]{0,61}[A-Za-z0-9])?$")


@dataclass(frozen=True)
class Sighting:
    mac: str
    seen: dt.datetime
    ip: str | None = None
    hostname: str | None = None


def rfc3339(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def parse_time(text: str) -> dt.datetime:
    text = text.replace("Z", "+00:00")
    if "." in text:  # kubelet prints nanoseconds; fromisoformat takes at most microseconds
        head, _, tail = text.partition(".")
        digits = tail[: len(tail) - len(tail.lstrip("0123456789"))]  # the fraction, not the offset
        text = f"{head}.{digits[:6]}{tail[len(digits) :]}"
    when = dt.datetime.fromisoformat(text)
    return when if when.tzinfo is not None else when.replace(tzinfo=dt.UTC)


def parse_dnsmasq_log(text: str, now: dt.datetime) -> list[Sighting]:
    """Clients in dnsmasq's DHCP log lines; lines without a time (a plain log file) count as ``now``."""
    out = []
    for line in text.splitlines():
        m = _DNSMASQ.search(line)
        if not m:
            continue
        stamp = _STAMP.match(line)
        seen = parse_time(stamp.group(1)) if stamp else now
        rest = (m.group("rest") or "").strip()
        hostname = rest if m.group("verb") == "DHCPACK" and _HOSTNAME.match(rest) else None
        ip = m.group("ip") if m.group("verb") in ("DHCPACK", "DHCPOFFER") else None
        out.append(Sighting(normalize_mac(m.group("mac")), seen, ip, hostname))
    return out


def parse_routeros_leases(rows: Iterable[Mapping[str, Any]], now: dt.datetime) -> list[Sighting]:
    """Dynamic leases of one DHCP server as printed over the API (``last-seen`` is an age, e.g. 1m5s)."""
    out = []
    for row in rows:
        if str(row.get("dynamic", "")).lower() not in ("true", "yes"):
            continue  # static leases are reservations (ours or someone's): never discoveries
        mac = str(row.get("active-mac-address") or row.get("mac-address") or "")
        if not re.fullmatch(_MAC, mac):
            continue
        age = duration_seconds(str(row.get("last-seen") or ""))
        seen = now - dt.timedelta(seconds=age) if age is not None else now
        ip = str(row.get("active-address") or row.get("address") or "") or None
        host = str(row.get("host-name") or "")
        out.append(Sighting(normalize_mac(mac), seen, ip, host if _HOSTNAME.match(host) else None))
    return out


def merge_observed(
    old: Sequence[Mapping[str, Any]] | None,
    sightings: Iterable[Sighting],
    known: set[str],
    refresh: float = REFRESH_SECONDS,
    limit: int = MAX_OBSERVED,
) -> list[dict[str, Any]]:
    """The new ``observedLeases``: old entries updated with ``sightings``, minus ``known`` MACs."""
    by_mac: dict[str, dict[str, Any]] = {}
    for item in old or ():
        mac = normalize_mac(str(item.get("mac", "")))
        if mac and mac not in known:
            by_mac[mac] = dict(item)
    for s in sorted(sightings, key=lambda s: s.seen):
        if s.mac in known:
            continue
        entry = by_mac.get(s.mac)
        if entry is None:
            entry = by_mac[s.mac] = {"mac": s.mac, "firstSeen": rfc3339(s.seen), "lastSeen": rfc3339(s.seen)}
        elif (s.seen - parse_time(str(entry["lastSeen"]))).total_seconds() >= refresh:
            entry["lastSeen"] = rfc3339(s.seen)
        if s.ip:
            entry["ip"] = s.ip
        if s.hostname:
            entry["hostname"] = s.hostname
    entries = sorted(by_mac.values(), key=lambda e: (str(e["lastSeen"]), e["mac"]), reverse=True)
    return entries[:limit]
