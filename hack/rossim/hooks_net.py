"""Behaviour of the /ip, /interface and /system menus: validation, derived values, renames."""

from __future__ import annotations

import hashlib
import ipaddress
import time
from typing import Any

from rossim import ROUTEROS_VERSION, errors
from rossim.device import Device
from rossim.hooks import (
    Hooks,
    interface_name_taken,
    next_free_name,
    pinned,
    require_unique,
)
from rossim.schema import View, expand_vlan_ids

PORT_EXISTS = "failure: device already added as bridge port"  # GUESS


def mac_for(name: str) -> str:
    digest = hashlib.sha256(name.encode()).digest()
    return ":".join(f"{b:02X}" for b in (0x4A, *digest[:5]))


class InterfaceHooks(Hooks):
    def __init__(self, path: str, prefix: str) -> None:
        self.path = path
        self.prefix = prefix

    def validate(self, device: Device, num: int, item: dict[str, Any], old: dict[str, Any] | None) -> None:
        if item.get("name") is None:
            item["name"] = next_free_name(device, self.prefix, set(device.names("interface")))
        if interface_name_taken(device, item["name"], self.path, num):
            raise pinned(errors.NAME_EXISTS, "name")
        if self.path == "interface/vlan":
            if item.get("interface") == item["name"]:
                raise pinned(errors.invalid_value("interface").message, "interface", errors.CAT_ARGUMENT)
            require_unique(device, self.path, num, item, ("interface", "vlan-id"), errors.ALREADY_HAVE)

    def before_set(self, device: Device, num: int, new: dict[str, Any], old: dict[str, Any]) -> None:
        if new.get("name") != old.get("name"):
            rename_references(device, "interface", old["name"], new["name"])

    def computed(self, device: Device, num: int, view: View) -> dict[str, Any]:
        name = str(view.get("name", ""))
        out: dict[str, Any] = {"mac-address": view.get("admin-mac") or mac_for(name)}
        out["running"] = not view.get("disabled")
        if self.path != "interface/ethernet":
            out["actual-mtu"] = view.get("mtu") if isinstance(view.get("mtu"), int) else 1500
        return out


class BridgePortHooks(Hooks):
    def validate(self, device: Device, num: int, item: dict[str, Any], old: dict[str, Any] | None) -> None:
        if item.get("interface") == item.get("bridge"):
            raise pinned(errors.invalid_value("interface").message, "interface", errors.CAT_ARGUMENT)
        require_unique(device, "interface/bridge/port", num, item, ("interface",), PORT_EXISTS)


class BridgeVlanHooks(Hooks):
    def validate(self, device: Device, num: int, item: dict[str, Any], old: dict[str, Any] | None) -> None:
        mine = expand_vlan_ids(str(item.get("vlan-ids", "")))
        for n, other in device.table("interface/bridge/vlan").items.items():
            same_bridge = n != num and other.get("bridge") == item.get("bridge")
            if same_bridge and mine & expand_vlan_ids(str(other.get("vlan-ids", ""))):
                raise pinned(errors.ALREADY_HAVE, "vlan-ids")

    def computed(self, device: Device, num: int, view: View) -> dict[str, Any]:
        return {"current-tagged": view.get("tagged", ""), "current-untagged": view.get("untagged", "")}


class NamedHooks(Hooks):
    """Menus whose items have a unique `name`, generated as <prefix>N when omitted."""

    def __init__(self, path: str, prefix: str, unique: tuple[tuple[str, ...], ...] = ()) -> None:
        self.path = path
        self.prefix = prefix
        self.unique = unique

    def validate(self, device: Device, num: int, item: dict[str, Any], old: dict[str, Any] | None) -> None:
        if item.get("name") is None:
            item["name"] = next_free_name(device, self.prefix, set(device.names(self.path)))
        require_unique(device, self.path, num, item, ("name",), errors.NAME_EXISTS)
        for keys in self.unique:
            require_unique(device, self.path, num, item, keys, errors.ALREADY_HAVE)

    def before_set(self, device: Device, num: int, new: dict[str, Any], old: dict[str, Any]) -> None:
        if new.get("name") != old.get("name"):
            rename_references(device, self.path, old["name"], new["name"])


