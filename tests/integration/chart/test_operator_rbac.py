"""Every operator at work under its own chart ServiceAccount: the chart's RBAC is sufficient.

Each test applies one component's ServiceAccount, roles and bindings as the chart renders them,
starts the operator with a kubeconfig holding only that ServiceAccount's token, drives a
scenario that needs no external device, and checks that the operator got where it should and
that the apiserver refused it nothing.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from tests.integration.chart.conftest import chart_rbac
from tests.support.bmc import EmulatedSystem, IpmiEmulator
from tests.support.bootservice import BootServiceProcess, running_boot_service
from tests.support.kube import ControlPlane
from tests.support.network import network, reservation, router_objects, wait_ready
from tests.support.operators import OperatorProcess, free_port, running_operator
from tests.support.rbac import denials, service_account_access
from tests.support.rossim import start_rossim
from tests.support.wait import wait_for
from trellis.operators.registry import htpasswd

pytestmark = pytest.mark.integration
API = "trellis.dev/v1alpha1"
NAMESPACED_KINDS = ("baremetalhosts", "talosdevices", "talosclusters", "dhcpreservations")
BOOT = "talosdevice-boot"
BOOT_SETS = (
    "talosdevice.bootService.enabled=true",
    "talosdevice.bootService.publicURL=http://127.0.0.1:8080",
)
NO_FINALIZERS = '{"metadata":{"finalizers":null}}'


def unique(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(3)}"


class ChartRbacOperators:
    """Operators started as their chart ServiceAccounts; stopped and their RBAC removed on close."""

    def __init__(self, cp: ControlPlane, namespace: str, workdir: Path, stack: ExitStack) -> None:
        self.cp, self.namespace, self.workdir, self.stack = cp, namespace, workdir, stack
        self.logs: dict[str, Callable[[], str]] = {}
        self.checked = False

    def start(self, component: str, module: str, env: dict[str, str]) -> OperatorProcess:
        """The operator with the chart's environment, ``env`` (faster loops, local paths) on top."""
        chart_rbac(component, self.namespace)  # skips while the chart lacks the component
        access = self.stack.enter_context(
            service_account_access(self.cp, component, self.namespace, self.workdir)
        )
        op = self.stack.enter_context(
            running_operator(
                self.cp,
                module,
                self.workdir / "logs",
                namespace=access.rbac.watch_namespace(),
                env={**access.rbac.workload_env(), **env, **access.env},
            )
        )
        self.logs[module] = op.logs
        # Runs before the operator stops: it releases the finalizers it put on the test's objects.
        self.stack.callback(self._delete_namespaced_objects)
        return op

    def _delete_namespaced_objects(self) -> None:
        kinds = ",".join(f"{k}.trellis.dev" for k in NAMESPACED_KINDS)
        args = ("delete", kinds, "--all", "-n", self.namespace, "--ignore-not-found")
        if self.cp.kubectl(*args, "--timeout=60s", check=False, timeout=90).returncode != 0:
            for ref in self.cp.kubectl(
                "get", kinds, "-n", self.namespace, "-o", "name", check=False
            ).stdout.split():
                self.cp.kubectl(
                    "-n", self.namespace, "patch", ref, "--type=merge", "-p", NO_FINALIZERS, check=False
                )

    def start_boot_service(self) -> BootServiceProcess:
        """The Talos boot service as the chart's talosdevice-boot ServiceAccount, in the namespace."""
        chart_rbac(BOOT, self.namespace, sets=BOOT_SETS, package="talosdevice")
        access = self.stack.enter_context(
            service_account_access(self.cp, BOOT, self.namespace, self.workdir, BOOT_SETS)
        )
        as_boot_service = ControlPlane(kubeconfig=access.kubeconfig, server=self.cp.server)
        service = self.stack.enter_context(
            running_boot_service(as_boot_service, self.workdir / "logs", self.namespace)
        )
        self.logs["boot service"] = service.logs
        return service

    def assert_nothing_refused(self) -> None:
        for what, logs in self.logs.items():
            refused = denials(logs())
            assert not refused, f"{what} was refused requests:\n" + "\n".join(r[:400] for r in refused[:8])
        self.checked = True


