"""Desired RouterOS entries and the diff planner, on hand-written router rows."""

from __future__ import annotations

from typing import Any

import pytest

from trellis.api.network import NetworkSpec
from trellis.operators.network.desired import (
    ADDRESS,
    BRIDGE,
    BRIDGE_PORT,
    DHCP_NETWORK,
    DHCP_RELAY,
    DHCP_SERVER,
    DNS_STATIC,
    LEASE,
    POOL,
    VLAN,
    Host,
    router_entries,
)
from trellis.operators.network.routersync import duration_seconds, plan_changes

P = "trellis"


def spec(**over: Any) -> NetworkSpec:
    base: dict[str, Any] = {
        "cidr": "10.1.0.0/24",
        "gateway": "10.1.0.1",
        "router": "r1",
        "interface": "ether2",
        "vlan": 10,
        "dhcp": {
            "server": "router",
            "range": {"start": "10.1.0.100", "end": "10.1.0.199"},
            "dns": ["10.1.0.1"],
            "domain": "lab.example",
            "pxe": {"nextServer": "10.1.0.5", "bootFile": "undionly.kpxe"},
        },
    }
    base.update(over)
    return NetworkSpec.model_validate(base)


HOSTS = [
    Host("ns/a", "52:54:00:00:00:01", "10.1.0.10", "node-a"),
    Host("ns/b", "52:54:00:00:00:02", "10.1.0.11", "node-b"),
]


def rows_from(entries, start_id: int = 1) -> dict[str, list[dict[str, str]]]:
    """What a router that applied ``entries`` would print."""
    out: dict[str, list[dict[str, str]]] = {}
    for i, e in enumerate(entries, start_id):
        row = {k: v for k, v in e.fields if v is not None}
        row.update({".id": f"*{i:X}", "comment": e.tag})
        out.setdefault(e.menu, []).append(row)
    return out


def test_entries_cover_every_menu() -> None:
    entries = router_entries(P, "lab", spec(), HOSTS)
    menus = [e.menu for e in entries]
    assert (
        menus
        == [BRIDGE, VLAN, BRIDGE_PORT, ADDRESS, POOL, DHCP_SERVER, DHCP_NETWORK, LEASE, LEASE]
        + [DNS_STATIC] * 2
    )
    fields = {e.menu: e.field_map() for e in entries}
    assert fields[VLAN] == {"name": "trellis-lab-v10", "vlan-id": "10", "interface": "ether2"}
    assert fields[BRIDGE_PORT] == {"bridge": "trellis-lab", "interface": "trellis-lab-v10"}
    assert fields[ADDRESS] == {"address": "10.1.0.1/24", "interface": "trellis-lab"}
    assert fields[POOL]["ranges"] == "10.1.0.100-10.1.0.199"
    assert fields[DHCP_NETWORK]["next-server"] == "10.1.0.5"
    assert fields[DHCP_NETWORK]["ntp-server"] is None
    dns = [e for e in entries if e.menu == DNS_STATIC]
    assert dns[0].field_map() == {"name": "node-a.lab.example", "address": "10.1.0.10"}
    assert dns[0].tag == "trellis:lab:dns:ns/a" and dns[0].owner == "ns/a"


def test_relay_mode_and_no_pool() -> None:
    s = spec(dhcp={"server": "relay", "relay": {"serverAddress": "10.9.9.9"}}, vlan=None)
    entries = router_entries(P, "lab", s, HOSTS)
    menus = {e.menu for e in entries}
    assert DHCP_RELAY in menus and DHCP_SERVER not in menus and LEASE not in menus and VLAN not in menus
    relay = next(e for e in entries if e.menu == DHCP_RELAY).field_map()
    assert relay["dhcp-server"] == "10.9.9.9" and relay["local-address"] == "10.1.0.1"


