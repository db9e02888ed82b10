"""The rendered dnsmasq configuration under the real dnsmasq, with real clients, in namespaces.

Server and client live in their own network namespaces joined by a veth pair; the interface
picker prepares the server side exactly as the dnsmasq Pod's init container does on a node.
"""

from __future__ import annotations

import hashlib
import ipaddress
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pyroute2 import NetNS

from tests.support.dhcp import DhcpClient, dig, probe, tftp_get
from tests.support.netns import NetLab, can_use_netns, netlab
from tests.support.wait import wait_for
from trellis.api.network import NetworkSpec, PXEOptions
from trellis.operators.network import ifpicker
from trellis.operators.network.desired import Host
from trellis.operators.network.dnsmasq import Settings, render

IPXE_DIR = Path("/usr/lib/ipxe")
CIDR = "10.77.0.0/24"
SERVER_IP = "10.77.0.2"
SCRIPT_URL = "http://10.77.0.2:8080/boot.ipxe"
HTTP_BOOT_URL = "http://10.77.0.2:8080/ipxe.efi"

NETWORK: dict[str, Any] = {
    "cidr": CIDR,
    "gateway": "10.77.0.1",
    "dhcp": {
        "server": "dnsmasq",
        "range": {"start": "10.77.0.100", "end": "10.77.0.150"},
        "domain": "lab.test",
        "dns": [SERVER_IP],
        "ntp": ["10.77.0.1"],
        "pxe": {
            "ipxeScriptURL": SCRIPT_URL,
            "httpBootURL": HTTP_BOOT_URL,
            "arm64EfiBootFile": "arm64/ipxe.efi",
        },
    },
    "dnsmasq": {"address": SERVER_IP},
}
HOSTS = [
    Host("rack/node-a", "52:54:00:77:00:01", "10.77.0.10", "node-a"),
    Host(
        "rack/bmc-b",
        "52:54:00:77:00:02",
        "10.77.0.11",
        "bmc-b",
        pxe=PXEOptions(boot_file="custom.kpxe", root_path="iscsi:10.77.0.1::::iqn.2000-02.com.mikrotik:live"),
        default_gateway=False,
    ),
    Host(
        "rack/node-a-eno2",
        "52:54:00:77:00:03",
        "10.77.0.12",
        "node-a-eno2",
        default_gateway=False,
        boot=False,
    ),
]


def _requirements() -> str | None:
    missing = [tool for tool in ("dnsmasq", "udhcpc", "tftp", "dig") if shutil.which(tool) is None]
    if missing:
        return f"missing programs {missing} (hack/install-deps.sh installs them)"
    if not (IPXE_DIR / "undionly.kpxe").exists():
        return "Debian ipxe package missing (/usr/lib/ipxe)"
    return can_use_netns()


@dataclass
class Served:
    lab: NetLab
    server_ns: str
    client_ns: str
    client: DhcpClient
    workdir: Path
    config: str


def serve(tmp: Path, network: dict, hosts: list[Host]) -> Iterator[Served]:
    reason = _requirements()
    if reason:
        pytest.skip(reason)
    with netlab() as lab:
        server_ns, client_ns = lab.namespace("s"), lab.namespace("c")
        lab.veth(server_ns, "lan0", client_ns, "eth0")
        iface_conf = tmp / "interface.conf"
        with (
            NetNS(server_ns) as ipr,
            pytest.raises(ifpicker.PickError, match="no interface holds an address"),
        ):
            ifpicker.pick(ipr, CIDR, address=SERVER_IP)
        argv = ["--netns", server_ns, "--cidr", CIDR, "--address", SERVER_IP, "--interface", "lan0"]
        assert ifpicker.main([*argv, "--write", str(iface_conf)]) == 0
        assert iface_conf.read_text() == "interface=lan0\n"
        with NetNS(server_ns) as ipr:
            again = ifpicker.pick(ipr, CIDR, address=SERVER_IP)
        assert (again.interface, again.created, again.address_added) == ("lan0", False, False)
        settings = Settings(
            interface_conf=str(iface_conf), lease_file=str(tmp / "leases"), tftp_root=str(IPXE_DIR)
        )
        config = render("lab", NetworkSpec.model_validate(network), hosts, settings)
        conf_path = tmp / "dnsmasq.conf"
        conf_path.write_text(config)
        check = lab.run(server_ns, ["dnsmasq", "--test", f"--conf-file={conf_path}"])
        assert check.returncode == 0, check.stderr
        log = tmp / "dnsmasq.log"
        proc = lab.start(server_ns, ["dnsmasq", "-k", f"--conf-file={conf_path}"], log)
        wait_for(
            lambda: "started" in log.read_text() or proc.poll() is not None, timeout=20, what="dnsmasq start"
        )
        assert proc.poll() is None, log.read_text()
        yield Served(lab, server_ns, client_ns, DhcpClient(lab, client_ns, "eth0", tmp), tmp, config)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    yield from serve(tmp_path_factory.mktemp("dnsmasq"), NETWORK, HOSTS)


