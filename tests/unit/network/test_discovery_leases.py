"""Hardware discovery on the Network side: lease parsing and the bounded observedLeases record."""

from __future__ import annotations

import datetime as dt

from trellis.operators.network.leases import (
    Sighting,
    merge_observed,
    parse_dnsmasq_log,
    parse_routeros_leases,
    rfc3339,
)

NOW = dt.datetime(2026, 12, 4, 18, 0, 0, tzinfo=dt.UTC)

DNSMASQ_LOG = """\
dnsmasq: started, version 2.90 cachesize 150
dnsmasq-dhcp[7]: 1839201 available DHCP range: 10.77.0.100 -- 10.77.0.150
dnsmasq-dhcp[7]: 1839201 DHCPDISCOVER(lan0) 52:54:00:77:00:99
dnsmasq-dhcp[7]: 1839201 tags: dynamic, lan0
dnsmasq-dhcp[7]: 1839201 DHCPOFFER(lan0) 10.77.0.120 52:54:00:77:00:99
dnsmasq-dhcp[7]: 1839201 DHCPREQUEST(lan0) 10.77.0.120 52:54:00:77:00:99
dnsmasq-dhcp[7]: 1839201 DHCPACK(lan0) 10.77.0.120 52:54:00:77:00:99 node-x
dnsmasq-dhcp[7]: 99 DHCPDISCOVER(lan0) 52:54:00:77:00:AA no address available
dnsmasq-dhcp[7]: 98 DHCPACK(lan0) 10.77.0.10 52:54:00:77:00:01 node-a
"""


def test_dnsmasq_log_lines_become_sightings() -> None:
    seen = parse_dnsmasq_log(DNSMASQ_LOG, NOW)
    macs = [s.mac for s in seen]
    assert macs.count("52:54:00:77:00:99") == 4
    ack = [s for s in seen if s.hostname == "node-x"]
    assert ack == [Sighting("52:54:00:77:00:99", NOW, "10.77.0.120", "node-x")]
    refused = [s for s in seen if s.mac == "52:54:00:77:00:aa"]
    assert refused == [Sighting("52:54:00:77:00:aa", NOW, None, None)]  # asked, got nothing: still seen


def test_kubelet_timestamps_are_the_time_seen() -> None:
    line = "2026-12-04T17:59:30.123456789Z dnsmasq-dhcp[7]: 5 DHCPACK(eth1) 10.0.0.5 AA:BB:CC:00:11:22\n"
    (s,) = parse_dnsmasq_log(line, NOW)
    assert (s.mac, s.ip, s.hostname) == ("aa:bb:cc:00:11:22", "10.0.0.5", None)
    assert rfc3339(s.seen) == "2026-12-04T17:59:30Z"


def test_routeros_dynamic_leases_only() -> None:
    rows = [
        {".id": "*1", "dynamic": "true", "mac-address": "52:54:00:AA:00:01", "address": "10.0.0.100",
         "active-address": "10.0.0.100", "host-name": "pxe-client", "last-seen": "1m5s", "status": "bound"},
        {".id": "*2", "dynamic": "false", "mac-address": "52:54:00:AA:00:02", "address": "10.0.0.10"},
        {".id": "*3", "dynamic": "true", "mac-address": "52:54:00:AA:00:03", "last-seen": "never",
         "status": "offered"},
    ]  # fmt: skip
    seen = parse_routeros_leases(rows, NOW)
    assert [s.mac for s in seen] == ["52:54:00:aa:00:01", "52:54:00:aa:00:03"]
    assert seen[0].seen == NOW - dt.timedelta(seconds=65)
    assert (seen[0].ip, seen[0].hostname) == ("10.0.0.100", "pxe-client")
    assert seen[1].seen == NOW and seen[1].ip is None


def test_merge_is_idempotent_bounded_and_skips_known_macs() -> None:
    a = Sighting("52:54:00:00:00:01", NOW, "10.0.0.100")
    b = Sighting("52:54:00:00:00:02", NOW, "10.0.0.101", "b")
    first = merge_observed(None, [a, b], known={"52:54:00:00:00:02"})
    assert first == [{"mac": a.mac, "firstSeen": "2026-12-04T18:00:00Z", "lastSeen": "2026-12-04T18:00:00Z",
                      "ip": "10.0.0.100"}]  # fmt: skip
    assert merge_observed(first, [a, a], known=set()) == first
    # Seen again within the refresh interval: no change (no status write); later: lastSeen moves.
    soon = Sighting(a.mac, NOW + dt.timedelta(seconds=30))
    assert merge_observed(first, [soon], known=set()) == first
    later = merge_observed(first, [Sighting(a.mac, NOW + dt.timedelta(minutes=5))], known=set())
    assert later[0]["lastSeen"] == "2026-12-04T18:05:00Z" and later[0]["firstSeen"] == "2026-12-04T18:00:00Z"
    # A reservation made for it removes it.
    assert merge_observed(later, [], known={a.mac}) == []
    many = [Sighting(f"52:54:00:00:01:{i:02x}", NOW + dt.timedelta(seconds=i)) for i in range(100)]
    bounded = merge_observed(None, many, known=set(), limit=64)
    assert len(bounded) == 64 and bounded[0]["mac"] == "52:54:00:00:01:63"  # newest kept, newest first


def test_kubelet_nanosecond_stamps_keep_their_zone() -> None:
    from trellis.operators.network.leases import parse_time

    when = parse_time("2026-12-04T21:11:30.963234041Z")
    assert when.tzinfo is not None and when.microsecond == 963234
    assert parse_time("2026-12-04T21:11:30.5+02:00").utcoffset().total_seconds() == 7200
