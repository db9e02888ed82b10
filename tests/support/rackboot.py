"""Virtual servers booting through a Trellis release: the objects, the rack and each boot's stages.

Shared by tests/integration/release/test_4_rack.py and the boot benchmark (hack/bench/boot_e2e.py).
Everything lives in the boot service's namespace, because discovered machines are created there.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.bmc import free_tcp_port, free_udp_ports
from tests.support.httpfiles import FileServer, serving
from tests.support.rackenv import (
    BOOT_BRIDGE,
    BOOT_CIDR,
    BOOT_GATEWAY,
    BOOT_PREFIX,
    GUEST_DIR,
    Rack,
    masquerade_to_host,
    running_rack,
    wait_stage,
)
from tests.support.release import BOOT_NODE_PORT, RELEASE_NAMESPACE, get_json

NS = RELEASE_NAMESPACE
NETWORK = "rack-boot"
CLUSTER = "rack"
USER, PASSWORD = "rackadmin", "rack-secret"
RULE = "rack-rule"
RULE_PREFIX = "52:54:00:c0"
# Per-stage deadlines (TCG on 2 busy cores; docs/lab.md has the idle timings).
POWER_ON, SCRIPT, KERNEL, CONFIG, INSTALLED, API, PROVISIONED = 60, 240, 240, 240, 420, 180, 120


@dataclass(frozen=True)
class Server:
    name: str
    uuid: str
    mac: str
    ip: str
    firmware: str  # bios | uefi
    protocol: str  # ipmi | redfish
    approval: str  # discovered (approved by the test), known (TalosDevice made in advance), rule
    # The BareMetalHost's bootSource; None: PXE once, the Talos install flow.
    boot_source: dict[str, str] | None = None
    role: str = "controlplane"
    # Stand-in faults, set through the machine's SMBIOS OEM strings (docs/lab.md).
    faults: tuple[str, ...] = ()
    # False: the machine has a BMC in the rack but no BareMetalHost (found by DHCP discovery).
    managed: bool = True


def server(
    n: int, name: str, firmware: str, protocol: str, approval: str, role: str = "controlplane", **kw: Any
) -> Server:
    """Machine number ``n`` (1-99): its SMBIOS UUID, MAC and reserved address follow from ``n``;
    machines approved by the rule get the rule's MAC prefix, the others a prefix it does not match."""
    prefix = RULE_PREFIX if approval == "rule" else "52:54:01:c0"
    return Server(
        name,
        f"7e1a0000-0000-4000-8000-{n:012d}",
        f"{prefix}:00:{n:02x}",
        f"10.198.0.{10 + n}",
        firmware,
        protocol,
        approval,
        role=role,
        **kw,
    )


# The rack of test_4_rack.py and `make up`: one machine per approval path and BMC kind, one
# control plane and two workers. Workers upgrade in the order of their TalosDevices' names
# (mac-525400c00003 for vm-redfish, then mac-525401c00001 for vm-bios): the second one, vm-bios,
# fails its upgrades.
RACK_SERVERS = [
    server(1, "vm-bios", "bios", "ipmi", "discovered", role="worker", faults=("upgrade-rollback",)),
    server(2, "vm-uefi", "uefi", "ipmi", "known"),
    server(3, "vm-redfish", "bios", "redfish", "rule", role="worker"),
]
CONTROL_PLANE = RACK_SERVERS[1]
# A machine with a BMC in the rack but no BareMetalHost, left off: powered on (its power button is
# the rack's control endpoint), it asks for DHCP and is discovered (docs/baremetalhost.md).
UNREGISTERED_SERVER = server(4, "vm-new", "bios", "ipmi", "discovered", role="worker", managed=False)
ENDPOINT_NAME = "rack.trellis.test"