@pytest.fixture
def operators(crds: ControlPlane, namespace: str, tmp_path: Path) -> Iterator[ChartRbacOperators]:
    with ExitStack() as stack:
        ops = ChartRbacOperators(crds, namespace, tmp_path, stack)
        yield ops
    if ops.checked:
        ops.assert_nothing_refused()  # what happened while cleaning up and shutting down


def _get(cp: ControlPlane, kind: str, name: str, namespace: str) -> dict[str, Any] | None:
    proc = cp.kubectl("get", kind, name, "-n", namespace, "-o", "json", check=False)
    return json.loads(proc.stdout) if proc.returncode == 0 else None


def _delete_cluster_object(cp: ControlPlane, kind: str, name: str) -> None:
    """Delete while the operator still runs (it releases its finalizer); unblock it if it did not."""
    proc = cp.kubectl(
        "delete", f"{kind}.trellis.dev", name, "--ignore-not-found", "--timeout=60s", check=False, timeout=90
    )
    if proc.returncode != 0:
        cp.kubectl("patch", f"{kind}.trellis.dev", name, "--type=merge", "-p",
                   NO_FINALIZERS, check=False)  # fmt: skip


def _reason(cp: ControlPlane, plural: str, name: str, cond_type: str, namespace: str | None = None) -> str:
    cond = cp.condition(plural, name, cond_type, namespace) or {}
    return f"{cond.get('status')}/{cond.get('reason')}"


# -- network ---------------------------------------------------------------------------------------


def test_network_operator(
    crds: ControlPlane, namespace: str, tmp_path: Path, operators: ChartRbacOperators
) -> None:
    """Router probe (credentials Secret), dnsmasq Network (ConfigMap/Deployment), reservations."""
    sim = start_rossim(tmp_path / "rossim", tls=False)
    router, net = unique("rbac-rtr"), unique("rbac-net")
    try:
        operators.start(
            "network",
            "trellis.operators.network.handlers",
            {
                "TRELLIS_DNSMASQ_INTERFACE_CONF": str(tmp_path / "interface.conf"),
                "TRELLIS_DNSMASQ_LEASE_FILE": str(tmp_path / "leases"),
                "TRELLIS_DNSMASQ_IMAGE": "registry.example/dnsmasq:test",
                "TRELLIS_OPERATOR_IMAGE": "registry.example/trellis:test",
                # Node rack-1 does not exist: the Deployment is checked, never run.
                "TRELLIS_DNSMASQ_AWAIT_ROLLOUT": "false",
            },
        )
        try:
            crds.apply(router_objects(sim, router, namespace))
            crds.wait_condition("routers", router, "Ready", timeout=60)
            assert crds.get("routers", router)["status"]["reachable"] is True

            dhcp = {"server": "dnsmasq", "range": {"start": "10.79.0.100", "end": "10.79.0.150"}}
            placement = {"address": "10.79.0.2", "interface": "lan0", "nodeName": "rack-1"}
            crds.apply(network(net, "10.79.0.0/24", None, gateway="10.79.0.1", dhcp=dhcp, dnsmasq=placement))
            crds.apply(reservation("node-a", net, "52:54:00:79:00:01", hostname="node-a"), namespace)
            wait_ready(crds, namespace, ["node-a"])
            assert crds.get("dhcpreservations", "node-a", namespace)["status"]["ip"] == "10.79.0.3"
            crds.wait_condition("networks", net, "Ready", timeout=60)
            assert _reason(crds, "networks", net, "Ready") == "True/DnsmasqConfigured"
            config = _get(crds, "configmap", f"dnsmasq-{net}", namespace)
            assert config and "52:54:00:79:00:01" in config["data"]["dnsmasq.conf"]
            assert _get(crds, "deployment", f"dnsmasq-{net}", namespace)

            crds.kubectl("delete", "dhcpreservations.trellis.dev", "node-a", "-n", namespace)
            crds.kubectl("delete", "networks.trellis.dev", net, "--timeout=60s", timeout=90)
            assert _get(crds, "configmap", f"dnsmasq-{net}", namespace) is None
            assert _get(crds, "deployment", f"dnsmasq-{net}", namespace) is None
            operators.assert_nothing_refused()
        finally:
            _delete_cluster_object(crds, "networks", net)
            _delete_cluster_object(crds, "routers", router)
    finally:
        sim.stop()