class PoolHooks(NamedHooks):
    def computed(self, device: Device, num: int, view: View) -> dict[str, Any]:
        total = 0
        for part in str(view.get("ranges") or "").split(","):
            if not part:
                continue
            if "/" in part:
                total += ipaddress.IPv4Network(part).num_addresses
            else:
                lo, _, hi = part.partition("-")
                total += int(ipaddress.IPv4Address(hi or lo)) - int(ipaddress.IPv4Address(lo)) + 1
        return {"total": total, "used": 0, "available": total}


class AddressHooks(Hooks):
    def validate(self, device: Device, num: int, item: dict[str, Any], old: dict[str, Any] | None) -> None:
        iface = ipaddress.IPv4Interface(item["address"])
        if old is None or item.get("network") == old.get("network"):
            item.setdefault("network", str(iface.network.network_address))
        require_unique(device, "ip/address", num, item, ("address", "interface"), errors.ALREADY_HAVE)

    def computed(self, device: Device, num: int, view: View) -> dict[str, Any]:
        ok = device.interface_exists(str(view.get("interface")))
        return {"actual-interface": view.get("interface") if ok else "", "invalid": not ok}


class LeaseHooks(Hooks):
    extra = frozenset({"make-static"})

    def validate(self, device: Device, num: int, item: dict[str, Any], old: dict[str, Any] | None) -> None:
        require_unique(
            device, "ip/dhcp-server/lease", num, item, ("mac-address", "server"), errors.ALREADY_HAVE
        )

    def computed(self, device: Device, num: int, view: View) -> dict[str, Any]:
        seen = view.get("_seen_at")
        if not view.get("dynamic") or seen is None:
            return {"status": "waiting", "last-seen": "never", "blocked": False, "radius": False}
        # A client holds it (dhcp_client below): bound, last seen as an age like 1m5s.
        age = int(time.time() - float(seen))
        left = max(0, int(float(view.get("_expires_at") or seen) - time.time()))
        return {
            "status": "bound",
            "last-seen": ros_duration(age),
            "expires-after": ros_duration(left),
            "blocked": False,
            "radius": False,
        }

    def command(self, device: Device, verb: str, nums: list[int], args: Any, dialect: str) -> Any:
        if verb != "make-static":
            return super().command(device, verb, nums, args, dialect)
        for num in nums:
            item = device.table("ip/dhcp-server/lease").items[num]
            if item.get("dynamic"):
                item["dynamic"] = False
                device._changed("ip/dhcp-server/lease", "set", num)
        return None


class NatHooks(Hooks):
    add_only = frozenset({"place-before"})

    def validate(self, device: Device, num: int, item: dict[str, Any], old: dict[str, Any] | None) -> None:
        ref = item.get("place-before")
        if ref is not None:
            try:
                item["place-before"] = device.resolve("ip/firewall/nat", str(ref))
            except errors.RosError:
                raise pinned(errors.no_match("place-before").message, "place-before", 1) from None

    def after_add(self, device: Device, num: int, item: dict[str, Any]) -> None:
        before = item.pop("place-before", None)
        if before is None:
            return
        table = device.table("ip/firewall/nat")
        ordered = [(n, it) for n, it in table.items.items() if n != num]
        index = next(i for i, (n, _) in enumerate(ordered) if n == before)
        ordered.insert(index, (num, item))
        table.items = dict(ordered)

    def computed(self, device: Device, num: int, view: View) -> dict[str, Any]:
        return {"bytes": 0, "packets": 0}


class ResourceHooks(Hooks):
    virtual = True

    def rows(self, device: Device) -> list[tuple[int, View]]:
        uptime = format_uptime(int(time.time() - device.started))
        free_hdd = device.storage.free("storage-pool") if device.storage.has_pool("storage-pool") else 0
        view: View = {
            "uptime": uptime,
            "version": ROUTEROS_VERSION,
            "build-time": "2026-01-12 10:23:45",
            "factory-software": "7.15",
            "free-memory": device.settings.total_memory * 3 // 4,
            "total-memory": device.settings.total_memory,
            "cpu": "ARM64",
            "cpu-count": 4,
            "cpu-frequency": 2000,
            "cpu-load": 1,
            "free-hdd-space": free_hdd,
            "total-hdd-space": device.settings.pool_size,
            "architecture-name": "arm64",
            "board-name": "RDS2216",
            "platform": "MikroTik",
        }
        return [(0, view)]


