"""Discovered hosts: naming, dedupe against every host's MACs and names, rate limit, one host per MAC."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import pytest

from trellis.operators.baremetalhost import discovery as d
from trellis.operators.baremetalhost import machine as m


def _network(leases: list[dict[str, Any]], **discovery: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "lab"},
        "spec": {"cidr": "10.0.0.0/24", "discovery": discovery or {"enabled": True}},
        "status": {"observedLeases": leases},
    }


def _lease(mac: str, hostname: str | None = None, ip: str = "10.0.0.100") -> dict[str, Any]:
    seen = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")  # a machine asking right now
    lease = {"mac": mac, "ip": ip, "firstSeen": seen, "lastSeen": seen}
    if hostname:
        lease["hostname"] = hostname
    return lease


class Fake:
    def __init__(self, hosts: dict[tuple[str, str], dict[str, Any]] | None = None) -> None:
        self.index: dict[Any, set[tuple[str, str]]] = {}
        for (ns, name), spec in (hosts or {}).items():
            for key in d.known_keys(name, spec):
                self.index.setdefault(key, set()).add((ns, name))
        self.created: list[dict[str, Any]] = []
        self.events: list[tuple[str, str]] = []
        self.existing: set[tuple[str, str]] = set()

    def lookup(self, key: Any) -> set[tuple[str, str]]:
        return self.index.get(key, set())

    async def create(self, body: dict[str, Any]) -> dict[str, Any]:
        key = (body["metadata"]["namespace"], body["metadata"]["name"])
        if key in self.existing:
            exc = Exception("AlreadyExists")
            exc.status = 409  # type: ignore[attr-defined]
            raise exc
        self.existing.add(key)
        self.created.append(body)
        return body

    def event(self, obj: dict[str, Any], reason: str, message: str) -> None:
        self.events.append((reason, message))

    def discoverer(self, clock: list[float] | None = None) -> d.Discoverer:
        now = clock if clock is not None else [0.0]
        return d.Discoverer(self.create, self.event, "rack", d.RateLimiter(clock=lambda: now[0]))


def test_names_and_keys() -> None:
    assert d.discovered_name("52:54:00:AA:BB:CC") == "discovered-525400aabbcc"
    spec = {
        "bootMACAddress": "52:54:00:00:00:01",
        "bmc": {"address": "ipmi://10.0.0.5", "credentialsName": "c", "mac": "52:54:00:00:00:0B"},
        "nics": [{"name": "eno2", "mac": "52:54:00:00:00:02", "networkRef": "lab", "hostname": "Srv1-Data"}],
    }
    keys = set(d.known_keys("srv1", spec))
    assert {("mac", "52:54:00:00:00:01"), ("mac", "52:54:00:00:00:0b"), ("mac", "52:54:00:00:00:02")} <= keys
    assert {("name", "srv1"), ("name", "srv1-data"), ("bmc", "52:54:00:00:00:0b")} <= keys


def test_unknown_mac_becomes_one_unmanaged_host() -> None:
    fake = Fake()
    disc = fake.discoverer()
    net = _network([_lease("52:54:00:aa:00:01", "node-x")], namespace="discovered")
    assert asyncio.run(disc.network(net, fake.lookup)) is None
    (body,) = fake.created
    assert body["metadata"]["name"] == "discovered-525400aa0001"
    assert body["metadata"]["namespace"] == "discovered"
    assert body["metadata"]["labels"] == {d.DISCOVERED_LABEL: "lab"}
    assert body["metadata"]["annotations"][d.ANN_HOSTNAME] == "node-x"
    assert body["spec"] == {"bootMACAddress": "52:54:00:aa:00:01", "online": False,
                            "description": body["spec"]["description"]}  # fmt: skip
    assert "bmc" not in body["spec"]
    assert [e[0] for e in fake.events] == ["Discovered", "HostDiscovered"]
    # The same lease again (before and after the index has the host): nothing new.
    asyncio.run(disc.network(net, fake.lookup))
    fake.index[("mac", "52:54:00:aa:00:01")] = {("discovered", "discovered-525400aa0001")}
    asyncio.run(disc.network(net, fake.lookup))
    assert len(fake.created) == 1


def test_known_macs_and_names_are_never_discovered() -> None:
    hosts = {
        ("rack", "srv1"): {"bootMACAddress": "52:54:00:00:00:01", "bmc": {"mac": "52:54:00:00:00:0b"},
                           "nics": [{"name": "eno2", "mac": "52:54:00:00:00:02", "networkRef": "lab"}]},
        ("other", "srv2"): {"bootMACAddress": "52:54:00:00:00:21"},
    }  # fmt: skip
    fake = Fake(hosts)
    leases = [_lease(mac) for mac in ("52:54:00:00:00:01", "52:54:00:00:00:0B", "52:54:00:00:00:02",
                                      "52:54:00:00:00:21")]  # fmt: skip
    leases.append(_lease("52:54:00:00:00:99", hostname="srv2.lab.test"))  # another NIC of a known host
    asyncio.run(fake.discoverer().network(_network(leases), fake.lookup))
    assert fake.created == []


def test_an_existing_host_of_that_name_counts_as_made() -> None:
    fake = Fake()
    fake.existing.add(("rack", "discovered-525400aa0001"))
    disc = fake.discoverer()
    asyncio.run(disc.network(_network([_lease("52:54:00:aa:00:01")]), fake.lookup))
    assert fake.created == [] and fake.events == []
    assert "52:54:00:aa:00:01" in disc.created


def test_rate_limit_per_network() -> None:
    clock = [0.0]
    fake = Fake()
    disc = fake.discoverer(clock)
    leases = [_lease(f"52:54:00:bb:00:{i:02x}") for i in range(5)]
    wait = asyncio.run(disc.network(_network(leases, maxPerMinute=2), fake.lookup))
    assert len(fake.created) == 2 and wait == pytest.approx(30.0)
    clock[0] = 31.0
    asyncio.run(disc.network(_network(leases, maxPerMinute=2), fake.lookup))
    assert len(fake.created) == 3
    clock[0] = 200.0
    assert asyncio.run(disc.network(_network(leases, maxPerMinute=2), fake.lookup)) is None
    assert len({b["metadata"]["name"] for b in fake.created}) == 5


def test_bmc_network_matches_by_bmc_mac_or_reports_unmatched() -> None:
    fake = Fake(
        {("rack", "srv1"): {"bootMACAddress": "52:54:00:00:00:01", "bmc": {"mac": "52:54:00:00:00:0b"}}}
    )
    disc = fake.discoverer()
    net = _network([_lease("52:54:00:00:00:0b"), _lease("52:54:00:00:00:0c")], purpose="bmcs")
    asyncio.run(disc.network(net, fake.lookup))
    asyncio.run(disc.network(net, fake.lookup))
    assert fake.created == []
    assert [e[0] for e in fake.events] == ["BMCObserved", "UnmatchedBMC"]  # once each


def test_disabled_discovery_does_nothing() -> None:
    fake = Fake()
    asyncio.run(
        fake.discoverer().network(_network([_lease("52:54:00:aa:00:01")], enabled=False), fake.lookup)
    )
    assert fake.created == []


def test_unmanaged_host_is_adopted_into_registering() -> None:
    assert m.transition(m.State.UNMANAGED, m.Event.ADOPTED) == m.State.REGISTERING
    action = m.plan(m.View(state=m.State.UNMANAGED))  # only planned once spec.bmc is set
    assert isinstance(action, m.Transition) and action.to == m.State.REGISTERING
    assert m.transition(m.State.UNMANAGED, m.Event.DELETE_REQUESTED) == m.State.POWERING_OFF_BEFORE_DELETE


def test_only_recent_sightings_become_hosts() -> None:
    from trellis.operators.baremetalhost.discovery import recently_seen

    now = dt.datetime(2026, 12, 4, 12, 0, tzinfo=dt.UTC)
    assert recently_seen({"lastSeen": "2026-12-04T11:55:00Z"}, now)
    assert not recently_seen({"lastSeen": "2026-12-04T11:40:00Z"}, now)
    assert recently_seen({"firstSeen": "2026-12-04T11:59:00Z"}, now)
    assert not recently_seen({}, now)
