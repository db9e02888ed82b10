"""Pick (or create) the host interface that carries a Network, for the managed dnsmasq.

Runs on the node, in the dnsmasq Pod's init container (host network, CAP_NET_ADMIN):

    python -m trellis.operators.network.ifpicker --cidr 10.0.10.0/24 --address 10.0.10.2 \
        --parent eth0 --vlan 10 --write /run/trellis/interface.conf

Order of preference: the named ``--interface`` (created as a VLAN sub-interface of ``--parent``
when missing); an interface that already holds an address inside the CIDR; a new
``<parent>.<vlan>`` sub-interface. The address is added when missing; nothing is ever removed.
"""

from __future__ import annotations

import argparse
import ipaddress
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyroute2 import IPRoute, NetNS

IFNAMSIZ = 15


class PickError(RuntimeError):
    pass


@dataclass
class Picked:
    interface: str
    created: bool = False
    address_added: bool = False


def _links(ipr: Any) -> dict[str, int]:
    return {link.get_attr("IFLA_IFNAME"): link["index"] for link in ipr.get_links()}


def _addresses(ipr: Any) -> list[tuple[int, ipaddress.IPv4Interface]]:
    out = []
    for msg in ipr.get_addr(family=2):
        addr = msg.get_attr("IFA_ADDRESS")
        out.append((msg["index"], ipaddress.IPv4Interface(f"{addr}/{msg['prefixlen']}")))
    return out


def vlan_name(parent: str, vlan: int) -> str:
    name = f"{parent}.{vlan}"
    if len(name) > IFNAMSIZ:
        name = f"{parent[: IFNAMSIZ - len(str(vlan)) - 1]}.{vlan}"
    return name


def pick(
    ipr: Any,
    cidr: str,
    address: str | None = None,
    interface: str | None = None,
    parent: str | None = None,
    vlan: int | None = None,
) -> Picked:
    net = ipaddress.IPv4Network(cidr)
    if address is not None and ipaddress.IPv4Address(address) not in net:
        raise PickError(f"address {address} is outside {net}")
    links = _links(ipr)
    by_index = {v: k for k, v in links.items()}
    holders = [(idx, iface) for idx, iface in _addresses(ipr) if iface.ip in net]
    picked: Picked | None = None
    if interface:
        if interface not in links:
            picked = Picked(_create_vlan(ipr, interface, parent, vlan, links), created=True)
        else:
            picked = Picked(interface)
    elif holders:
        preferred = [h for h in holders if address and str(h[1].ip) == address]
        idx = (preferred or sorted(holders))[0][0]
        picked = Picked(by_index[idx])
    elif parent and vlan:
        name = vlan_name(parent, vlan)
        picked = Picked(name, created=name not in links)
        if picked.created:
            _create_vlan(ipr, name, parent, vlan, links)
    else:
        raise PickError(
            f"no interface holds an address in {net}; set dnsmasq.interface, or parentInterface and vlan"
        )
    index = _links(ipr)[picked.interface]
    ipr.link("set", index=index, state="up")
    have = [iface for idx, iface in _addresses(ipr) if idx == index and iface.ip in net]
    if address and not any(str(i.ip) == address for i in have):
        ipr.addr("add", index=index, address=address, prefixlen=net.prefixlen)
        picked.address_added = True
    elif not address and not have:
        raise PickError(f"{picked.interface} has no address in {net}; set dnsmasq.address")
    return picked


def _create_vlan(ipr: Any, name: str, parent: str | None, vlan: int | None, links: dict[str, int]) -> str:
    if not parent or not vlan:
        raise PickError(f"interface {name} does not exist and no parentInterface/vlan to create it from")
    if parent not in links:
        raise PickError(f"parent interface {parent} does not exist")
    if len(name) > IFNAMSIZ:
        raise PickError(f"interface name {name} is longer than {IFNAMSIZ} characters")
    ipr.link("add", ifname=name, kind="vlan", link=links[parent], vlan_id=vlan)
    return name


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--cidr", required=True)
    ap.add_argument("--address")
    ap.add_argument("--interface")
    ap.add_argument("--parent")
    ap.add_argument("--vlan", type=int)
    ap.add_argument("--netns", help="operate inside this named network namespace")
    ap.add_argument("--write", help="write 'interface=<name>' (dnsmasq syntax) to this file")
    args = ap.parse_args(argv)
    ipr = NetNS(args.netns) if args.netns else IPRoute()
    try:
        picked = pick(ipr, args.cidr, args.address, args.interface, args.parent, args.vlan)
    except PickError as exc:
        print(f"ifpicker: {exc}", file=sys.stderr)
        return 2
    finally:
        ipr.close()
    if args.write:
        path = Path(args.write)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"interface={picked.interface}\n")
    print(f"interface={picked.interface} created={picked.created} address_added={picked.address_added}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