def format_uptime(seconds: int) -> str:
    parts = []
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts) or "0s"


def rename_references(device: Device, ref: str, old: str, new: str) -> None:
    """RouterOS keeps references by id, so renaming an item must not break who points at it."""
    device.invalidate_indexes()
    for path, menu in device.menus.items():
        fields = [f.name for f in menu.fields if f.ref == ref and f.kind in ("ref", "reflist")]
        if not fields or path not in device.tables:
            continue
        for item in device.table(path).items.values():
            for name in fields:
                value = item.get(name)
                if isinstance(value, str) and old in value.split(","):
                    item[name] = ",".join(new if v == old else v for v in value.split(","))


def unique_hooks(path: str, keys: tuple[str, ...]) -> Hooks:
    class _Unique(Hooks):
        def validate(
            self, device: Device, num: int, item: dict[str, Any], old: dict[str, Any] | None
        ) -> None:
            require_unique(device, path, num, item, keys, errors.ALREADY_HAVE)

    return _Unique()


def ros_duration(seconds: int) -> str:
    """RouterOS' time value as printed: 1w2d3h4m5s, 0s for zero."""
    out = ""
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            out += f"{seconds // size}{unit}"
            seconds %= size
    return out or "0s"


def dhcp_client(
    device: Device, mac: str, server: str, host_name: str | None = None, address: str | None = None
) -> dict[str, Any]:
    """A client asks ``server`` for DHCP: what RouterOS does to its lease table (test control).

    A MAC with a static lease on the server gets that lease (only its last-seen moves); any other
    MAC gets a dynamic lease (``dynamic=yes``, ``status=bound``) with the next free address of the
    server's pool, renewed in place when the MAC asks again. No pool: no lease (RouterOS logs the
    offer failure and stores nothing).
    """
    path = "ip/dhcp-server/lease"
    mac = mac.upper()
    with device.lock:
        table = device.table(path)
        mine = [
            (num, item)
            for num, item in table.items.items()
            if str(item.get("mac-address", "")).upper() == mac
            and item.get("server", "all") in (server, "all")
        ]
        servers = [v for _, v in device.rows("ip/dhcp-server") if v.get("name") == server]
        if not servers:
            raise errors.RosError(errors.NO_SUCH_ITEM, errors.CAT_MISSING)
        lease_time = 1800
        if mine:
            num, item = mine[0]
        else:
            pool_name = servers[0].get("address-pool")
            pools = [v for _, v in device.rows("ip/pool") if v.get("name") == pool_name]
            if not pools:
                return {}
            used = {str(i.get("address")) for i in table.items.values() if i.get("address")}
            address = address or _free_address(str(pools[0].get("ranges", "")), used)
            if address is None:
                return {}
            num = table.counter[0]
            table.counter[0] += 1
            item = {"address": address, "mac-address": mac, "server": server, "dynamic": True}
            table.items[num] = item
            device._reindex(path, num, None, item)
        item["_seen_at"] = time.time()
        item["_expires_at"] = time.time() + lease_time
        item["active-address"] = item.get("address")
        item["active-mac-address"] = mac
        if host_name:
            item["host-name"] = host_name
        device._changed(path, "set" if mine else "add", num)
        return {k: v for k, v in item.items() if not k.startswith("_")}


def _free_address(ranges: str, used: set[str]) -> str | None:
    for part in ranges.split(","):
        if "/" in part:
            hosts = list(ipaddress.IPv4Network(part, strict=False).hosts())
        else:
            lo, _, hi = part.partition("-")
            first, last = ipaddress.IPv4Address(lo), ipaddress.IPv4Address(hi or lo)
            hosts = [ipaddress.IPv4Address(i) for i in range(int(first), int(last) + 1)]
        for ip in hosts:
            if str(ip) not in used:
                return str(ip)
    return None