# -- baremetalhost ---------------------------------------------------------------------------------


def test_baremetalhost_operator(
    crds: ControlPlane, namespace: str, tmp_path: Path, operators: ChartRbacOperators
) -> None:
    """Registration over IPMI (credentials Secret), status, owned DHCPReservations, deletion."""
    net = unique("rbac-bmh")
    with IpmiEmulator(tmp_path / "ipmi", [EmulatedSystem("node")]) as ipmi:
        operators.start(
            "baremetalhost",
            "trellis.operators.baremetalhost.handlers",
            {
                "TRELLIS_BMH_POLL_INTERVAL": "3",
                "TRELLIS_BMH_FAST_POLL": "0.5",
                "TRELLIS_BMH_BACKOFF_BASE": "1",
                "TRELLIS_BMH_BACKOFF_CAP": "4",
                "TRELLIS_BMH_POWER_TIMEOUT": "25",
                "TRELLIS_BMH_DELETE_POWER_OFF_ATTEMPTS": "2",
            },
        )
        try:
            crds.apply({"apiVersion": API, "kind": "Network", "metadata": {"name": net},
                        "spec": {"cidr": "10.83.0.0/24"}})  # fmt: skip
            crds.apply(
                {
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "metadata": {"name": "bmc-creds"},
                    "stringData": {"username": "admin", "password": "password"},
                },
                namespace,
            )
            nics = [
                {"name": "eno1", "mac": "52:54:00:83:00:01", "networkRef": net, "role": "boot"},
                {"name": "eno2", "mac": "52:54:00:83:00:02", "networkRef": net},
            ]
            crds.apply(
                {
                    "apiVersion": API,
                    "kind": "BareMetalHost",
                    "metadata": {"name": "srv"},
                    "spec": {
                        "bmc": {"address": ipmi.address("node"), "credentialsName": "bmc-creds"},
                        "bootMACAddress": "52:54:00:83:00:01",
                        "nics": nics,
                    },
                },
                namespace,
            )

            def available() -> dict[str, Any] | None:
                status = crds.get("baremetalhosts", "srv", namespace).get("status") or {}
                return status if (status.get("provisioning") or {}).get("state") == "Available" else None

            status = wait_for(available, timeout=90, what="host Available")
            assert status["operationalStatus"] == "OK"

            def owned() -> set[str] | None:
                out = crds.kubectl(
                    "get", "dhcpreservations.trellis.dev", "-n", namespace, "-o", "json"
                ).stdout
                names = {o["metadata"]["name"] for o in json.loads(out)["items"]}
                return names if names == {"srv-eno1", "srv-eno2"} else None

            wait_for(owned, timeout=30, what="the host's two reservations")

            crds.kubectl(
                "delete", "baremetalhosts.trellis.dev", "srv", "-n", namespace, "--timeout=90s", timeout=120
            )
            wait_for(lambda: not owned(), timeout=30, what="reservations gone with the host")
            operators.assert_nothing_refused()
        finally:
            _delete_cluster_object(crds, "networks", net)


# -- registry --------------------------------------------------------------------------------------