@dataclass
class Lab:
    release: Any  # tests.integration.release.conftest.Release
    rack: Rack
    assets: FileServer
    servers: list[Server]
    applied_at: float = 0.0  # time.monotonic() when the objects were applied

    @property
    def kubectl(self) -> Callable[..., subprocess.CompletedProcess[str]]:
        return self.release.cp.kubectl

    def get(self, kind: str, name: str) -> dict[str, Any] | None:
        proc = self.kubectl("get", kind, name, "-n", NS, "-o", "json", check=False)
        return json.loads(proc.stdout) if proc.returncode == 0 else None

    def device(self, server: Server) -> dict[str, Any] | None:
        label = f"talos.trellis.dev/mac={server.mac.replace(':', '-')}"
        items = get_json(self.release.cp, "talosdevices", "-n", NS, "-l", label)["items"]
        return items[0] if items else None

    def diagnostics(self, server: Server) -> Callable[[], str]:
        def show() -> str:
            machine = self.rack.machine(server.name)
            bmh = self.get("baremetalhosts", server.name) or {}
            dev = self.device(server) or {}
            pods = self.kubectl("get", "pods", "-n", NS, "-o", "wide", check=False).stdout
            return (
                f"machine: power={machine.get('power')} boots={machine.get('boots')} "
                f"exits={machine.get('exits')}\n"
                f"BareMetalHost status: {json.dumps(bmh.get('status'), indent=1)[-1500:]}\n"
                f"TalosDevice: {json.dumps({'spec': dev.get('spec'), 'status': dev.get('status')})[-1500:]}\n"
                f"pods:\n{pods}\nserial log tail:\n{self.rack.serial_tail(server.name)}"
            )

        return show


@dataclass(frozen=True)
class NodeAddresses:
    """What the rack needs to know of the node: labnode's NodeSpec or node.json have these."""

    name: str
    node_ip: str
    host_ip: str
    netns: str


def node_addresses(spec: Any) -> NodeAddresses:
    return NodeAddresses(spec.name, spec.node_ip, spec.host_ip, spec.netns)


def objects(
    node: NodeAddresses, servers: list[Server], assets_url: str, bmc_ports: dict[str, int]
) -> list[dict[str, Any]]:
    """The Secret, Network, TalosCluster, BareMetalHosts (and TalosDevices of known machines)."""
    assets_url = assets_url.rstrip("/")
    boot_url = f"http://{node.node_ip}:{BOOT_NODE_PORT}"
    docs: list[dict[str, Any]] = [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "rack-bmc", "namespace": NS},
            "stringData": {"username": USER, "password": PASSWORD},
        },
        {
            "apiVersion": "trellis.dev/v1alpha1",
            "kind": "Network",
            "metadata": {"name": NETWORK},
            "spec": {
                "cidr": BOOT_CIDR,
                "gateway": BOOT_GATEWAY,
                "dhcp": {
                    "server": "dnsmasq",
                    "range": {"start": "10.198.0.100", "end": "10.198.0.199"},
                    "leaseTime": "1h",
                    "domain": "rack.test",
                    "pxe": {
                        "bootFile": "undionly.kpxe",
                        "efiBootFile": "ipxe.efi",
                        "ipxeScriptURL": f"{boot_url}/boot.ipxe",
                    },
                },
                # Machines without a reservation asking here become discovered hosts (vm-new).
                "discovery": {"namespace": NS},
                "dnsmasq": {
                    "nodeName": node.name,
                    "interface": BOOT_BRIDGE,
                    "address": BOOT_GATEWAY,
                    "tftp": {"enabled": True},
                },
            },
        },
        {
            "apiVersion": "trellis.dev/v1alpha1",
            "kind": "TalosCluster",
            "metadata": {"name": CLUSTER, "namespace": NS},
            "spec": {
                # A DNS name, so several control planes need not own one endpoint address; the
                # machines resolve it through their /etc/hosts (workers ask its trustd there).
                "endpoint": f"https://{ENDPOINT_NAME}:6443",
                "talosVersion": "v1.12.0",
                "kubernetesVersion": "1.35.0",
                "installDisk": "/dev/vda",
                "strictBoot": True,
                "autoApproval": [
                    {
                        "name": "rack-rule",
                        "macPrefix": RULE_PREFIX,
                        "cidr": BOOT_CIDR,
                        "role": "worker",
                        "limit": 1,
                    }
                ],
                "patches": {
                    "strategic": [
                        {
                            "machine": {
                                "network": {
                                    "extraHostEntries": [{"ip": CONTROL_PLANE.ip, "aliases": [ENDPOINT_NAME]}]
                                }
                            }
                        }
                    ]
                },
                "boot": {
                    "assetsURL": assets_url,
                    "extraKernelArgs": [
                        "console=ttyS0",
                        f"trellis.standin.image={assets_url}/standin.iso",
                    ],
                },
            },
        },
    ]
    for server in (s for s in servers if s.managed):
        port = bmc_ports[server.name]
        address = (
            f"ipmi://{node.host_ip}:{port}"
            if server.protocol == "ipmi"
            else f"redfish+http://{node.host_ip}:{port}/redfish/v1/Systems/{server.uuid}"
        )
        docs.append(
            {
                "apiVersion": "trellis.dev/v1alpha1",
                "kind": "BareMetalHost",
                "metadata": {"name": server.name, "namespace": NS},
                "spec": {
                    "bmc": {"address": address, "credentialsName": "rack-bmc"},
                    "bootMACAddress": server.mac,
                    "online": True,
                    "bootMode": "UEFI" if server.firmware == "uefi" else "legacy",
                    "nics": [
                        {
                            "name": "eth0",
                            "role": "boot",
                            "mac": server.mac,
                            "networkRef": NETWORK,
                            "ip": server.ip,
                        }
                    ],
                    "bootSource": server.boot_source or {"type": "pxe", "mode": "once"},
                },
            }
        )
        if server.approval == "known":
            docs.append(
                {
                    "apiVersion": "trellis.dev/v1alpha1",
                    "kind": "TalosDevice",
                    "metadata": {"name": server.name, "namespace": NS},
                    "spec": {
                        "mac": server.mac,
                        "clusterRef": CLUSTER,
                        "role": server.role,
                        "hostname": server.name,
                        "approval": "Approved",
                        "bareMetalHostRef": server.name,
                    },
                }
            )
    return docs


