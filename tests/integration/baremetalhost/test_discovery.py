"""Hardware discovery end to end: real DHCP clients, real dnsmasq and the RouterOS simulator, both
operators as real processes against the apiserver, and adoption through the IPMI emulator.

A MAC that asks a discovery-enabled Network for DHCP without a reservation becomes exactly one
BareMetalHost without BMC (state Unmanaged); a MAC some host already has, in any namespace, does
not; setting spec.bmc adopts the host (Registering -> Available).
"""

from __future__ import annotations

import json
import secrets as pysecrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.baremetalhost.conftest import Operator, bmh, events, host, secret, wait_state
from tests.support.bmc import IpmiEmulator
from tests.support.dhcp import DhcpClient
from tests.support.kube import ControlPlane
from tests.support.netns import can_use_netns, netlab
from tests.support.network import network, router_objects, unique
from tests.support.operators import OperatorProcess, start_operator
from tests.support.rossim import RosSim, start_rossim
from tests.support.wait import wait_for
from trellis.operators.network import ifpicker

pytestmark = pytest.mark.integration
NETWORK_MODULE = "trellis.operators.network.handlers"
CIDR, SERVER_IP = "10.79.0.0/24", "10.79.0.2"
UNKNOWN, KNOWN = "52:54:00:79:00:99", "52:54:00:79:00:01"


@pytest.fixture(scope="module")
def system_ns(crds: ControlPlane) -> Iterator[str]:
    name = f"trellis-disc-{pysecrets.token_hex(3)}"
    crds.kubectl("create", "namespace", name)
    yield name
    crds.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture(scope="module")
