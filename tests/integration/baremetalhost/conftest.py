"""Fixtures for BareMetalHost integration tests: emulated BMCs, the operator, host helpers."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.support.bmc import EmulatedSystem, IpmiEmulator, RedfishSystem, SushyEmulator
from tests.support.kube import ControlPlane
from tests.support.operators import OperatorProcess, start_operator
from tests.support.wait import wait_for

MODULE = "trellis.operators.baremetalhost.handlers"
# Fast loops so the suite stays short; the behaviour is the same as with production values.
OPERATOR_ENV = {
    "TRELLIS_BMH_POLL_INTERVAL": "3",
    "TRELLIS_BMH_FAST_POLL": "0.5",
    "TRELLIS_BMH_BACKOFF_BASE": "1",
    "TRELLIS_BMH_BACKOFF_CAP": "4",
    "TRELLIS_BMH_POWER_TIMEOUT": "25",
    "TRELLIS_BMH_SOFT_OFF_TIMEOUT": "20",
    "TRELLIS_BMH_RESYNC_INTERVAL": "10",
    "TRELLIS_BMH_DELETE_POWER_OFF_ATTEMPTS": "2",
}
IPMI_NAMES = [f"ipmi{i}" for i in range(10)]
REDFISH_USERS = {"root": "calvin"}


@pytest.fixture(scope="module")
def ipmi(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IpmiEmulator]:
    systems = [EmulatedSystem(name, serial=f"SN-{name}") for name in IPMI_NAMES]
    with IpmiEmulator(Path(tmp_path_factory.mktemp("ipmi")), systems) as emulator:
        yield emulator


@pytest.fixture(scope="module")
def sushy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SushyEmulator]:
    systems = [RedfishSystem(f"rf{i}", nics=[{"mac": f"52:54:00:ab:00:0{i}", "ip": ""}]) for i in range(4)]
    with SushyEmulator(Path(tmp_path_factory.mktemp("sushy")), systems, users=REDFISH_USERS) as emulator:
        yield emulator


class Operator:
    """The operator subprocess; restartable (crash tests) within one module."""

    def __init__(self, cp: ControlPlane, log_dir: Path) -> None:
        self.cp, self.log_dir = cp, log_dir
        self.proc: OperatorProcess | None = None

    def start(self) -> Operator:
        self.proc = start_operator(self.cp, MODULE, self.log_dir, env=OPERATOR_ENV)
        return self

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()

    def logs(self) -> str:
        return self.proc.logs() if self.proc else ""


@pytest.fixture(scope="module")
def operator(crds: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Operator]:
    op = Operator(crds, Path(tmp_path_factory.mktemp("bmh-operator-logs"))).start()
    try:
        yield op
    finally:
        op.stop()


def secret(cp: ControlPlane, namespace: str, name: str, username: str, password: str) -> None:
    cp.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "namespace": namespace},
            "data": {
                "username": base64.b64encode(username.encode()).decode(),
                "password": base64.b64encode(password.encode()).decode(),
            },
        }
    )


def network(cp: ControlPlane, name: str, cidr: str) -> None:
    cp.apply({"apiVersion": "trellis.dev/v1alpha1", "kind": "Network", "metadata": {"name": name},
              "spec": {"cidr": cidr}})  # fmt: skip


@contextmanager
def networks_for_module(cp: ControlPlane, cidrs: dict[str, str]) -> Iterator[None]:
    """Cluster-scoped Networks outlive the test namespace: remove them so later tests' CIDRs stay free."""
    for name, cidr in cidrs.items():
        network(cp, name, cidr)
    try:
        yield
    finally:
        cp.kubectl("delete", "networks.trellis.dev", *cidrs, "--ignore-not-found", "--wait=false")


def host(
    cp: ControlPlane,
    namespace: str,
    name: str,
    address: str,
    credentials: str = "bmc-creds",
    boot_mac: str = "52:54:00:10:00:01",
    **spec: Any,
) -> dict[str, Any]:
    body = {
        "apiVersion": "trellis.dev/v1alpha1",
        "kind": "BareMetalHost",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "bmc": {"address": address, "credentialsName": credentials},
            "bootMACAddress": boot_mac,
            **spec,
        },
    }
    cp.apply(body)
    return body


def bmh(cp: ControlPlane, namespace: str, name: str) -> dict[str, Any]:
    return cp.get("baremetalhosts", name, namespace)


def state(cp: ControlPlane, namespace: str, name: str) -> str | None:
    return ((bmh(cp, namespace, name).get("status") or {}).get("provisioning") or {}).get("state")


def wait_state(cp: ControlPlane, namespace: str, name: str, want: str, timeout: float = 60) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        obj = bmh(cp, namespace, name)
        return obj if ((obj.get("status") or {}).get("provisioning") or {}).get("state") == want else None

    return wait_for(probe, timeout=timeout, interval=0.5, what=f"{namespace}/{name} state {want}")


def wait_status(
    cp: ControlPlane, namespace: str, name: str, check: Any, what: str, timeout: float = 60
) -> Any:
    def probe() -> Any:
        status = bmh(cp, namespace, name).get("status") or {}
        return status if check(status) else None

    return wait_for(probe, timeout=timeout, interval=0.5, what=f"{namespace}/{name}: {what}")


def merge(
    cp: ControlPlane, namespace: str, name: str, patch: dict[str, Any], kind: str = "baremetalhosts"
) -> None:
    cp.kubectl("patch", f"{kind}.trellis.dev", name, "-n", namespace, "--type=merge", "-p", json.dumps(patch))


def reservations(cp: ControlPlane, namespace: str) -> dict[str, dict[str, Any]]:
    out = cp.kubectl("get", "dhcpreservations.trellis.dev", "-n", namespace, "-o", "json").stdout
    return {o["metadata"]["name"]: o for o in json.loads(out)["items"]}


def serve_reservation(cp: ControlPlane, namespace: str, name: str, ip: str) -> None:
    """Mark a reservation served, as the Network operator (not running in these tests) would: an
    install boot over the network waits for its boot NIC's reservation to be Ready."""
    obj = cp.get("dhcpreservations", name, namespace)
    status = {"phase": "Ready", "ip": ip, "observedGeneration": obj["metadata"]["generation"]}
    cp.kubectl("patch", "dhcpreservations.trellis.dev", name, "-n", namespace, "--subresource=status",
               "--type=merge", "-p", json.dumps({"status": status}))  # fmt: skip


def events(cp: ControlPlane, namespace: str, name: str) -> list[dict[str, Any]]:
    out = cp.kubectl(
        "get", "events", "-n", namespace, "--field-selector", f"involvedObject.name={name}", "-o", "json"
    ).stdout
    items: list[dict[str, Any]] = json.loads(out)["items"]
    return items
