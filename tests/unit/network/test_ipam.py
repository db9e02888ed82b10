"""IPAM: validation, lowest-free allocation, stability and conflict resolution."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trellis.operators.network import ipam
from trellis.operators.network.ipam import (
    NetworkRef,
    Request,
    allocate,
    normalize_mac,
    overlaps,
    plan_problems,
)


def plan(cidr: str = "10.0.0.0/24", gw: str | None = "10.0.0.1", ranges=(("10.0.0.100", "10.0.0.199"),)):
    p, problems = plan_problems(cidr, gw, list(ranges))
    assert p is not None, problems
    return p


def req(name: str, mac: str, ip: str | None = None, created: str = "2026-01-01T00:00:00Z", **kw) -> Request:
    return Request(key=f"ns/{name}", created=created, mac=mac, ip=ip, **kw)


def mac(n: int) -> str:
    return f"52:54:00:{(n >> 16) & 255:02x}:{(n >> 8) & 255:02x}:{n & 255:02x}"


@pytest.mark.parametrize(
    "raw,expected",
    [
        ("aa:bb:cc:dd:ee:ff", "AA:BB:CC:DD:EE:FF"),
        ("AA-BB-CC-DD-EE-0F", "AA:BB:CC:DD:EE:0F"),
        ("aa:bb-cc:dd:ee:ff", None),
        ("aa:bb:cc:dd:ee", None),
        ("gg:bb:cc:dd:ee:ff", None),
        ("", None),
    ],
)
def test_normalize_mac(raw: str, expected: str | None) -> None:
    assert normalize_mac(raw) == expected


@pytest.mark.parametrize(
    "cidr,gw,ranges,fragment",
    [
        ("10.0.0.0/33", None, [], "not a valid network"),
        ("10.0.0.1/24", None, [], "not a valid network"),
        ("fd00::/64", None, [], "only IPv4"),
        ("10.0.0.0/24", "10.0.1.1", [], "gateway 10.0.1.1 is outside"),
        ("10.0.0.0/24", "10.0.0.255", [], "broadcast"),
        ("10.0.0.0/24", "10.0.0.1", [("10.0.0.50", "10.0.0.40")], "reversed"),
        ("10.0.0.0/24", "10.0.0.1", [("10.0.0.50", "10.0.1.40")], "not inside"),
        ("10.0.0.0/24", "10.0.0.1", [("10.0.0.1", "10.0.0.40")], "contains the gateway"),
        ("10.0.0.0/24", "10.0.0.1", [("10.0.0.10", "10.0.0.40"), ("10.0.0.30", "10.0.0.50")], "overlap"),
        ("10.0.0.0/24", "10.0.0.1", [("10.0.0.0", "10.0.0.40")], "network or broadcast"),
    ],
)
def test_plan_problems(cidr: str, gw: str | None, ranges: list[tuple[str, str]], fragment: str) -> None:
    p, problems = plan_problems(cidr, gw, ranges)
    assert p is None
    assert any(fragment in msg for msg in problems), problems


def test_sizes() -> None:
    p = plan()
    assert p.size() == 254
    assert p.dynamic_size() == 100
    assert p.reservable() == 254 - 100 - 1


def test_lowest_free_skips_gateway_and_dynamic_range() -> None:
    p = plan()
    result = allocate(p, [req("a", mac(1)), req("b", mac(2), created="2026-01-01T00:00:01Z")], {})
    assert result.allocations == {"ns/a": "10.0.0.2", "ns/b": "10.0.0.3"}
    assert all(v.ok and v.reason == ipam.ALLOCATED for v in result.verdicts.values())


def test_allocation_order_is_by_age_then_name() -> None:
    p = plan()
    same = "2026-01-01T00:00:00Z"
    reqs = [
        req("zz", mac(1), created=same),
        req("aa", mac(2), created=same),
        req("old", mac(3), created="2025"),
    ]
    result = allocate(p, reqs, {})
    assert result.allocations == {"ns/old": "10.0.0.2", "ns/aa": "10.0.0.3", "ns/zz": "10.0.0.4"}


def test_allocation_skips_past_dynamic_range() -> None:
    p = plan(ranges=(("10.0.0.2", "10.0.0.10"),))
    assert allocate(p, [req("a", mac(1))], {}).allocations == {"ns/a": "10.0.0.11"}


def test_previous_allocation_is_kept_even_if_lower_is_free() -> None:
    p = plan()
    result = allocate(p, [req("b", mac(2))], {"ns/b": "10.0.0.7"})
    assert result.allocations == {"ns/b": "10.0.0.7"}


def test_previous_allocation_inside_new_dynamic_range_moves() -> None:
    p = plan(ranges=(("10.0.0.2", "10.0.0.10"),))
    result = allocate(p, [req("b", mac(2))], {"ns/b": "10.0.0.7"})
    assert result.allocations == {"ns/b": "10.0.0.11"}


def test_explicit_ip_beats_previous_automatic_allocation() -> None:
    p = plan()
    older_auto = req("auto", mac(1), created="2025-01-01T00:00:00Z")
    newer_explicit = req("fixed", mac(2), ip="10.0.0.2")
    result = allocate(p, [older_auto, newer_explicit], {"ns/auto": "10.0.0.2"})
    assert result.allocations == {"ns/fixed": "10.0.0.2", "ns/auto": "10.0.0.3"}


@pytest.mark.parametrize(
    "ip,reason",
    [
        ("10.0.1.5", ipam.OUTSIDE_NETWORK),
        ("10.0.0.0", ipam.NETWORK_ADDRESS),
        ("10.0.0.255", ipam.BROADCAST_ADDRESS),
        ("10.0.0.1", ipam.GATEWAY_ADDRESS),
        ("10.0.0.150", ipam.IN_DYNAMIC_RANGE),
        ("10.0.0.999", ipam.INVALID_IP),
    ],
)
def test_explicit_ip_validation(ip: str, reason: str) -> None:
    result = allocate(plan(), [req("a", mac(1), ip=ip)], {})
    v = result.verdicts["ns/a"]
    assert not v.ok and v.reason == reason and v.ip is None
    assert result.allocations == {}


def test_dynamic_range_allowed_when_asked() -> None:
    result = allocate(plan(), [req("a", mac(1), ip="10.0.0.150", allow_dynamic_range=True)], {})
    assert result.allocations == {"ns/a": "10.0.0.150"}


def test_excluded_addresses_are_skipped_and_refused() -> None:
    p, _ = plan_problems("10.0.0.0/24", "10.0.0.1", [], ["10.0.0.2", "10.0.0.3"])
    assert p is not None
    result = allocate(p, [req("a", mac(1)), req("b", mac(2), ip="10.0.0.3")], {})
    assert result.allocations == {"ns/a": "10.0.0.4"}
    assert result.verdicts["ns/b"].reason == ipam.EXCLUDED_ADDRESS


def test_bad_mac_and_hostname() -> None:
    result = allocate(plan(), [req("a", "nope"), req("b", mac(2), hostname="Bad_Name")], {})
    assert result.verdicts["ns/a"].reason == ipam.INVALID_MAC
    assert result.verdicts["ns/b"].reason == ipam.INVALID_HOSTNAME
    assert result.allocations == {}


def test_duplicate_ip_older_keeps_it_both_sides_flagged() -> None:
    older = req("old", mac(1), ip="10.0.0.20", created="2025-01-01T00:00:00Z")
    newer = req("new", mac(2), ip="10.0.0.20")
    result = allocate(plan(), [newer, older], {})
    assert result.allocations == {"ns/old": "10.0.0.20"}
    assert result.verdicts["ns/new"].reason == ipam.DUPLICATE_IP
    assert result.verdicts["ns/new"].conflicts == ["ns/old"]
    assert result.verdicts["ns/old"].ok and result.verdicts["ns/old"].conflicts == ["ns/new"]
    assert result.conflict_count() == 2


def test_duplicate_mac_in_other_spelling() -> None:
    older = req("old", "aa:bb:cc:dd:ee:ff", created="2025-01-01T00:00:00Z")
    newer = req("new", "AA-BB-CC-DD-EE-FF")
    result = allocate(plan(), [older, newer], {})
    assert set(result.allocations) == {"ns/old"}
    assert result.verdicts["ns/new"].reason == ipam.DUPLICATE_MAC
    assert result.verdicts["ns/old"].conflicts == ["ns/new"]


def test_duplicate_hostname() -> None:
    older = req("old", mac(1), hostname="web", created="2025-01-01T00:00:00Z")
    newer = req("new", mac(2), hostname="web")
    result = allocate(plan(), [older, newer], {})
    assert result.verdicts["ns/new"].reason == ipam.DUPLICATE_HOSTNAME


def test_conflict_loser_does_not_consume_an_address() -> None:
    older = req("old", mac(1), created="2025-01-01T00:00:00Z")
    newer = req("new", mac(1))
    third = req("third", mac(3), created="2027-01-01T00:00:00Z")
    result = allocate(plan(), [older, newer, third], {})
    assert result.allocations == {"ns/old": "10.0.0.2", "ns/third": "10.0.0.3"}


def test_exhaustion() -> None:
    p, _ = plan_problems("10.0.0.0/29", "10.0.0.1", [])
    assert p is not None
    reqs = [req(f"r{i}", mac(i), created=f"2026-01-01T00:00:0{i}Z") for i in range(7)]
    result = allocate(p, reqs, {})
    assert len(result.allocations) == 5
    assert result.verdicts["ns/r6"].reason == ipam.EXHAUSTED
    assert result.verdicts["ns/r5"].reason == ipam.EXHAUSTED


def test_small_prefixes() -> None:
    p, _ = plan_problems("10.0.0.0/31", None, [])
    assert p is not None and p.size() == 2
    assert allocate(p, [req("a", mac(1))], {}).allocations == {"ns/a": "10.0.0.0"}


def test_overlapping_networks_newer_flagged() -> None:
    refs = [
        NetworkRef("b", "2026-01-02T00:00:00Z", "10.0.0.0/16"),
        NetworkRef("a", "2026-01-01T00:00:00Z", "10.0.5.0/24"),
        NetworkRef("c", "2026-01-03T00:00:00Z", "10.1.0.0/24"),
        NetworkRef("d", "2026-01-04T00:00:00Z", "10.0.0.0/8"),
    ]
    assert overlaps(refs) == {"b": "a", "d": "a"}


@settings(max_examples=150, deadline=None)
@given(
    prefix=st.integers(min_value=24, max_value=28),
    n=st.integers(min_value=0, max_value=40),
    explicit=st.lists(st.integers(min_value=0, max_value=300), max_size=15),
    previous=st.dictionaries(st.integers(min_value=0, max_value=39), st.integers(min_value=0, max_value=255)),
    seconds=st.lists(st.integers(min_value=0, max_value=3), min_size=40, max_size=40),
)
def test_allocation_properties(
    prefix: int, n: int, explicit: list[int], previous: dict[int, int], seconds: list[int]
) -> None:
    """Unique addresses, all valid, deterministic in input order, and stable on a rerun."""
    p, _ = plan_problems(f"10.9.0.0/{prefix}", "10.9.0.1", [])
    assert p is not None
    reqs = []
    for i in range(n):
        ip = None
        if i < len(explicit):
            ip = str(ipaddress.IPv4Address(int(p.cidr.network_address) + explicit[i] % p.cidr.num_addresses))
        reqs.append(req(f"r{i:02d}", mac(i % 35), ip=ip, created=f"2026-01-01T00:00:0{seconds[i]}Z"))
    prev = {f"ns/r{k:02d}": f"10.9.0.{v}" for k, v in previous.items()}
    result = allocate(p, reqs, prev)
    ips = list(result.allocations.values())
    assert len(ips) == len(set(ips))
    for key, ip in result.allocations.items():
        addr = ipaddress.IPv4Address(ip)
        assert addr in p.cidr and addr != p.gateway
        assert addr not in (p.cidr.network_address, p.cidr.broadcast_address)
        assert result.verdicts[key].ok
    assert allocate(p, list(reversed(reqs)), prev).allocations == result.allocations
    assert allocate(p, reqs, result.allocations).allocations == result.allocations
    for v in result.verdicts.values():
        assert v.ok == (v.key in result.allocations)