def test_registry_operator(
    crds: ControlPlane, namespace: str, tmp_path: Path, operators: ChartRbacOperators
) -> None:
    """A managed registry: Deployment, Service, PVC, ConfigMaps, Secrets (generated CA and TLS)."""
    name = unique("rbac-reg")
    crds.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "users"},
            "stringData": {"htpasswd": htpasswd.render({"ci": "pw"})},
        },
        namespace,
    )
    operators.start(
        "registry", "trellis.operators.registry.handlers", {"TRELLIS_REGISTRY_RESYNC_SECONDS": "2"}
    )
    try:
        spec = {
            "mode": "managed",
            "managed": {
                "namespace": namespace,
                "auth": {"htpasswdSecretRef": {"name": "users", "key": "htpasswd"}},
                "gcSchedule": "0 3 * * *",
                "tls": {"dnsNames": ["registry.lab.example"]},
            },
            "mirrorOf": ["docker.io"],
        }
        crds.apply({"apiVersion": API, "kind": "Registry", "metadata": {"name": name}, "spec": spec})

        def applied() -> bool:
            cond = crds.condition("registries", name, "Reconciled") or {}
            return cond.get("status") == "True" and cond.get("reason") == "Applied"

        wait_for(applied, timeout=60, what=f"registry {name} Reconciled=True/Applied")
        base = f"registry-{name}"
        for kind, obj in [
            ("deployment", base),
            ("service", base),
            ("pvc", f"{base}-data"),
            ("configmap", f"{base}-config"),
            ("configmap", f"{base}-consumers"),
            ("secret", f"{base}-tls"),
            ("secret", f"{base}-ca"),
            ("cronjob", f"{base}-gc"),
        ]:
            assert _get(crds, kind, obj, namespace), f"{kind}/{obj} missing"
        assert crds.get("registries", name)["status"]["consumerConfigMap"] == f"{namespace}/{base}-consumers"

        # A spec change rolls the workload (patches under the ServiceAccount) and resyncs stay quiet.
        crds.kubectl(
            "patch", "registry", name, "--type=merge", "-p", '{"spec":{"managed":{"deleteEnabled":true}}}'
        )
        wait_for(
            lambda: (
                "enabled: true"
                in str((_get(crds, "configmap", f"{base}-config", namespace) or {}).get("data", {}))
            ),
            timeout=30,
            what="config rolled",
        )
        operators.assert_nothing_refused()
    finally:
        _delete_cluster_object(crds, "registries", name)
        # No pvc-protection controller here: release the claim so the namespace can go.
        for pvc in crds.kubectl("-n", namespace, "get", "pvc", "-o", "name", check=False).stdout.split():
            crds.kubectl("-n", namespace, "patch", pvc, "--type=merge", "-p",
                         NO_FINALIZERS, check=False)  # fmt: skip


# -- isocdrom --------------------------------------------------------------------------------------


def test_isocdrom_operator(
    crds: ControlPlane, namespace: str, tmp_path: Path, operators: ChartRbacOperators
) -> None:
    """An ISOCDROM on a Router nobody answers for: Router, Secrets and hosts read, status written."""
    router, iso = unique("rbac-rds"), unique("rbac-iso")
    port = free_port()  # nothing listens there
    operators.start(
        "isocdrom", "trellis.operators.isocdrom.handlers", {"TRELLIS_ISOCDROM_RESYNC_SECONDS": "5"}
    )
    try:
        crds.apply(
            [
                {
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "metadata": {"name": "rds-creds", "namespace": namespace},
                    "stringData": {"username": "trellis", "password": "not-used"},
                },
                {
                    "apiVersion": API,
                    "kind": "Router",
                    "metadata": {"name": router},
                    "spec": {
                        "address": "127.0.0.1",
                        "role": "rds",
                        "sshPort": port,
                        "credentialsSecretRef": {"name": "rds-creds", "namespace": namespace},
                        "sshHostKey": {
                            "knownHosts": f"[127.0.0.1]:{port} ssh-ed25519 "
                            "AAAAC3NzaC1lZDI1NTE5AAAAIB7tQ2tq3Lw0VZ1Yc8C2xq9nLh7bS6d6j1u5m8ZpQy4r"
                        },
                    },
                },
                {
                    "apiVersion": API,
                    "kind": "ISOCDROM",
                    "metadata": {"name": iso},
                    "spec": {
                        "source": {"rdsPath": "raid1/iso/rescue.iso"},
                        "target": {"routerRef": router},
                        "deletePolicy": "Keep",
                    },
                },
            ]
        )

        def reported() -> dict[str, Any] | None:
            status = crds.get("isocdroms", iso).get("status") or {}
            ready: dict[str, Any] = next(
                (c for c in status.get("conditions") or [] if c["type"] == "Ready"), {}
            )
            return status if ready.get("status") == "False" else None

        # Router and both Secrets read (a problem there has reasons of its own), the RDS refused.
        status = wait_for(reported, timeout=60, what=f"isocdrom {iso} Ready=False")
        ready = next(c for c in status["conditions"] if c["type"] == "Ready")
        assert ready["reason"] in ("RouterError", "TransferInterrupted"), ready
        assert str(port) in ready["message"]
        assert status["path"].endswith("rescue.iso") and status["subscribers"] == []
        # The Router goes first: the ISOCDROM's deletion then has nothing left to unexport.
        _delete_cluster_object(crds, "routers", router)
        crds.kubectl("delete", "isocdroms.trellis.dev", iso, "--timeout=60s", timeout=90)
        operators.assert_nothing_refused()
    finally:
        _delete_cluster_object(crds, "routers", router)
        _delete_cluster_object(crds, "isocdroms", iso)


