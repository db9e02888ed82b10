"""dhcp.server: dnsmasq — the operator's ConfigMap and Deployment, and the ConfigMap's config
served by the real dnsmasq to a real DHCP client in network namespaces."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.dhcp import DhcpClient
from tests.support.kube import ControlPlane
from tests.support.netns import can_use_netns, netlab
from tests.support.network import network, reservation, reservation_status, unique, wait_ready
from tests.support.operators import OperatorProcess, start_operator
from tests.support.wait import wait_for
from trellis.operators.network import ifpicker

CIDR = "10.78.0.0/24"
SERVER_IP = "10.78.0.2"
SCRIPT_URL = "http://10.78.0.2:8080/boot.ipxe"


@pytest.fixture(scope="module")
def paths(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("dnsmasq-run")


@pytest.fixture(scope="module")
def operator(crds: ControlPlane, system_ns: str, paths: Path) -> Iterator[OperatorProcess]:
    env = {
        "TRELLIS_NAMESPACE": system_ns,
        "TRELLIS_DNSMASQ_INTERFACE_CONF": str(paths / "interface.conf"),
        "TRELLIS_DNSMASQ_LEASE_FILE": str(paths / "leases"),
        "TRELLIS_DNSMASQ_IMAGE": "registry.example/dnsmasq:test",
        "TRELLIS_OPERATOR_IMAGE": "registry.example/trellis:test",
        # These Deployments never run (their images do not exist); the rendered config is run by
        # the real dnsmasq in test_dnsmasq_netns.py, and the release tests run the Pods.
        "TRELLIS_DNSMASQ_AWAIT_ROLLOUT": "false",
    }
    op = start_operator(crds, "trellis.operators.network.handlers", paths / "logs", env=env)
    yield op
    op.stop()


def _objects(crds: ControlPlane, ns: str, name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    cm = json.loads(crds.kubectl("get", "configmap", name, "-n", ns, "-o", "json").stdout)
    dep = json.loads(crds.kubectl("get", "deployment", name, "-n", ns, "-o", "json").stdout)
    return cm, dep


def _passes(op: OperatorProcess, net: str) -> int:
    return op.logs().count(f"Network {net}: pass complete")


def test_dnsmasq_backend(crds: ControlPlane, system_ns: str, namespace: str, operator: OperatorProcess,
                         paths: Path) -> None:  # fmt: skip
    net = unique("pxe")
    dhcp = {
        "server": "dnsmasq",
        "range": {"start": "10.78.0.100", "end": "10.78.0.150"},
        "domain": "pxe.test",
        "dns": [SERVER_IP],
        "pxe": {"ipxeScriptURL": SCRIPT_URL},
    }
    placement = {"address": SERVER_IP, "interface": "lan0", "nodeName": "rack-1"}
    crds.apply(network(net, CIDR, None, gateway="10.78.0.1", dhcp=dhcp, dnsmasq=placement))
    crds.apply(
        [
            reservation("node-a", net, "52:54:00:78:00:01", hostname="node-a"),
            reservation("node-b", net, "52:54:00:78:00:02", hostname="node-b", defaultGateway=False),
        ],
        namespace,
    )
    wait_ready(crds, namespace, ["node-a", "node-b"])
    assert (crds.condition("networks", net, "Ready") or {}).get("reason") == "DnsmasqConfigured"
    name = f"dnsmasq-{net}"
    cm, dep = _objects(crds, system_ns, name)
    config = cm["data"]["dnsmasq.conf"]
    assert "dhcp-host=52:54:00:78:00:01,set:known,10.78.0.3,node-a,1h" in config
    assert "host-record=node-a.pxe.test,node-a,10.78.0.3" in config
    pod = dep["spec"]["template"]
    assert (
        pod["metadata"]["annotations"]["trellis.dev/config-checksum"]
        == hashlib.sha256(config.encode()).hexdigest()
    )
    spec = pod["spec"]
    assert spec["hostNetwork"] is True and spec["nodeName"] == "rack-1"
    container = spec["containers"][0]
    assert container["readinessProbe"]["tcpSocket"] == {"host": SERVER_IP, "port": 53}
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert "SYS_ADMIN" not in container["securityContext"]["capabilities"]["add"]
    assert spec["initContainers"][0]["command"][:3] == ["python", "-m", "trellis.operators.network.ifpicker"]
    owner = cm["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"]) == ("Network", net)
    assert reservation_status(crds, namespace, "node-a")["ip"] == "10.78.0.3"  # .2 is dnsmasq's own

    # The ConfigMap's configuration, as is, under the real dnsmasq.
    reason = can_use_netns()
    if reason is None:
        with netlab() as lab:
            server_ns, client_ns = lab.namespace("s"), lab.namespace("c")
            lab.veth(server_ns, "lan0", client_ns, "eth0")
            argv = ["--netns", server_ns, "--cidr", CIDR, "--address", SERVER_IP, "--interface", "lan0"]
            assert ifpicker.main([*argv, "--write", str(paths / "interface.conf")]) == 0
            conf = paths / "dnsmasq.conf"
            conf.write_text(config)
            log = paths / "dnsmasq.log"
            proc = lab.start(server_ns, ["dnsmasq", "-k", f"--conf-file={conf}"], log)
            wait_for(
                lambda: "started" in log.read_text() or proc.poll() is not None, timeout=20, what="dnsmasq"
            )
            client = DhcpClient(lab, client_ns, "eth0", paths)
            lease = client.request("52:54:00:78:00:01")
            assert lease is not None and (lease["ip"], lease["hostname"]) == ("10.78.0.3", "node-a")
            assert lease["boot_file"] == "undionly.kpxe" and lease["router"] == "10.78.0.1"
            ipxe = client.request("52:54:00:78:00:01", user_class="iPXE")
            assert ipxe is not None and ipxe["boot_file"] == SCRIPT_URL
            no_gw = client.request("52:54:00:78:00:02")
            assert no_gw is not None and no_gw["ip"] == "10.78.0.4" and no_gw.get("router") is None

    # A change rolls the Deployment through the checksum; a no-op pass writes nothing.
    old_checksum = pod["metadata"]["annotations"]["trellis.dev/config-checksum"]
    crds.kubectl("patch", "dhcpreservation.trellis.dev", "node-b", "-n", namespace, "--type=merge",
                 "-p", '{"spec":{"ip":"10.78.0.40"}}')  # fmt: skip
    wait_for(lambda: reservation_status(crds, namespace, "node-b").get("ip") == "10.78.0.40", timeout=30)
    cm, dep = _objects(crds, system_ns, name)
    assert "10.78.0.40" in cm["data"]["dnsmasq.conf"]
    assert dep["spec"]["template"]["metadata"]["annotations"]["trellis.dev/config-checksum"] != old_checksum
    versions = (cm["metadata"]["resourceVersion"], dep["metadata"]["resourceVersion"])
    passes = _passes(operator, net)
    crds.kubectl("annotate", "network.trellis.dev", net, "example.com/poke=1", "--overwrite")
    wait_for(lambda: _passes(operator, net) > passes, timeout=30, what="another reconcile pass")
    cm, dep = _objects(crds, system_ns, name)
    assert (cm["metadata"]["resourceVersion"], dep["metadata"]["resourceVersion"]) == versions

    # Deleting the Network (after its reservations) removes the dnsmasq objects.
    crds.kubectl("delete", "dhcpreservation.trellis.dev", "node-a", "node-b", "-n", namespace)
    crds.kubectl("delete", "network.trellis.dev", net, "--timeout=60s")
    assert crds.kubectl("get", "configmap", name, "-n", system_ns, check=False).returncode != 0
    assert crds.kubectl("get", "deployment", name, "-n", system_ns, check=False).returncode != 0