def test_reserved_mac_gets_its_address_hostname_and_boot_file(served: Served) -> None:
    lease = served.client.request("52:54:00:77:00:01")
    assert lease is not None
    assert lease["ip"] == "10.77.0.10"
    assert lease["hostname"] == "node-a"
    assert lease["domain"] == "lab.test"
    assert lease["router"] == "10.77.0.1"
    assert lease["dns"] == SERVER_IP
    assert lease["ntpsrv"] == "10.77.0.1"
    assert lease["subnet"] == "255.255.255.0"
    assert lease["boot_file"] == "undionly.kpxe"
    assert lease["siaddr"] == SERVER_IP


def test_ipxe_user_class_gets_the_script_url(served: Served) -> None:
    lease = served.client.request("52:54:00:77:00:01", user_class="iPXE")
    assert lease is not None and lease["boot_file"] == SCRIPT_URL


@pytest.mark.parametrize(
    "arch,boot_file",
    [(0, "undionly.kpxe"), (7, "ipxe.efi"), (9, "ipxe.efi"), (11, "arm64/ipxe.efi"), (16, HTTP_BOOT_URL)],
)
def test_client_architecture_selects_the_boot_file(served: Served, arch: int, boot_file: str) -> None:
    lease = served.client.request("52:54:00:77:00:01", arch=arch)
    assert lease is not None and lease["boot_file"] == boot_file


def test_uefi_http_boot_reply_names_httpclient(served: Served) -> None:
    client_address(served)
    replies = probe(served.lab, served.client_ns, "eth0", "52:54:00:77:00:01", {60: "HTTPClient", 93: "0010"})
    assert len(replies) == 1, replies
    # Requested in the parameter list, the file name comes as option 67 rather than in the header.
    assert bytes.fromhex(replies[0]["options"]["67"]).rstrip(b"\0").decode() == HTTP_BOOT_URL
    assert bytes.fromhex(replies[0]["options"]["60"]) == b"HTTPClient"


def test_ipxe_wins_over_architecture(served: Served) -> None:
    lease = served.client.request("52:54:00:77:00:01", user_class="iPXE", arch=7)
    assert lease is not None and lease["boot_file"] == SCRIPT_URL


def test_per_host_overrides_and_no_gateway(served: Served) -> None:
    lease = served.client.request("52:54:00:77:00:02", extra_options=(17,))
    assert lease is not None
    assert lease["ip"] == "10.77.0.11" and lease["hostname"] == "bmc-b"
    assert lease["boot_file"] == "custom.kpxe"
    assert lease.get("rootpath") == "iscsi:10.77.0.1::::iqn.2000-02.com.mikrotik:live"
    assert lease.get("router") is None
    # Settings the host does not override still come from the Network.
    efi = served.client.request("52:54:00:77:00:02", arch=7)
    assert efi is not None and efi["boot_file"] == "ipxe.efi"


@pytest.mark.parametrize("arch,user_class", [(None, None), (7, None), (11, None), (16, None), (None, "iPXE")])
def test_host_with_boot_disabled_gets_its_address_but_no_boot_options(
    served: Served, arch: int | None, user_class: str | None
) -> None:
    lease = served.client.request("52:54:00:77:00:03", arch=arch, user_class=user_class, extra_options=(17,))
    assert lease is not None
    assert lease["ip"] == "10.77.0.12" and lease["hostname"] == "node-a-eno2"
    assert not lease.get("boot_file") and not lease.get("bootfile"), lease
    assert lease.get("rootpath") is None and lease.get("router") is None


