"""A reservation with pxe.enabled false: the Host it becomes and the dnsmasq lines it gets."""

from __future__ import annotations

from trellis.api.network import NetworkSpec, PXEOptions
from trellis.operators.network import ipam
from trellis.operators.network.desired import DHCP_OPTION, LEASE, Host, router_entries
from trellis.operators.network.dnsmasq import Settings, host_tag, render
from trellis.operators.network.reconcile import ReservationView, _host

SPEC = NetworkSpec.model_validate(
    {
        "cidr": "10.9.0.0/24",
        "gateway": "10.9.0.1",
        "dhcp": {
            "server": "dnsmasq",
            "pxe": {"bootFile": "undionly.kpxe", "rootPath": "iscsi:10.9.0.1::::iqn.x:t"},
        },
    }
)


def _view(pxe: dict | None) -> ReservationView:
    spec = {"networkRef": "lab", "mac": "52:54:00:09:00:01", **({"pxe": pxe} if pxe is not None else {})}
    return ReservationView("ns", "r", "uid", "2026-01-01T00:00:00Z", 1, spec, {})


def _verdict() -> ipam.Verdict:
    return ipam.Verdict("ns/r", "10.9.0.10", "Allocated", "", True, mac="52:54:00:09:00:01")


def test_reservation_pxe_enabled_maps_to_host_boot() -> None:
    off = _host(_view({"enabled": False}), _verdict())
    assert (off.boot, off.pxe) == (False, None)
    plain = _host(_view(None), _verdict())
    assert (plain.boot, plain.pxe) == (True, None)
    custom = _host(_view({"enabled": True, "bootFile": "x.kpxe"}), _verdict())
    assert custom.boot and custom.pxe is not None and custom.pxe.boot_file == "x.kpxe"


def test_boot_disabled_host_is_outside_every_boot_rule() -> None:
    hosts = [
        Host("ns/a", "52:54:00:09:00:01", "10.9.0.10", "a"),
        Host("ns/b", "52:54:00:09:00:02", "10.9.0.11", "b", boot=False),
    ]
    config = render("lab", SPEC, hosts, Settings(interface_conf=None))
    assert f"52:54:00:09:00:02,set:known,set:{host_tag('52:54:00:09:00:02')},set:pxe-host," in config
    boot_lines = [line for line in config.splitlines() if line.startswith(("dhcp-boot=", "dhcp-option=tag:"))]
    boot_lines = [line for line in boot_lines if "no-gateway" not in line]
    assert boot_lines and all("tag:!pxe-host" in line for line in boot_lines), boot_lines
    assert host_tag("52:54:00:09:00:02") not in "\n".join(boot_lines)


def test_router_entries_give_a_host_its_own_boot_options_and_nothing_when_disabled() -> None:
    spec = NetworkSpec.model_validate({"cidr": "10.9.0.0/24", "dhcp": {"server": "router"}})
    custom = Host(
        "ns/c", "52:54:00:09:00:03", "10.9.0.12", pxe=PXEOptions(next_server="10.9.0.5", boot_file="b.efi")
    )
    hosts = [
        custom,
        Host("ns/off", "52:54:00:09:00:04", "10.9.0.13", pxe=PXEOptions(boot_file="x.kpxe"), boot=False),
        Host(
            "ns/ipxe", "52:54:00:09:00:05", "10.9.0.14", pxe=PXEOptions(ipxe_script_url="http://10.9.0.5/s")
        ),
    ]
    entries = router_entries("trellis", "lab", spec, hosts)
    options = [e for e in entries if e.menu == DHCP_OPTION]
    assert [(e.tag, e.field_map()["code"], e.field_map()["value"]) for e in options] == [
        ("trellis:lab:option-66:ns/c", "66", "'10.9.0.5'"),
        ("trellis:lab:option-67:ns/c", "67", "'b.efi'"),
    ]
    leases = {e.owner: e.field_map() for e in entries if e.menu == LEASE}
    assert leases["ns/c"]["dhcp-option"] == ",".join(e.field_map()["name"] for e in options)
    assert leases["ns/off"]["dhcp-option"] is None and leases["ns/ipxe"]["dhcp-option"] is None
    assert entries.index(options[-1]) < min(i for i, e in enumerate(entries) if e.menu == LEASE)