def paths(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("discovery")
    (path / "dnsmasq-logs").mkdir()
    return path


@pytest.fixture(scope="module")
def network_operator(crds: ControlPlane, system_ns: str, paths: Path) -> Iterator[OperatorProcess]:
    env = {
        "TRELLIS_NAMESPACE": system_ns,
        "TRELLIS_DNSMASQ_INTERFACE_CONF": str(paths / "interface.conf"),
        "TRELLIS_DNSMASQ_LEASE_FILE": str(paths / "leases"),
        "TRELLIS_DNSMASQ_AWAIT_ROLLOUT": "false",  # the test runs the rendered config itself...
        "TRELLIS_DNSMASQ_LOG_DIR": str(paths / "dnsmasq-logs"),  # ...and keeps its log where kubelet would
    }
    op = start_operator(crds, NETWORK_MODULE, paths / "logs", env=env)
    yield op
    op.stop()


def _hosts_with_mac(cp: ControlPlane, mac: str) -> list[str]:
    items = json.loads(cp.kubectl("get", "baremetalhosts.trellis.dev", "-A", "-o", "json").stdout)["items"]
    return sorted(
        f"{o['metadata']['namespace']}/{o['metadata']['name']}"
        for o in items
        if str(o["spec"].get("bootMACAddress", "")).lower() == mac
    )


def _observed(cp: ControlPlane, net: str) -> list[dict[str, Any]]:
    return list((cp.get("networks", net).get("status") or {}).get("observedLeases") or [])


@pytest.fixture
def other_ns(crds: ControlPlane) -> Iterator[str]:
    name = f"disc-other-{pysecrets.token_hex(3)}"
    crds.kubectl("create", "namespace", name)
    yield name
    crds.kubectl("delete", "namespace", name, "--wait=false", check=False)


def test_dnsmasq_client_becomes_one_unmanaged_host_then_adopted(
    crds: ControlPlane, namespace: str, other_ns: str, system_ns: str, paths: Path,
    network_operator: OperatorProcess, operator: Operator, ipmi: IpmiEmulator,
) -> None:  # fmt: skip
    reason = can_use_netns()
    if reason:
        pytest.skip(reason)
    cp, net = crds, unique("disc")
    # A host that already exists elsewhere: its MAC is never discovered.
    host(cp, other_ns, "known", ipmi.address("ipmi8"), boot_mac=KNOWN)
    dhcp = {"server": "dnsmasq", "range": {"start": "10.79.0.100", "end": "10.79.0.150"}}
    placement = {"address": SERVER_IP, "interface": "lan0"}
    discovery = {"namespace": namespace, "maxPerMinute": 5}
    cp.apply(network(net, CIDR, None, dhcp=dhcp, dnsmasq=placement, discovery=discovery))
    try:
        config = wait_for(
            lambda: (cp.kubectl("get", "configmap", f"dnsmasq-{net}", "-n", system_ns, "-o",
                                "jsonpath={.data.dnsmasq\\.conf}", check=False).stdout or None),
            timeout=60, what="the dnsmasq ConfigMap",
        )  # fmt: skip
        with netlab() as lab:
            server_ns, client_ns = lab.namespace("s"), lab.namespace("c")
            lab.veth(server_ns, "lan0", client_ns, "eth0")
            argv = ["--netns", server_ns, "--cidr", CIDR, "--address", SERVER_IP, "--interface", "lan0"]
            assert ifpicker.main([*argv, "--write", str(paths / "interface.conf")]) == 0
            conf = paths / "dnsmasq.conf"
            conf.write_text(config)
            log = paths / "dnsmasq-logs" / f"dnsmasq-{net}.log"
            proc = lab.start(server_ns, ["dnsmasq", "-k", f"--conf-file={conf}"], log)
            wait_for(
                lambda: "started" in log.read_text() or proc.poll() is not None, timeout=20, what="dnsmasq"
            )
            client = DhcpClient(lab, client_ns, "eth0", paths)
            assert client.request(UNKNOWN) is not None
            assert client.request(UNKNOWN) is not None  # asks twice: still one host
            assert client.request(KNOWN) is not None

            name = "discovered-" + UNKNOWN.replace(":", "")
            wait_for(lambda: {e["mac"] for e in _observed(cp, net)} >= {UNKNOWN, KNOWN}, timeout=60,
                     what="observedLeases")  # fmt: skip
            obj = wait_state(cp, namespace, name, "Unmanaged", timeout=60)
            assert obj["spec"]["bootMACAddress"] == UNKNOWN and "bmc" not in obj["spec"]
            assert obj["metadata"]["labels"]["baremetalhost.trellis.dev/discovered-on"] == net
            ann = obj["metadata"]["annotations"]
            assert ann["baremetalhost.trellis.dev/discovered-ip"].startswith("10.79.0.1")
            assert obj["status"]["operationalStatus"] == "discovered"
            ready = next(c for c in obj["status"]["conditions"] if c["type"] == "Ready")
            assert (ready["status"], ready["reason"]) == ("False", "Unmanaged")
            assert any(e["reason"] == "Discovered" for e in events(cp, namespace, name))

            # Asked again, and the Network now sends discoveries to another namespace: still one.
            assert client.request(UNKNOWN) is not None
            cp.kubectl("patch", "network.trellis.dev", net, "--type=merge",
                       "-p", f'{{"spec":{{"discovery":{{"namespace":"{other_ns}"}}}}}}')  # fmt: skip
            wait_for(lambda: any(e["mac"] == UNKNOWN for e in _observed(cp, net)), timeout=30)
            time.sleep(8)  # a few discovery passes (3 s each in test mode)
            assert _hosts_with_mac(cp, UNKNOWN) == [f"{namespace}/{name}"]
            assert _hosts_with_mac(cp, KNOWN) == [f"{other_ns}/known"]

            # Adoption: BMC credentials and address, and the host goes through the normal lifecycle.
            secret(cp, namespace, "bmc-creds", "admin", "password")
            bmc = {"address": ipmi.address("ipmi9"), "credentialsName": "bmc-creds"}
            cp.kubectl("patch", "baremetalhost.trellis.dev", name, "-n", namespace, "--type=merge",
                       "-p", json.dumps({"spec": {"bmc": bmc}}))  # fmt: skip
            adopted = wait_state(cp, namespace, name, "Available", timeout=90)
            assert adopted["status"]["operationalStatus"] == "OK"
            assert any(e["reason"] == "Adopted" for e in events(cp, namespace, name))
    finally:
        cp.kubectl(
            "delete", "baremetalhosts.trellis.dev", "--all", "-n", namespace, "--wait=false", check=False
        )
        cp.kubectl("delete", "network.trellis.dev", net, "--wait=false", check=False)


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RosSim]:
    s = start_rossim(tmp_path_factory.mktemp("rossim"), tls=False)
    yield s
    s.stop()