def rack_config(node: NodeAddresses, servers: list[Server], bmc_ports: dict[str, int]) -> dict[str, Any]:
    return {
        "network": {"netns": node.netns, "bridge": BOOT_BRIDGE, "address": f"{BOOT_GATEWAY}/{BOOT_PREFIX}"},
        "machines": [
            {
                "name": s.name,
                "mac": s.mac,
                "firmware": s.firmware,
                "serial": f"RACK-{s.name.upper()}",
                "uuid": s.uuid,
                # A real server retries its boot order; SeaBIOS does when told to.
                "reboot_timeout_ms": 3000,
                "faults": list(s.faults),
                "bmc": {
                    "protocol": s.protocol,
                    "port": bmc_ports[s.name],
                    "username": USER,
                    "password": PASSWORD,
                },
            }
            for s in servers
        ],
    }


@contextmanager
def rack_lab(
    release: Any,
    servers: list[Server],
    state: Path,
    extra_objects: Callable[[str], list[dict[str, Any]]] | None = None,
) -> Iterator[Lab]:
    """The rack's machines and BMCs, the guest images served to them, and the release's objects.

    ``extra_objects(assets_url)`` are applied first (the caller deletes them). Everything else is
    deleted again at the end; the machines are powered off by their BareMetalHosts'
    deletion before the rack itself stops.
    """
    if not (GUEST_DIR / "standin.iso").is_file():
        raise AssertionError(
            f"{GUEST_DIR} has no guest images: `make guest` (part of `make test`) builds them"
        )
    node = node_addresses(release.node.spec)
    udp = iter(free_udp_ports(len(servers)))
    ports = {s.name: (next(udp) if s.protocol == "ipmi" else free_tcp_port()) for s in servers}
    with (
        serving(GUEST_DIR, host=node.host_ip) as assets,
        running_rack(rack_config(node, servers, ports), state, node.host_ip, free_tcp_port()) as rack,
    ):
        masquerade_to_host(node.netns, node.host_ip)
        lab = Lab(release, rack, assets, servers)
        extra = extra_objects(assets.base_url) if extra_objects else []
        release.cp.apply([*extra, *objects(node, servers, assets.base_url, ports)])
        lab.applied_at = time.monotonic()
        try:
            yield lab
        finally:
            # Hosts deleted here must not come back as discovered hosts while the Network lives on.
            off = json.dumps({"spec": {"discovery": {"enabled": False}}})
            lab.kubectl("patch", "networks", NETWORK, "--type=merge", "-p", off, check=False)
            for kind in ("baremetalhosts", "talosdevices"):
                lab.kubectl(
                    "delete",
                    kind,
                    "--all",
                    "-n",
                    NS,
                    "--wait=true",
                    "--timeout=120s",
                    check=False,
                    timeout=150,
                )
            lab.kubectl(
                "delete", "talosclusters", CLUSTER, "-n", NS, "--timeout=60s", check=False, timeout=90
            )
            lab.kubectl("delete", "networks", NETWORK, "--timeout=60s", check=False, timeout=90)
            lab.kubectl("delete", "secret", "rack-bmc", "-n", NS, check=False)