# -- talosdevice -----------------------------------------------------------------------------------


def test_talosdevice_operator(
    crds: ControlPlane, namespace: str, tmp_path: Path, operators: ChartRbacOperators
) -> None:
    """Secrets bundle, registry fragments from another namespace, auto-approval, device configs."""
    registry = unique("rbac-mirror")
    consumers = f"{namespace}-consumers"
    crds.kubectl("create", "namespace", consumers)
    operators.start(
        "talosdevice", "trellis.operators.talosdevice.handlers", {"TRELLIS_TALOS_RESYNC_SECONDS": "5"}
    )
    try:
        patch = "machine:\n  registries:\n    mirrors:\n      docker.io:\n        endpoints: [https://mirror.lab:5000]\n"
        crds.apply(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "mirror-consumers"},
                "data": {"talos-machine-patch.yaml": patch},
            },
            consumers,
        )
        crds.apply(
            {
                "apiVersion": API,
                "kind": "Registry",
                "metadata": {"name": registry, "labels": {"trellis.dev/mirror": "true"}},
                "spec": {"mode": "external", "external": {"url": "https://mirror.lab:5000"}},
            }
        )
        crds.kubectl(
            "patch", f"registries.trellis.dev/{registry}", "--subresource=status", "--type=merge", "-p",
            json.dumps({"status": {"consumerConfigMap": f"{consumers}/mirror-consumers"}}),
        )  # fmt: skip
        crds.apply(
            {
                "apiVersion": API,
                "kind": "TalosCluster",
                "metadata": {"name": "lab"},
                "spec": {
                    "endpoint": "https://10.0.0.10:6443",
                    "talosVersion": "v1.11.0",
                    "kubernetesVersion": "1.34.0",
                    "installDisk": "/dev/sda",
                    "registrySelector": {"matchLabels": {"trellis.dev/mirror": "true"}},
                    "autoApproval": [
                        {"name": "lab", "macPrefix": "52:54:00:84", "role": "worker", "limit": 1}
                    ],
                },
            },
            namespace,
        )
        cluster = wait_for(
            lambda: _ready_obj(crds, "talosclusters", "lab", namespace, "True"),
            timeout=60,
            what="cluster Ready",
        )
        assert cluster["status"]["secretsSecretName"] == "lab-talos-secrets"
        assert _get(crds, "secret", "lab-talos-secrets", namespace)
        fragments = _get(crds, "configmap", "lab-talos-registries", namespace)
        assert fragments and "mirror.lab" in json.dumps(fragments.get("data"))

        crds.apply(
            {
                "apiVersion": API,
                "kind": "TalosDevice",
                "metadata": {
                    "name": "w-1",
                    "annotations": {"talos.trellis.dev/discovered": "2026-01-01T00:00:00Z"},
                },
                "spec": {"mac": "52:54:00:84:00:01", "role": "worker", "approval": "Pending"},
            },
            namespace,
        )
        device = wait_for(
            lambda: _ready_obj(crds, "talosdevices", "w-1", namespace, "True"),
            timeout=60,
            what="device Ready",
        )
        assert device["spec"]["approval"] == "Approved" and device["spec"]["clusterRef"] == "lab"
        assert device["status"]["approvedByRule"] == "lab"
        crds.kubectl(
            "delete", "talosdevices.trellis.dev", "w-1", "-n", namespace, "--timeout=60s", timeout=90
        )
        operators.assert_nothing_refused()
    finally:
        _delete_cluster_object(crds, "registries", registry)
        crds.kubectl("delete", "namespace", consumers, "--wait=false", check=False)


