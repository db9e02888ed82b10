"""/ip, /interface and /system menus (RouterOS 7 field names from the reference, section 9)."""

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
from rossim.schema import Field, Flag, Menu, View, disabled_flag, dynamic_flag, expand_vlan_ids

PORT_EXISTS = "failure: device already added as bridge port"  # GUESS

COMMENT = Field("comment", quoted=True)
DISABLED = Field("disabled", "bool", default=False, detail=False)
DYNAMIC = Field("dynamic", "bool", readonly=True, default=False, detail=False)
RUNNING = Field("running", "bool", readonly=True, default=True, detail=False)
INVALID = Field("invalid", "bool", readonly=True, default=False, detail=False)
FRAME_TYPES = ("admit-all", "admit-only-untagged-and-priority-tagged", "admit-only-vlan-tagged")


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
        return {"status": "waiting", "last-seen": "never", "blocked": False, "radius": False}

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


def iface(name: str = "interface", required: bool = True) -> Field:
    return Field(name, "ref", ref="interface", required=required)


def network_menus() -> list[Menu]:
    rx = disabled_flag()
    running = Flag("R", "running", lambda v: bool(v.get("running")))
    invalid = Flag("I", "invalid", lambda v: bool(v.get("invalid")))
    dyn = dynamic_flag()
    no_add = frozenset({"set", "print", "find", "enable", "disable", "unset", "getall", "listen"})
    eth_fields = (
        Field("name", quoted=True),
        Field("default-name", readonly=True, quoted=True),
        Field("mtu", "int", default=1500, lo=0, hi=65535),
        Field("mac-address", readonly=True),
        COMMENT,
        DISABLED,
        RUNNING,
    )
    return [
        Menu(
            "interface/ethernet",
            eth_fields,
            "name",
            True,
            (rx, running),
            ("name", "mtu", "mac-address"),
            verbs=no_add,
            hooks=InterfaceHooks("interface/ethernet", "ether"),
        ),
        Menu(
            "interface/bridge",
            (
                Field("name", quoted=True),
                Field("mtu", "int", lo=0, hi=65535),
                Field("actual-mtu", "int", readonly=True),
                Field("mac-address", readonly=True),
                Field("protocol-mode", "enum", default="rstp", choices=("none", "stp", "rstp", "mstp")),
                Field("vlan-filtering", "bool", default=False),
                Field("pvid", "int", default=1, lo=1, hi=4094),
                Field("frame-types", "enum", default="admit-all", choices=FRAME_TYPES),
                Field("ingress-filtering", "bool", default=True),
                Field("admin-mac", "mac"),
                Field("auto-mac", "bool", default=True),
                Field("igmp-snooping", "bool", default=False),
                Field("dhcp-snooping", "bool", default=False),
                COMMENT,
                DISABLED,
                RUNNING,
            ),
            "name",
            True,
            (rx, running),
            ("name", "mtu", "mac-address"),
            hooks=InterfaceHooks("interface/bridge", "bridge"),
        ),
        Menu(
            "interface/bridge/port",
            (
                Field("interface", "ref", ref="interface", required=True),
                Field("bridge", "ref", ref="interface/bridge", required=True),
                Field("pvid", "int", default=1, lo=1, hi=4094),
                Field("frame-types", "enum", default="admit-all", choices=FRAME_TYPES),
                Field("ingress-filtering", "bool", default=True),
                COMMENT,
                DISABLED,
                DYNAMIC,
            ),
            None,
            False,
            (rx, dyn),
            ("interface", "bridge", "pvid"),
            hooks=BridgePortHooks(),
        ),
        Menu(
            "interface/bridge/vlan",
            (
                Field("bridge", "ref", ref="interface/bridge", required=True),
                Field("vlan-ids", "vlanids", required=True),
                Field("tagged", "reflist", ref="interface"),
                Field("untagged", "reflist", ref="interface"),
                Field("current-tagged", readonly=True),
                Field("current-untagged", readonly=True),
                COMMENT,
                DISABLED,
                DYNAMIC,
            ),
            None,
            False,
            (rx, dyn),
            ("bridge", "vlan-ids", "tagged", "untagged"),
            hooks=BridgeVlanHooks(),
        ),
        Menu(
            "interface/vlan",
            (
                Field("name", quoted=True),
                Field("mtu", "int", default=1500, lo=0, hi=65535),
                Field("actual-mtu", "int", readonly=True),
                Field("mac-address", readonly=True),
                Field(
                    "arp",
                    "enum",
                    default="enabled",
                    choices=("enabled", "disabled", "proxy-arp", "reply-only", "local-proxy-arp"),
                ),
                Field("vlan-id", "int", required=True, lo=1, hi=4095),
                Field("interface", "ref", ref="interface", required=True),
                Field("use-service-tag", "bool", default=False),
                Field("mvrp", "bool", default=False),
                COMMENT,
                DISABLED,
                RUNNING,
            ),
            "name",
            True,
            (rx, running),
            ("name", "mtu", "vlan-id", "interface"),
            hooks=InterfaceHooks("interface/vlan", "vlan"),
        ),
        Menu(
            "ip/address",
            (
                Field("address", "cidr", required=True),
                Field("network", "ip"),
                Field("interface", "ref", ref="interface", required=True),
                Field("actual-interface", readonly=True),
                COMMENT,
                DISABLED,
                DYNAMIC,
                INVALID,
            ),
            None,
            False,
            (rx, invalid, dyn),
            ("address", "network", "interface"),
            hooks=AddressHooks(),
        ),
        Menu(
            "ip/pool",
            (
                Field("name", quoted=True),
                Field("ranges", "ranges", required=True),
                Field("next-pool", "ref", ref="ip/pool", ref_extra=("none",)),
                Field("total", "int", readonly=True, detail=False),
                Field("used", "int", readonly=True, detail=False),
                Field("available", "int", readonly=True, detail=False),
                COMMENT,
            ),
            "name",
            False,
            (),
            ("name", "ranges"),
            hooks=PoolHooks("ip/pool", "pool"),
        ),
        Menu(
            "ip/dhcp-server",
            (
                Field("name", quoted=True),
                Field("interface", "ref", ref="interface", required=True),
                Field(
                    "address-pool", "ref", ref="ip/pool", default="static-only", ref_extra=("static-only",)
                ),
                Field("lease-time", "time", default="30m"),
                Field(
                    "authoritative",
                    "enum",
                    default="yes",
                    choices=("yes", "no", "after-2sec-delay", "after-10sec-delay"),
                ),
                Field("add-arp", "bool", default=False),
                Field("bootp-support", "enum", default="static", choices=("none", "static", "dynamic")),
                Field("lease-script", quoted=True),
                Field("relay", "ip"),
                Field("use-radius", "enum", default="no", choices=("yes", "no", "accounting")),
                COMMENT,
                DISABLED,
                INVALID,
                DYNAMIC,
            ),
            "name",
            False,
            (rx, invalid, dyn),
            ("name", "interface", "address-pool", "lease-time"),
            hooks=NamedHooks("ip/dhcp-server", "dhcp", (("interface", "relay"),)),
        ),
        Menu(
            "ip/dhcp-server/lease",
            (
                Field("address", "ip"),
                Field("mac-address", "mac", required=True),
                Field("client-id"),
                Field("address-lists"),
                Field("server", "ref", ref="ip/dhcp-server", default="all", ref_extra=("all",)),
                Field("dhcp-option", "reflist", ref="ip/dhcp-server/option"),
                Field("dhcp-option-set"),
                Field("lease-time", "time"),
                Field("always-broadcast", "bool"),
                Field("block-access", "bool"),
                Field("rate-limit"),
                Field("use-src-mac", "bool"),
                Field("insert-queue-before"),
                Field("allow-dual-stack-queue", "bool"),
                Field("status", readonly=True),
                Field("last-seen", readonly=True),
                Field("host-name", readonly=True),
                Field("active-address", readonly=True),
                Field("active-mac-address", readonly=True),
                Field("blocked", "bool", readonly=True, detail=False),
                Field("radius", "bool", readonly=True, detail=False),
                COMMENT,
                DISABLED,
                DYNAMIC,
            ),
            None,
            False,
            (
                rx,
                Flag("R", "radius", lambda v: bool(v.get("radius"))),
                dyn,
                Flag("B", "blocked", lambda v: bool(v.get("blocked"))),
            ),
            ("address", "mac-address", "server", "status"),
            extra_commands=frozenset({"make-static"}),
            hooks=LeaseHooks(),
        ),
        Menu(
            "ip/dhcp-server/network",
            (
                Field("address", "network", required=True),
                Field("gateway", "iplist"),
                Field("netmask", "int", lo=0, hi=32),
                Field("dns-server", "iplist"),
                Field("wins-server", "iplist"),
                Field("ntp-server", "iplist"),
                Field("caps-manager", "iplist"),
                Field("domain", quoted=True),
                Field("next-server", "ip"),
                Field("boot-file-name", quoted=True),
                Field("dhcp-option", "reflist", ref="ip/dhcp-server/option"),
                Field("dhcp-option-set"),
                Field("dns-none", "bool", default=False),
                COMMENT,
                DYNAMIC,
            ),
            None,
            False,
            (dyn,),
            ("address", "gateway", "dns-server"),
            hooks=_unique_hooks("ip/dhcp-server/network", ("address",)),
        ),
        Menu(
            "ip/dhcp-server/option",
            (
                Field("name", quoted=True, required=True),
                Field("code", "int", required=True, lo=1, hi=254),
                Field("value", quoted=True),
                Field("force", "bool", default=False),
                COMMENT,
            ),
            "name",
            False,
            (),
            ("name", "code", "value"),
            hooks=NamedHooks("ip/dhcp-server/option", "option"),
        ),
        Menu(
            "ip/dhcp-relay",
            (
                Field("name", quoted=True),
                Field("interface", "ref", ref="interface", required=True),
                Field("dhcp-server", "iplist", required=True),
                Field("local-address", "ip", default="0.0.0.0"),
                Field("delay-threshold", "time"),
                Field("add-relay-info", "bool", default=False),
                COMMENT,
                DISABLED,
                INVALID,
            ),
            "name",
            False,
            (rx, invalid),
            ("name", "interface", "dhcp-server", "local-address"),
            hooks=NamedHooks("ip/dhcp-relay", "relay"),
        ),
        Menu(
            "ip/dns/static",
            (
                Field("name", quoted=True),
                Field("regexp", quoted=True),
                Field(
                    "type",
                    "enum",
                    default="A",
                    choices=("A", "AAAA", "CNAME", "FWD", "MX", "NS", "NXDOMAIN", "SRV", "TXT"),
                ),
                Field("address", "ip"),
                Field("cname", quoted=True),
                Field("forward-to"),
                Field("text", quoted=True),
                Field("ttl", "time", default="1d"),
                Field("match-subdomain", "bool", default=False),
                Field("address-list"),
                COMMENT,
                DISABLED,
                DYNAMIC,
            ),
            None,
            False,
            (dyn, rx),
            ("name", "regexp", "type", "address", "ttl"),
            hooks=Hooks(),
        ),
        Menu(
            "ip/firewall/nat",
            (
                Field("chain", required=True),
                Field(
                    "action",
                    "enum",
                    default="accept",
                    choices=(
                        "accept",
                        "masquerade",
                        "dst-nat",
                        "src-nat",
                        "redirect",
                        "netmap",
                        "return",
                        "jump",
                        "passthrough",
                        "log",
                        "same",
                        "endpoint-independent-nat",
                    ),
                ),
                Field(
                    "protocol", "enum", choices=("tcp", "udp", "icmp", "gre", "ipsec-esp", "sctp", "udp-lite")
                ),
                Field("src-address"),
                Field("dst-address"),
                Field("src-port"),
                Field("dst-port"),
                Field("in-interface", "ref", ref="interface"),
                Field("out-interface", "ref", ref="interface"),
                Field("to-addresses"),
                Field("to-ports"),
                Field("log", "bool", default=False),
                Field("log-prefix", quoted=True),
                Field("place-before", write_only=True),
                Field("bytes", "int", readonly=True, detail=False),
                Field("packets", "int", readonly=True, detail=False),
                COMMENT,
                DISABLED,
                DYNAMIC,
                INVALID,
            ),
            None,
            False,
            (rx, invalid, dyn),
            ("chain", "action", "protocol", "out-interface"),
            hooks=NatHooks(),
        ),
        Menu(
            "system/identity",
            (Field("name", quoted=True, default="MikroTik"),),
            None,
            False,
            verbs=frozenset({"set", "print", "getall"}),
            singleton=True,
        ),
        Menu(
            "system/resource",
            tuple(
                Field(n, "int", readonly=True, cli="human")
                if n.endswith(("-memory", "-space"))
                else Field(n, readonly=True)
                for n in (
                    "uptime",
                    "version",
                    "build-time",
                    "factory-software",
                    "free-memory",
                    "total-memory",
                    "cpu",
                    "cpu-count",
                    "cpu-frequency",
                    "cpu-load",
                    "free-hdd-space",
                    "total-hdd-space",
                    "architecture-name",
                    "board-name",
                    "platform",
                )
            ),
            None,
            False,
            verbs=frozenset({"print", "getall"}),
            singleton=True,
            hooks=ResourceHooks(),
        ),
    ]


def _unique_hooks(path: str, keys: tuple[str, ...]) -> Hooks:
    class _Unique(Hooks):
        def validate(
            self, device: Device, num: int, item: dict[str, Any], old: dict[str, Any] | None
        ) -> None:
            require_unique(device, path, num, item, keys, errors.ALREADY_HAVE)

    return _Unique()