def test_routeros_dynamic_lease_becomes_a_host(
    crds: ControlPlane, namespace: str, system_ns: str, sim: RosSim,
    network_operator: OperatorProcess, operator: Operator,
) -> None:  # fmt: skip
    cp, router, net = crds, unique("rtr"), unique("rdisc")
    cp.apply(router_objects(sim, router, system_ns))
    dhcp = {"server": "router", "range": {"start": "10.81.0.100", "end": "10.81.0.150"}}
    cp.apply(network(net, "10.81.0.0/24", router, gateway="10.81.0.1", dhcp=dhcp,
                     discovery={"namespace": namespace}))  # fmt: skip
    try:
        cp.wait_condition("networks", net, "Ready", timeout=90)
        lease = sim.control.dhcp_client("52:54:00:81:00:07", f"trellis-{net}", host_name="pxe-client")
        assert lease["dynamic"] in (True, "true") and lease["address"] == "10.81.0.100"
        name = "discovered-525400810007"
        obj = wait_state(cp, namespace, name, "Unmanaged", timeout=60)
        ann = obj["metadata"]["annotations"]
        assert ann["baremetalhost.trellis.dev/discovered-hostname"] == "pxe-client"
        assert ann["baremetalhost.trellis.dev/discovered-ip"] == "10.81.0.100"
        (observed,) = _observed(cp, net)
        assert (observed["mac"], observed["ip"]) == ("52:54:00:81:00:07", "10.81.0.100")
        # Nothing on the router was touched for it: the dynamic lease is the router's own.
        rows = [
            r for r in sim.control.menu("ip/dhcp-server/lease") if r["mac-address"] == "52:54:00:81:00:07"
        ]
        assert len(rows) == 1 and rows[0]["dynamic"] == "true" and not rows[0].get("comment")
        assert bmh(cp, namespace, name)["spec"]["bootMACAddress"] == "52:54:00:81:00:07"
    finally:
        cp.kubectl(
            "delete", "baremetalhosts.trellis.dev", "--all", "-n", namespace, "--wait=false", check=False
        )
        cp.kubectl("delete", "network.trellis.dev", net, "--wait=false", check=False)
        cp.kubectl("delete", "router.trellis.dev", router, "--wait=false", check=False)


def test_bmc_network_matches_bmcs_to_hosts(
    crds: ControlPlane, namespace: str, system_ns: str, sim: RosSim, ipmi: IpmiEmulator,
    network_operator: OperatorProcess, operator: Operator,
) -> None:  # fmt: skip
    cp, router, net = crds, unique("rtr"), unique("oob")
    cp.apply(router_objects(sim, router, system_ns))
    dhcp = {"server": "router", "range": {"start": "10.82.0.100", "end": "10.82.0.150"}}
    cp.apply(network(net, "10.82.0.0/24", router, gateway="10.82.0.1", dhcp=dhcp,
                     discovery={"purpose": "bmcs", "namespace": namespace}))  # fmt: skip
    bmc = {"address": ipmi.address("ipmi7"), "credentialsName": "bmc-creds", "mac": "52:54:00:82:00:0b"}
    host(cp, namespace, "srv-oob", ipmi.address("ipmi7"), boot_mac="52:54:00:82:00:01", bmc=bmc)
    try:
        cp.wait_condition("networks", net, "Ready", timeout=90)
        sim.control.dhcp_client("52:54:00:82:00:0b", f"trellis-{net}")  # the host's BMC
        sim.control.dhcp_client("52:54:00:82:00:0c", f"trellis-{net}")  # nobody's BMC
        wait_for(lambda: any(e["reason"] == "BMCObserved" for e in events(cp, namespace, "srv-oob")),
                 timeout=60, what="BMCObserved on the host")  # fmt: skip

        def unmatched() -> list[dict[str, Any]]:
            out = cp.kubectl("get", "events", "-A", "-o", "json", "--field-selector",
                             f"involvedObject.name={net},reason=UnmatchedBMC").stdout  # fmt: skip
            return list(json.loads(out)["items"])

        found = wait_for(unmatched, timeout=60, what="UnmatchedBMC on the Network")
        assert "52:54:00:82:00:0c" in found[0]["message"]
        time.sleep(5)
        assert _hosts_with_mac(cp, "52:54:00:82:00:0c") == []  # a BMC alone never becomes a host
        assert {o["metadata"]["name"] for o in json.loads(
            cp.kubectl("get", "baremetalhosts.trellis.dev", "-n", namespace, "-o", "json").stdout)["items"]
        } == {"srv-oob"}  # fmt: skip
    finally:
        cp.kubectl(
            "delete", "baremetalhosts.trellis.dev", "--all", "-n", namespace, "--wait=false", check=False
        )
        cp.kubectl("delete", "network.trellis.dev", net, "--wait=false", check=False)
        cp.kubectl("delete", "router.trellis.dev", router, "--wait=false", check=False)