def stage_of(lab: Lab, server: Server, stage: str, **expect: str) -> Callable[[], Any]:
    def probe() -> Any:
        for s in lab.rack.stages(server.name):
            if s.name == stage and all(s.fields.get(k) == v for k, v in expect.items()):
                return s
        return None

    return probe


def boot_through(lab: Lab, server: Server, started: float | None = None) -> dict[str, float]:
    """Follow one machine from power-on to Provisioned; seconds from ``started`` to each stage."""
    show = lab.diagnostics(server)
    t0 = time.monotonic() if started is None else started
    timings: dict[str, float] = {}

    def reached(stage: str, probe: Callable[[], Any], timeout: float) -> Any:
        value = wait_stage(f"{server.name}: {stage}", probe, timeout, show)
        timings[stage] = round(time.monotonic() - t0, 1)
        return value

    def powered() -> bool:
        m = lab.rack.machine(server.name)
        return bool(m.get("power") == "on" and m.get("pid"))

    reached("BMC power-on", powered, POWER_ON)

    def device_seen() -> dict[str, Any] | None:
        dev = lab.device(server)
        return dev if dev and (dev.get("status") or {}).get("observed") else None

    def leased() -> bool:
        # dnsmasq's log says so; a config change rolls its Pod and the new Pod's log starts empty,
        # so iPXE's own report of the address on the serial console counts as well.
        logs = lab.kubectl("logs", "-n", NS, "-l", f"trellis.dev/network={NETWORK}", "--tail=-1", check=False)
        if any(
            "DHCPACK" in line and server.ip in line and server.mac in line
            for line in logs.stdout.splitlines()
        ):
            return True
        return f"net0: {server.ip}/" in lab.rack.serial_tail(server.name, 1_000_000)

    reached("DHCP lease from the managed dnsmasq", leased, SCRIPT)
    dev = reached("iPXE script from the boot service", device_seen, SCRIPT)
    observed = dev["status"]["observed"]
    assert observed.get("ip") == server.ip, f"the boot service saw the boot from {observed}, not {server.ip}"

    if server.approval == "discovered":
        assert dev["metadata"]["name"].startswith("mac-") and dev["spec"].get("approval") == "Pending"
        approve = {"spec": {"approval": "Approved", "role": server.role, "bareMetalHostRef": server.name}}
        name = dev["metadata"]["name"]
        lab.kubectl("patch", "talosdevices", name, "-n", NS, "--type=merge", "-p", json.dumps(approve))
    elif server.approval == "rule":

        def auto_approved() -> dict[str, Any] | None:
            d = lab.device(server)
            return d if d and d["spec"].get("approval") == "Approved" else None

        approved = reached("auto-approval", auto_approved, 60)
        assert approved["metadata"]["labels"].get("talos.trellis.dev/approved-by-rule") == "rack-rule"

    reached("kernel and initramfs", stage_of(lab, server, "init", mode="pxe"), KERNEL)
    reached("Linux DHCP lease", stage_of(lab, server, "lease", ip=server.ip), KERNEL)
    reached("config served", stage_of(lab, server, "config", source="url"), CONFIG)
    reached("installed and rebooted from disk", stage_of(lab, server, "installed"), INSTALLED)

    def phase_installed() -> bool:
        d = lab.device(server)
        return bool(d and (d.get("status") or {}).get("phase") == "Installed")

    reached("Talos API answers (TalosDevice Installed)", phase_installed, API)

    def provisioned() -> bool:
        bmh = lab.get("baremetalhosts", server.name) or {}
        return ((bmh.get("status") or {}).get("provisioning") or {}).get("state") == "Provisioned"

    reached("BareMetalHost Provisioned", provisioned, PROVISIONED)
    boots = lab.rack.machine(server.name)["boots"]
    # Boots the guest caused itself (its reboot after installing, firmware retries) restart QEMU
    # with cause guest-reset; every other boot was a power-on or reset sent through the BMC.
    by_bmc = [b for b in boots if b.get("cause") != "guest-reset"]
    assert len(by_bmc) == 1, f"expected one install boot by the BMC, got {boots}"
    assert boots[0]["device"] == "pxe", f"the install boot was not a network boot: {boots[0]}"
    return timings
