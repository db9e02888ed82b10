"""Desired state computed from a Network and its reservations (pure functions).

``router_entries`` lists every RouterOS item one Network needs, each carrying the comment tag
that identifies its owner; ``routersync`` turns the difference to the router into commands.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from trellis.api.network import NetworkSpec, PXEOptions

DEFAULT_TAG_PREFIX = "trellis"

# Menus in dependency order: an item only refers to items of earlier menus.
BRIDGE = "/interface/bridge"
VLAN = "/interface/vlan"
BRIDGE_PORT = "/interface/bridge/port"
ADDRESS = "/ip/address"
POOL = "/ip/pool"
DHCP_SERVER = "/ip/dhcp-server"
DHCP_NETWORK = "/ip/dhcp-server/network"
DHCP_RELAY = "/ip/dhcp-relay"
DHCP_OPTION = "/ip/dhcp-server/option"
LEASE = "/ip/dhcp-server/lease"
DNS_STATIC = "/ip/dns/static"
MENU_ORDER = (
    BRIDGE,
    VLAN,
    BRIDGE_PORT,
    ADDRESS,
    POOL,
    DHCP_SERVER,
    DHCP_NETWORK,
    DHCP_RELAY,
    DHCP_OPTION,
    LEASE,
    DNS_STATIC,
)

# Per-host boot options on a RouterOS DHCP server: one /ip/dhcp-server/option item per field,
# referenced from the host's static lease (dhcp-option). Only fields that need no client matching
# fit a static lease; the per-architecture and iPXE fields are served by dnsmasq only.
ROUTER_PXE_CODES = (("next_server", 66), ("boot_file", 67), ("root_path", 17))


def option_value(text: str) -> str:
    """A text option in RouterOS option-value syntax.

    GUESS (not in the reference): a string literal is written in single quotes, e.g. 'ipxe.efi'.
    Values reaching here match BootFileName/RootPath/IPAddress, which exclude quotes.
    """
    if "'" in text or "\\" in text:
        raise ValueError(f"{text!r} cannot be written as a RouterOS option value")
    return f"'{text}'"


@dataclass(frozen=True)
class Host:
    """A reservation that holds an address (IPAM said ok)."""

    key: str  # "<namespace>/<name>"
    mac: str  # AA:BB:CC:DD:EE:FF
    ip: str
    hostname: str | None = None
    pxe: PXEOptions | None = None
    default_gateway: bool = True
    boot: bool = True  # False: no boot options at all for this host (reservation pxe.enabled)

    def short_name(self) -> str | None:
        return self.hostname.split(".", 1)[0] if self.hostname else None


@dataclass(frozen=True)
class Entry:
    """One RouterOS item we want. ``fields`` value None means "must not be set"."""

    menu: str
    tag: str
    fields: tuple[tuple[str, str | None], ...]
    owner: str | None = None  # reservation key for per-reservation items

    def field_map(self) -> dict[str, str | None]:
        return dict(self.fields)


def make_tag(prefix: str, network: str, role: str, owner: str | None = None) -> str:
    return f"{prefix}:{network}:{role}" + (f":{owner}" if owner else "")


def network_tag_prefix(prefix: str, network: str) -> str:
    return f"{prefix}:{network}:"


def fqdn(hostname: str, domain: str | None) -> str:
    if "." in hostname or not domain:
        return hostname
    return f"{hostname}.{domain}"


def server_name(network: str) -> str:
    """Name of this Network's pool, DHCP server and relay on the router."""
    return f"trellis-{network}"


def option_name(network: str, key: str, code: int) -> str:
    """Name of one reservation's option item (unique per router: names are keys in RouterOS)."""
    digest = hashlib.sha256(key.encode()).hexdigest()[:10]
    return f"trellis-{network}-{digest}-{code}"


def host_options(network: str, host: Host) -> list[tuple[str, int, str]]:
    """(name, code, value) of the options a host's own boot fields need on a RouterOS server."""
    if not host.boot or host.pxe is None:
        return []
    out = []
    for attr, code in ROUTER_PXE_CODES:
        value = getattr(host.pxe, attr)
        if value:
            out.append((option_name(network, host.key, code), code, option_value(str(value))))
    return out


