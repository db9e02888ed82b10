"""The simulator's DHCP client control: dynamic leases in RouterOS' own shape."""

from __future__ import annotations

import time

from rossim.device import Device
from rossim.hooks_net import dhcp_client, ros_duration


def _setup(device: Device, cli) -> None:  # type: ignore[no-untyped-def]
    out = cli(
        "/interface/bridge/add name=br1\n"
        "/ip/pool/add name=p1 ranges=10.9.0.100-10.9.0.101\n"
        "/ip/dhcp-server/add name=d1 interface=br1 address-pool=p1\n"
        "/ip/dhcp-server/lease/add address=10.9.0.10 mac-address=52:54:00:00:00:01 server=d1\n"
    )
    assert "failure" not in out, out


def test_durations_print_like_routeros() -> None:
    assert [ros_duration(s) for s in (0, 5, 65, 3600, 90061, 604800)] == [
        "0s", "5s", "1m5s", "1h", "1d1h1m1s", "1w",
    ]  # fmt: skip


def test_unknown_client_gets_a_dynamic_bound_lease(device: Device, cli) -> None:  # type: ignore[no-untyped-def]
    _setup(device, cli)
    lease = dhcp_client(device, "52:54:00:00:00:99", "d1", host_name="pxe-x")
    assert lease["address"] == "10.9.0.100" and lease["dynamic"] is True
    again = dhcp_client(device, "52:54:00:00:00:99", "d1")
    assert again["address"] == "10.9.0.100"  # renewed in place, one row
    rows = [v for _, v in device.rows("ip/dhcp-server/lease")]
    dyn = [v for v in rows if v.get("dynamic")]
    assert len(dyn) == 1
    assert dyn[0]["mac-address"] == "52:54:00:00:00:99".upper()
    assert (dyn[0]["status"], dyn[0]["host-name"], dyn[0]["active-address"]) == (
        "bound",
        "pxe-x",
        "10.9.0.100",
    )
    assert dyn[0]["last-seen"] == "0s"
    num = next(n for n, v in device.rows("ip/dhcp-server/lease") if v.get("dynamic"))
    device.table("ip/dhcp-server/lease").items[num]["_seen_at"] = time.time() - 65
    assert next(v for _, v in device.rows("ip/dhcp-server/lease") if v.get("dynamic"))["last-seen"] == "1m5s"
    # The static lease's MAC gets its static lease: no dynamic row.
    dhcp_client(device, "52:54:00:00:00:01", "d1")
    assert len([v for _, v in device.rows("ip/dhcp-server/lease") if v.get("dynamic")]) == 1
    # make-static turns it into a static lease, as on RouterOS.
    out = cli("/ip/dhcp-server/lease/make-static [find dynamic]\n/ip/dhcp-server/lease/print count-only\n")
    assert len([v for _, v in device.rows("ip/dhcp-server/lease") if v.get("dynamic")]) == 0, out