def test_static_only_server_without_range() -> None:
    s = spec(dhcp={"server": "router"})
    server = next(e for e in router_entries(P, "lab", s, []) if e.menu == DHCP_SERVER)
    assert server.field_map()["address-pool"] == "static-only"


def test_fresh_router_gets_one_add_per_entry() -> None:
    entries = router_entries(P, "lab", spec(), HOSTS)
    plan = plan_changes(entries, {}, P, "lab")
    assert [w.kind for w in plan.writes] == ["add"] * len(entries)
    add = plan.writes[0]
    assert dict(add.fields) == {"name": "trellis-lab", "comment": "trellis:lab:bridge"}
    server = next(w for w in plan.writes if w.menu == DHCP_SERVER)
    assert dict(server.fields)["disabled"] == "no"


def test_converged_router_needs_no_writes() -> None:
    entries = router_entries(P, "lab", spec(), HOSTS)
    actual = rows_from(entries)
    # The router reports booleans and times in its own spelling.
    actual[DHCP_SERVER][0]["disabled"] = "false"
    actual[DHCP_SERVER][0]["lease-time"] = "01:00:00"
    actual[LEASE][0]["mac-address"] = actual[LEASE][0]["mac-address"].lower()
    assert plan_changes(entries, actual, P, "lab").writes == []


def test_one_changed_reservation_is_one_set() -> None:
    entries = router_entries(P, "lab", spec(), HOSTS)
    actual = rows_from(entries)
    moved = [HOSTS[0], Host("ns/b", "52:54:00:00:00:02", "10.1.0.12", "node-b")]
    plan = plan_changes(router_entries(P, "lab", spec(), moved), actual, P, "lab")
    kinds = [(w.kind, w.menu, dict(w.fields)) for w in plan.writes]
    assert kinds == [
        ("set", LEASE, {"address": "10.1.0.12"}),
        ("set", DNS_STATIC, {"address": "10.1.0.12"}),
    ]


def test_removed_field_is_unset_and_stale_items_removed_in_one_command() -> None:
    entries = router_entries(P, "lab", spec(), HOSTS)
    actual = rows_from(entries)
    s = spec()
    assert s.dhcp is not None and s.dhcp.pxe is not None
    s.dhcp.pxe.next_server = None
    plan = plan_changes(router_entries(P, "lab", s, []), actual, P, "lab")
    kinds = [(w.kind, w.menu, w.item_id, dict(w.fields)) for w in plan.writes]
    lease_ids = ",".join(r[".id"] for r in actual[LEASE])
    dns_ids = ",".join(r[".id"] for r in actual[DNS_STATIC])
    assert kinds == [
        ("remove", DNS_STATIC, dns_ids, {}),
        ("remove", LEASE, lease_ids, {}),
        ("unset", DHCP_NETWORK, actual[DHCP_NETWORK][0][".id"], {"value-name": "next-server"}),
    ]


def test_untagged_and_other_network_items_are_never_touched() -> None:
    entries = router_entries(P, "lab", spec(), HOSTS)
    actual = rows_from(entries)
    actual[LEASE].append(
        {".id": "*100", "address": "10.1.0.50", "mac-address": "AA:AA:AA:AA:AA:AA", "server": "x"}
    )
    actual[DNS_STATIC].append({".id": "*101", "name": "mine", "address": "1.1.1.1", "comment": "hand made"})
    actual[DNS_STATIC].append(
        {".id": "*102", "name": "o", "address": "1.1.1.2", "comment": "trellis:other:dns:n/o"}
    )
    dynamic = {
        "address": "10.1.0.60",
        "mac-address": "AA:AA:AA:AA:AA:AB",
        "dynamic": "true",
        "server": "trellis-lab",
    }
    actual[LEASE].append({".id": "*103", **dynamic})
    assert plan_changes(entries, actual, P, "lab").writes == []
    # Even when this Network goes away entirely, only its own items are removed.
    plan = plan_changes([], actual, P, "lab")
    removed = {i for w in plan.writes for i in w.item_id.split(",")}
    assert removed.isdisjoint({"*100", "*101", "*102", "*103"})
    assert len(removed) == len(entries)


