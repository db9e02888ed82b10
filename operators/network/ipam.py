"""IP address management for one Network: validation, allocation and conflict detection.

Pure functions only. The Network's reconcile is the single place that calls ``allocate`` for
that Network, with every reservation that references it, so two reservations can never be
handed the same address by two concurrent handlers (see docs/network.md, "IPAM").
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

IPv4 = ipaddress.IPv4Address

_MAC = re.compile(r"^[0-9A-Fa-f]{2}([:-])[0-9A-Fa-f]{2}(\1[0-9A-Fa-f]{2}){4}$")
_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")

# Reasons used in conditions and Events; also the vocabulary of docs/network.md.
ALLOCATED = "Allocated"
RESERVED = "Reserved"
INVALID_MAC = "InvalidMAC"
INVALID_IP = "InvalidIP"
INVALID_HOSTNAME = "InvalidHostname"
OUTSIDE_NETWORK = "IPOutsideNetwork"
NETWORK_ADDRESS = "IPIsNetworkAddress"
BROADCAST_ADDRESS = "IPIsBroadcastAddress"
GATEWAY_ADDRESS = "IPIsGateway"
IN_DYNAMIC_RANGE = "IPInDynamicRange"
EXCLUDED_ADDRESS = "IPExcluded"
DUPLICATE_MAC = "DuplicateMAC"
DUPLICATE_IP = "DuplicateIP"
DUPLICATE_HOSTNAME = "DuplicateHostname"
EXHAUSTED = "AddressPoolExhausted"


def normalize_mac(mac: str) -> str | None:
    """``aa-bb-cc-dd-ee-ff`` / mixed case → ``AA:BB:CC:DD:EE:FF`` (RouterOS' spelling); None if bad."""
    if not isinstance(mac, str) or not _MAC.match(mac.strip()):
        return None
    return mac.strip().replace("-", ":").upper()


def valid_hostname(name: str) -> bool:
    """A single RFC 1123 label (the reservation's short name; the domain comes from the Network)."""
    return bool(_LABEL.match(name))


def valid_fqdn(name: str) -> bool:
    labels = name.rstrip(".").split(".")
    return len(name) <= 253 and all(_LABEL.match(label) for label in labels)


@dataclass(frozen=True)
class AddressPlan:
    """The address facts of one Network that IPAM needs."""

    cidr: ipaddress.IPv4Network
    gateway: IPv4 | None = None
    dynamic_ranges: tuple[tuple[IPv4, IPv4], ...] = ()
    excluded: frozenset[IPv4] = frozenset()

    @property
    def has_broadcast(self) -> bool:
        return self.cidr.prefixlen <= 30

    def usable(self) -> Iterable[IPv4]:
        """Addresses a host may hold (network and broadcast excluded where they exist)."""
        if not self.has_broadcast:
            yield from self.cidr
            return
        yield from self.cidr.hosts()

    def size(self) -> int:
        n = self.cidr.num_addresses
        return n - 2 if self.has_broadcast else n

    def in_dynamic_range(self, ip: IPv4) -> bool:
        return any(lo <= ip <= hi for lo, hi in self.dynamic_ranges)

    def dynamic_size(self) -> int:
        return sum(int(hi) - int(lo) + 1 for lo, hi in self.dynamic_ranges)

    def reservable(self) -> int:
        """Addresses a reservation may receive automatically."""
        blocked = {ip for ip in self.excluded if ip in self.cidr and not self.in_dynamic_range(ip)}
        if self.gateway is not None and self.gateway in self.cidr and not self.in_dynamic_range(self.gateway):
            blocked.add(self.gateway)
        return max(0, self.size() - self.dynamic_size() - len(blocked))


def plan_problems(
    cidr: str, gateway: str | None, ranges: Sequence[tuple[str, str]], excluded: Sequence[str] = ()
) -> tuple[AddressPlan | None, list[str]]:
    """Parse and check a Network's addressing; return the plan or the list of problems."""
    problems: list[str] = []
    try:
        net = ipaddress.ip_network(cidr, strict=True)
    except ValueError as exc:
        return None, [f"cidr {cidr!r} is not a valid network: {exc}"]
    if not isinstance(net, ipaddress.IPv4Network):
        return None, [f"cidr {cidr}: only IPv4 networks carry DHCPv4 reservations"]
    plan = AddressPlan(cidr=net)
    gw: IPv4 | None = None
    if gateway:
        try:
            gw = IPv4(gateway)
        except ValueError:
            problems.append(f"gateway {gateway!r} is not an IPv4 address")
        else:
            if gw not in net:
                problems.append(f"gateway {gw} is outside {net}")
            elif plan.has_broadcast and gw in (net.network_address, net.broadcast_address):
                problems.append(f"gateway {gw} is the network or broadcast address of {net}")
    parsed: list[tuple[IPv4, IPv4]] = []
    for start, end in ranges:
        try:
            lo, hi = IPv4(start), IPv4(end)
        except ValueError:
            problems.append(f"dynamic range {start}-{end} is not made of IPv4 addresses")
            continue
        if lo > hi:
            problems.append(f"dynamic range {lo}-{hi} is reversed (start after end)")
            continue
        if lo not in net or hi not in net:
            problems.append(f"dynamic range {lo}-{hi} is not inside {net}")
            continue
        if plan.has_broadcast and (lo == net.network_address or hi == net.broadcast_address):
            problems.append(f"dynamic range {lo}-{hi} includes the network or broadcast address")
            continue
        if gw is not None and lo <= gw <= hi:
            problems.append(f"dynamic range {lo}-{hi} contains the gateway {gw}")
            continue
        for olo, ohi in parsed:
            if lo <= ohi and olo <= hi:
                problems.append(f"dynamic ranges {olo}-{ohi} and {lo}-{hi} overlap")
        parsed.append((lo, hi))
    excl: set[IPv4] = set()
    for item in excluded:
        try:
            excl.add(IPv4(item))
        except ValueError:
            problems.append(f"excluded address {item!r} is not an IPv4 address")
    if problems:
        return None, problems
    return AddressPlan(cidr=net, gateway=gw, dynamic_ranges=tuple(parsed), excluded=frozenset(excl)), []


@dataclass(frozen=True)
class Request:
    """What IPAM needs from one DHCPReservation."""

    key: str  # "<namespace>/<name>": unique and stable
    created: str  # metadata.creationTimestamp (RFC 3339 sorts as text)
    mac: str
    ip: str | None = None
    hostname: str | None = None
    allow_dynamic_range: bool = False

    @property
    def age_order(self) -> tuple[str, str]:
        """Older first; the name breaks ties within one second."""
        return (self.created, self.key)


@dataclass
class Verdict:
    key: str
    ip: str | None
    reason: str
    message: str
    ok: bool
    mac: str | None = None
    conflicts: list[str] = field(default_factory=list)  # keys of the other party (both sides)

    @property
    def explicit(self) -> bool:
        return self.reason == RESERVED


@dataclass
class Result:
    verdicts: dict[str, Verdict]
    allocations: dict[str, str]  # key -> IP, only for reservations that hold an address

    def conflict_count(self) -> int:
        return sum(1 for v in self.verdicts.values() if v.conflicts)


def _check_explicit(plan: AddressPlan, req: Request, ip: IPv4) -> tuple[str, str] | None:
    net = plan.cidr
    if ip not in net:
        return OUTSIDE_NETWORK, f"{ip} is outside the network {net}"
    if plan.has_broadcast and ip == net.network_address:
        return NETWORK_ADDRESS, f"{ip} is the network address of {net}"
    if plan.has_broadcast and ip == net.broadcast_address:
        return BROADCAST_ADDRESS, f"{ip} is the broadcast address of {net}"
    if plan.gateway is not None and ip == plan.gateway:
        return GATEWAY_ADDRESS, f"{ip} is the gateway of {net}"
    if ip in plan.excluded:
        return EXCLUDED_ADDRESS, f"{ip} is excluded from reservations on this network"
    if plan.in_dynamic_range(ip) and not req.allow_dynamic_range:
        return (
            IN_DYNAMIC_RANGE,
            f"{ip} is inside the dynamic DHCP range; set allowDynamicRange to reserve it anyway",
        )
    return None


def _auto_ok(plan: AddressPlan, ip: IPv4) -> bool:
    return _check_explicit(plan, Request("", "", ""), ip) is None


def allocate(plan: AddressPlan, requests: Iterable[Request], previous: Mapping[str, str]) -> Result:
    """Validate every request, resolve conflicts (older wins) and hand out addresses.

    ``previous`` maps keys to addresses handed out earlier: an automatic allocation stays put
    while it is still valid, so addresses never shuffle when other reservations come and go.
    Explicit addresses beat automatic ones; between two explicit requests the older wins.
    """
    ordered = sorted(requests, key=lambda r: r.age_order)
    verdicts: dict[str, Verdict] = {}
    live: list[tuple[Request, str]] = []  # requests that passed field validation, with the MAC

    for req in ordered:
        mac = normalize_mac(req.mac)
        if mac is None:
            verdicts[req.key] = Verdict(
                req.key, None, INVALID_MAC, f"{req.mac!r} is not a MAC address", False
            )
            continue
        if req.hostname is not None and not valid_hostname(req.hostname):
            verdicts[req.key] = Verdict(
                req.key, None, INVALID_HOSTNAME, f"{req.hostname!r} is not an RFC 1123 host label", False, mac
            )
            continue
        if req.ip:
            try:
                ip = IPv4(req.ip)
            except ValueError:
                verdicts[req.key] = Verdict(
                    req.key, None, INVALID_IP, f"{req.ip!r} is not an IPv4 address", False
                )
                continue
            bad = _check_explicit(plan, req, ip)
            if bad:
                verdicts[req.key] = Verdict(req.key, None, bad[0], bad[1], False, mac)
                continue
        live.append((req, mac))

    # Same MAC or same hostname twice: the older keeps it, the newer is refused.
    seen_mac: dict[str, str] = {}
    seen_host: dict[str, str] = {}
    survivors: list[tuple[Request, str]] = []
    for req, mac in live:
        owner = seen_mac.get(mac)
        host_owner = seen_host.get(req.hostname) if req.hostname else None
        if owner or host_owner:
            winner = owner or host_owner
            assert winner is not None
            reason, what = (
                (DUPLICATE_MAC, f"MAC {mac}") if owner else (DUPLICATE_HOSTNAME, f"hostname {req.hostname}")
            )
            verdicts[req.key] = Verdict(
                req.key,
                None,
                reason,
                f"{what} is already reserved by the older {winner}",
                False,
                mac,
                [winner],
            )
            _note_conflict(verdicts, winner, req.key)
            continue
        seen_mac[mac] = req.key
        if req.hostname:
            seen_host[req.hostname] = req.key
        survivors.append((req, mac))
        verdicts[req.key] = Verdict(req.key, None, ALLOCATED, "", True, mac)

    # Explicit addresses first, older first.
    taken: dict[IPv4, str] = {}
    for req, mac in survivors:
        if not req.ip:
            continue
        ip = IPv4(req.ip)
        holder = taken.get(ip)
        if holder is not None:
            verdicts[req.key] = Verdict(
                req.key,
                None,
                DUPLICATE_IP,
                f"{ip} is already reserved by the older {holder}",
                False,
                mac,
                [holder],
            )
            _note_conflict(verdicts, holder, req.key)
            continue
        taken[ip] = req.key
        v = verdicts[req.key]
        v.ip, v.reason, v.message = str(ip), RESERVED, f"{ip} reserved as requested"

    # Then automatic ones: keep a still-valid previous address, else the lowest free one.
    pending: list[Request] = []
    for req, _mac in survivors:
        if req.ip:
            continue
        prev = previous.get(req.key)
        if prev:
            try:
                pip = IPv4(prev)
            except ValueError:
                pip = None
            if pip is not None and pip not in taken and _auto_ok(plan, pip):
                taken[pip] = req.key
                v = verdicts[req.key]
                v.ip, v.message = str(pip), f"{pip} allocated"
                continue
        pending.append(req)
    if pending:
        free = (ip for ip in plan.usable() if ip not in taken and _auto_ok(plan, ip))
        for req in pending:
            v = verdicts[req.key]
            got = next(free, None)
            if got is None:
                v.ok, v.reason, v.message = False, EXHAUSTED, f"no free address left in {plan.cidr}"
                continue
            taken[got] = req.key
            v.ip, v.message = str(got), f"{got} allocated (lowest free)"

    allocations = {v.key: v.ip for v in verdicts.values() if v.ok and v.ip}
    return Result(verdicts=verdicts, allocations=allocations)


def _note_conflict(verdicts: dict[str, Verdict], winner: str, loser: str) -> None:
    if loser not in verdicts[winner].conflicts:
        verdicts[winner].conflicts.append(loser)


@dataclass(frozen=True)
class NetworkRef:
    name: str
    created: str
    cidr: str


def overlaps(networks: Iterable[NetworkRef]) -> dict[str, str]:
    """For every Network whose CIDR overlaps an older one: name -> the older Network's name."""
    ordered = sorted(networks, key=lambda n: (n.created, n.name))
    kept: list[tuple[str, ipaddress.IPv4Network | ipaddress.IPv6Network]] = []
    result: dict[str, str] = {}
    for ref in ordered:
        try:
            net = ipaddress.ip_network(ref.cidr, strict=False)
        except ValueError:
            continue
        older = next(
            (name for name, other in kept if other.version == net.version and other.overlaps(net)), None
        )
        if older:
            result[ref.name] = older
            continue
        kept.append((ref.name, net))
    return result