def test_talos_boot_service(crds: ControlPlane, namespace: str, operators: ChartRbacOperators) -> None:
    """Discovery (TalosDevice created), observed status, and the config served after approval."""
    operators.start(
        "talosdevice", "trellis.operators.talosdevice.handlers", {"TRELLIS_TALOS_RESYNC_SECONDS": "5"}
    )
    boot = operators.start_boot_service()
    crds.apply(
        {
            "apiVersion": API,
            "kind": "TalosCluster",
            "metadata": {"name": "lab"},
            "spec": {
                "endpoint": "https://10.0.0.10:6443",
                "talosVersion": "v1.12.0",
                "kubernetesVersion": "1.35.0",
                "installDisk": "/dev/sda",
            },
        },
        namespace,
    )
    wait_for(lambda: _ready_obj(crds, "talosclusters", "lab", namespace, "True"), timeout=60, what="cluster")

    def ipxe() -> str:
        params = {"mac": "52:54:00:85:00:01", "uuid": "4c4c4544-0085", "arch": "x86_64"}
        resp = requests.get(f"{boot.url}/ipxe", params=params, timeout=10)
        assert resp.status_code == 200, resp.text
        return resp.text

    assert "\nexit 0\n" in ipxe()  # unknown machine: discovered, not booted
    name = "mac-525400850001"
    device = wait_for(lambda: _get(crds, "talosdevices", name, namespace), timeout=30, what="discovered")
    assert device["spec"]["approval"] == "Pending" and device["spec"]["clusterRef"] == "lab"
    wait_for(
        lambda: ((_get(crds, "talosdevices", name, namespace) or {}).get("status") or {}).get("observed"),
        timeout=30,
        what="observed status written by the boot service",
    )

    crds.kubectl("-n", namespace, "patch", "talosdevices.trellis.dev", name, "--type=merge",
                 "-p", '{"spec":{"approval":"Approved","role":"worker"}}')  # fmt: skip
    wait_for(
        lambda: _ready_obj(crds, "talosdevices", name, namespace, "True"), timeout=60, what="ConfigReady"
    )

    def booting() -> str | None:
        text = ipxe()
        return text if "kernel " in text else None

    script = wait_for(booting, timeout=30, what="Talos boot script")
    match = re.search(r"talos\.config=(\S+)", script)
    assert match, script
    config = requests.get(match.group(1).replace("${uuid}", "4c4c4544-0085"), timeout=10)
    assert config.status_code == 200, config.text
    assert yaml.safe_load_all(config.text) and "machine:" in config.text

    def served() -> bool:
        status = (_get(crds, "talosdevices", name, namespace) or {}).get("status") or {}
        return status.get("phase") == "ConfigServed"

    wait_for(served, timeout=30, what="ConfigServed written by the boot service")
    operators.assert_nothing_refused()


def _ready_obj(
    cp: ControlPlane, plural: str, name: str, namespace: str, status: str
) -> dict[str, Any] | None:
    obj = cp.get(plural, name, namespace)
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond["type"] == "Ready" and cond["status"] == status:
            return obj
    return None
