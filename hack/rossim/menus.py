"""The menu registry and the factory state of a fresh device."""

from __future__ import annotations

from typing import Any

from rossim.device import Device
from rossim.hooks import INTERFACE_TABLES, Hooks
from rossim.menus_disk import disk_menus
from rossim.menus_net import network_menus
from rossim.schema import Field, Flag, Menu, View, disabled_flag

POOL_SLOT = "storage-pool"
ETHERNET_PORTS = 8


class InterfaceListHooks(Hooks):
    """/interface: every interface of every kind, read-only here."""

    virtual = True
    kinds = {"interface/ethernet": "ether", "interface/bridge": "bridge", "interface/vlan": "vlan"}

    def rows(self, device: Device) -> list[tuple[int, View]]:
        out = []
        for path in INTERFACE_TABLES:
            for num, view in device.rows(path):
                row: View = {"name": view.get("name"), "default-name": view.get("default-name")}
                row.update(type=self.kinds[path], running=view.get("running"), disabled=view.get("disabled"))
                row.update({k: view.get(k) for k in ("comment", "mtu", "actual-mtu", "mac-address")})
                row["actual-mtu"] = row["actual-mtu"] or row["mtu"]
                row[".id"] = view[".id"]
                row["__explicit"] = frozenset()
                out.append((num, row))
        out.sort(key=lambda r: r[0])
        return out


def build_menus() -> dict[str, Menu]:
    menus = [*disk_menus(), *network_menus()]
    menus.append(
        Menu(
            "interface",
            (
                Field("name", quoted=True),
                Field("default-name", readonly=True, quoted=True),
                Field("type", readonly=True, quoted=True),
                Field("comment", readonly=True, quoted=True),
                Field("mtu", "int", readonly=True),
                Field("actual-mtu", "int", readonly=True),
                Field("mac-address", readonly=True),
                Field("running", "bool", readonly=True, detail=False),
                Field("disabled", "bool", readonly=True, detail=False),
            ),
            "name",
            True,
            (disabled_flag(), Flag("R", "running", lambda v: bool(v.get("running")))),
            ("name", "type", "actual-mtu", "mac-address"),
            verbs=frozenset({"print", "find", "getall", "listen"}),
            hooks=InterfaceListHooks(),
        )
    )
    return {m.path: m for m in menus}


def seed(device: Device) -> None:
    """Factory state: ethernet ports, identity, and one mounted btrfs pool for file disks."""
    eth = device.table("interface/ethernet")
    for i in range(1, ETHERNET_PORTS + 1):
        num = eth.counter[0]
        eth.counter[0] += 1
        eth.items[num] = {"name": f"ether{i}", "default-name": f"ether{i}"}
    ident = device.table("system/identity")
    ident.items[1] = {}
    ident.counter[0] = 2
    disks = device.table("disk")
    pool: dict[str, Any] = {
        "type": "raid",
        "slot": POOL_SLOT,
        "mount-point": POOL_SLOT,
        "pool-size": device.settings.pool_size,
        "model": "RAID6 2-parity-disks",
    }
    disks.items[disks.counter[0]] = pool
    disks.counter[0] += 1
    (device.storage.root / POOL_SLOT).mkdir(parents=True, exist_ok=True)