def test_unknown_mac_gets_a_dynamic_lease(served: Served) -> None:
    lease = served.client.request("52:54:00:77:00:99")
    assert lease is not None
    ip = ipaddress.IPv4Address(lease["ip"])
    assert ipaddress.IPv4Address("10.77.0.100") <= ip <= ipaddress.IPv4Address("10.77.0.150")
    assert lease.get("hostname") is None


def client_address(served: Served) -> None:
    """Give the client a static address for the TFTP and DNS checks (DHCP tests do not need one)."""
    with NetNS(served.client_ns) as ipr:
        idx = ipr.link_lookup(ifname="eth0")[0]
        if not any(a.get_attr("IFA_ADDRESS") == "10.77.0.200" for a in ipr.get_addr(index=idx)):
            ipr.addr("add", index=idx, address="10.77.0.200", prefixlen=24)


def test_tftp_serves_the_debian_ipxe_binaries(served: Served) -> None:
    client_address(served)
    for name in ("undionly.kpxe", "ipxe.efi", "snponly.efi"):
        want = hashlib.sha256((IPXE_DIR / name).read_bytes()).hexdigest()
        assert tftp_get(served.lab, served.client_ns, SERVER_IP, name, served.workdir / f"got-{name}") == want


def test_dns_answers_reservation_names(served: Served) -> None:
    client_address(served)
    assert dig(served.lab, served.client_ns, SERVER_IP, "node-a.lab.test") == ["10.77.0.10"]
    assert dig(served.lab, served.client_ns, SERVER_IP, "bmc-b.lab.test") == ["10.77.0.11"]
    assert dig(served.lab, served.client_ns, SERVER_IP, "10.0.77.10.in-addr.arpa", "PTR") == [
        "node-a.lab.test."
    ]
    assert dig(served.lab, served.client_ns, SERVER_IP, "nobody.lab.test") == []


def test_proxy_mode_hands_out_no_addresses(tmp_path: Path) -> None:
    proxy = {**NETWORK, "dhcp": {**NETWORK["dhcp"], "mode": "proxy"}}
    proxy["dhcp"].pop("range")
    for served in serve(tmp_path, proxy, HOSTS):
        assert "dhcp-range=10.77.0.0,proxy,255.255.255.0" in served.config
        assert served.client.request("52:54:00:77:00:99", tries=2) is None
        assert served.client.request("52:54:00:77:00:01", tries=2) is None
        client_address(served)
        # A PXE client still gets the boot menu from the proxy, pointing at this server.
        replies = probe(
            served.lab, served.client_ns, "eth0", "52:54:00:77:00:01", {60: "PXEClient", 93: "0000"}
        )
        assert len(replies) == 1, replies
        reply = replies[0]
        assert reply["yiaddr"] == "0.0.0.0"
        assert bytes.fromhex(reply["options"]["60"]) == b"PXEClient"
        pxe_menu = bytes.fromhex(reply["options"]["43"])
        assert b"Network boot" in pxe_menu and bytes(map(int, SERVER_IP.split("."))) in pxe_menu


def test_picker_creates_a_vlan_subinterface(tmp_path: Path) -> None:
    reason = _requirements()
    if reason:
        pytest.skip(reason)
    with netlab() as lab:
        ns = lab.namespace("v")
        peer = lab.namespace("p")
        lab.veth(ns, "trunk0", peer, "trunk0")
        probe = lab.run(
            ns, ["ip", "link", "add", "link", "trunk0", "name", "probe.9", "type", "vlan", "id", "9"]
        )
        if probe.returncode != 0:
            pytest.skip(f"this kernel cannot create VLAN interfaces (8021q): {probe.stderr.strip()}")
        lab.run(ns, ["ip", "link", "del", "probe.9"], check=True)
        with NetNS(ns) as ipr:
            first = ifpicker.pick(ipr, CIDR, address=SERVER_IP, parent="trunk0", vlan=42)
            again = ifpicker.pick(ipr, CIDR, address=SERVER_IP, parent="trunk0", vlan=42)
        assert (first.interface, first.created, first.address_added) == ("trunk0.42", True, True)
        assert (again.interface, again.created, again.address_added) == ("trunk0.42", False, False)
        shown = lab.run(ns, ["ip", "-d", "addr", "show", "trunk0.42"], check=True).stdout
        assert "vlan protocol 802.1Q id 42" in shown and f"{SERVER_IP}/24" in shown