def test_identical_untagged_item_is_adopted_without_writes() -> None:
    entries = router_entries(P, "lab", spec(bridge="bridge1", vlan=None, interface=None), [])
    actual = {BRIDGE: [{".id": "*1", "name": "bridge1"}]}
    plan = plan_changes(entries, actual, P, "lab")
    assert all(w.menu != BRIDGE for w in plan.writes)
    assert plan.adopted == [f"{BRIDGE}: name=bridge1"]


def test_infrastructure_collision_blocks_every_write() -> None:
    entries = router_entries(P, "lab", spec(), HOSTS)
    actual = {
        POOL: [{".id": "*9", "name": "trellis-lab", "ranges": "10.1.0.2-10.1.0.3", "comment": "users pool"}]
    }
    plan = plan_changes(entries, actual, P, "lab")
    assert plan.blocked and plan.writes == []
    assert "users pool" in plan.conflicts[None][0]


def test_reservation_collision_skips_only_that_reservation() -> None:
    entries = router_entries(P, "lab", spec(), HOSTS)
    actual = {DNS_STATIC: [{".id": "*9", "name": "node-a.lab.example", "address": "10.1.0.77"}]}
    plan = plan_changes(entries, actual, P, "lab")
    assert not plan.blocked and list(plan.conflicts) == ["ns/a"]
    owners = {w.owner for w in plan.writes}
    assert "ns/a" not in owners and "ns/b" in owners


def test_other_networks_identical_item_is_a_conflict_not_adopted() -> None:
    entries = router_entries(P, "lab", spec(bridge="shared", vlan=None, interface=None), [])
    actual = {BRIDGE: [{".id": "*1", "name": "shared", "comment": "trellis:other:bridge"}]}
    plan = plan_changes(entries, actual, P, "lab")
    assert plan.blocked


def test_duplicate_tagged_copies_are_reduced_to_one() -> None:
    entries = router_entries(P, "lab", spec(), HOSTS[:1])
    actual = rows_from(entries)
    dup = dict(actual[LEASE][0], **{".id": "*77", "address": "10.1.0.99"})
    actual[LEASE].append(dup)
    plan = plan_changes(entries, actual, P, "lab")
    assert [(w.kind, w.item_id) for w in plan.writes] == [("remove", "*77")]


@pytest.mark.parametrize(
    "text,seconds",
    [("1h", 3600), ("10m", 600), ("1d", 86400), ("2w", 1209600), ("01:00:00", 3600), ("1d02:00:00", 93600),
     ("3600", 3600), ("1h30m", 5400), ("500ms", 0.5)],
)  # fmt: skip
def test_duration_seconds(text: str, seconds: float) -> None:
    assert duration_seconds(text) == seconds


class RecordingSession:
    """Stands in for a router session: records what read_state asks for."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[str, ...], dict[str, str] | None]] = []

    def print(self, menu: str, proplist=(), where=None):  # type: ignore[no-untyped-def]
        self.calls.append((menu, tuple(proplist), where))
        return []


def test_read_state_reads_each_menu_once_and_only_our_leases() -> None:
    from trellis.operators.network.desired import MENU_ORDER
    from trellis.operators.network.routersync import read_state

    sess = RecordingSession()
    state = read_state(sess, "trellis-lab")  # type: ignore[arg-type]
    assert [c[0] for c in sess.calls] == list(MENU_ORDER)
    assert set(state) == set(MENU_ORDER)
    wheres = {menu: where for menu, _, where in sess.calls}
    assert wheres[LEASE] == {"server": "trellis-lab"}
    assert all(w is None for m, w in wheres.items() if m != LEASE)
    props = {menu: p for menu, p, _ in sess.calls}
    assert {".id", "comment", "address", "mac-address", "server"} <= set(props[LEASE])