def bridge_name(network: str, spec: NetworkSpec) -> str:
    return spec.bridge or f"trellis-{network}"


def _entry(menu: str, tag: str, owner: str | None = None, **fields: str | None) -> Entry:
    return Entry(menu, tag, tuple(sorted((k.replace("_", "-"), v) for k, v in fields.items())), owner)


def _csv(values: Sequence[str] | None) -> str | None:
    return ",".join(values) if values else None


def router_entries(prefix: str, network: str, spec: NetworkSpec, hosts: Iterable[Host]) -> list[Entry]:
    """Everything one Network needs on its Router, in MENU_ORDER."""
    tag = lambda role, owner=None: make_tag(prefix, network, role, owner)  # noqa: E731
    net = ipaddress.ip_network(spec.cidr)
    bridge = bridge_name(network, spec)
    dhcp = spec.dhcp
    server = dhcp.server if dhcp else "none"
    entries = [_entry(BRIDGE, tag("bridge"), name=bridge)]
    port = spec.interface
    if spec.vlan is not None and spec.interface:
        port = f"{bridge}-v{spec.vlan}"
        entries.append(_entry(VLAN, tag("vlan"), name=port, vlan_id=str(spec.vlan), interface=spec.interface))
    if port:
        entries.append(_entry(BRIDGE_PORT, tag("port"), bridge=bridge, interface=port))
    if spec.gateway:
        entries.append(
            _entry(ADDRESS, tag("address"), address=f"{spec.gateway}/{net.prefixlen}", interface=bridge)
        )

    if dhcp and server == "router":
        pool = None
        if dhcp.range:
            pool = server_name(network)
            entries.append(
                _entry(POOL, tag("pool"), name=pool, ranges=f"{dhcp.range.start}-{dhcp.range.end}")
            )
        pxe = dhcp.pxe or PXEOptions()
        entries.append(
            _entry(
                DHCP_SERVER,
                tag("dhcp-server"),
                name=server_name(network),
                interface=bridge,
                address_pool=pool or "static-only",
                lease_time=dhcp.lease_time,
                disabled="false",
            )
        )
        entries.append(
            _entry(
                DHCP_NETWORK,
                tag("dhcp-network"),
                address=str(net),
                gateway=spec.gateway,
                dns_server=_csv(dhcp.dns),
                domain=dhcp.domain,
                ntp_server=_csv(dhcp.ntp),
                next_server=pxe.next_server,
                boot_file_name=pxe.boot_file,
            )
        )
        sorted_hosts = sorted(hosts, key=lambda h: h.key)
        lease_options: dict[str, str | None] = {}
        for host in sorted_hosts:
            options = host_options(network, host)
            for name, code, value in options:
                entries.append(
                    _entry(
                        DHCP_OPTION,
                        tag(f"option-{code}", host.key),
                        host.key,
                        name=name,
                        code=str(code),
                        value=value,
                    )
                )
            lease_options[host.key] = ",".join(name for name, _, _ in options) or None
        for host in sorted_hosts:
            entries.append(
                _entry(
                    LEASE,
                    tag("lease", host.key),
                    host.key,
                    address=host.ip,
                    mac_address=host.mac,
                    server=server_name(network),
                    dhcp_option=lease_options[host.key],
                )
            )
    elif dhcp and server == "relay" and dhcp.relay:
        entries.append(
            _entry(
                DHCP_RELAY,
                tag("relay"),
                name=server_name(network),
                interface=bridge,
                dhcp_server=dhcp.relay.server_address,
                local_address=spec.gateway,
                disabled="false",
            )
        )

    publish = spec.dns.publish_reservations if spec.dns else True
    if publish and server in ("router", "relay", "none"):
        domain = dhcp.domain if dhcp else None
        for host in sorted(hosts, key=lambda h: h.key):
            if host.hostname:
                entries.append(
                    _entry(
                        DNS_STATIC,
                        tag("dns", host.key),
                        host.key,
                        name=fqdn(host.hostname, domain),
                        address=host.ip,
                    )
                )
    return entries


def fingerprint(value: object) -> str:
    """Stable digest of any JSON-able desired state (skip work when nothing changed)."""
    blob = json.dumps(value, sort_keys=True, default=repr, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()
