"""Provisioning on evidence, through a real operator whose power poll is slower than any deadline
here, so what happens in seconds comes from its watches: the install boot waits for the boot NIC's
reservation, a linked TalosDevice's report ends Provisioning, a missing report times out."""

from __future__ import annotations

import datetime as dt
import json
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.baremetalhost.conftest import (
    MODULE,
    OPERATOR_ENV,
    bmh,
    events,
    host,
    network,
    reservations,
    secret,
    serve_reservation,
    wait_state,
    wait_status,
)
from tests.support.bmc import IpmiEmulator
from tests.support.kube import ControlPlane
from tests.support.operators import OperatorProcess, start_operator
from tests.support.wait import wait_for

pytestmark = pytest.mark.integration
SLOW_POLL = {**OPERATOR_ENV, "TRELLIS_BMH_POLL_INTERVAL": "120", "TRELLIS_BMH_RESYNC_INTERVAL": "120"}
WATCH_DEADLINE = 10  # well under the 120 s poll and the 30 s Network cache: only a watch gets there
QUIET_SECONDS = 4
PXE = {"type": "pxe", "mode": "once"}


@pytest.fixture(scope="module")
def slow_operator(crds: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorProcess]:
    op = start_operator(crds, MODULE, Path(tmp_path_factory.mktemp("bmh-evidence-logs")), env=SLOW_POLL)
    try:
        yield op
    finally:
        op.stop()


def provisioned_condition(status: dict[str, Any]) -> dict[str, Any]:
    return next((c for c in status.get("conditions") or [] if c["type"] == "Provisioned"), {})


def now() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def patch_status(cp: ControlPlane, kind: str, namespace: str, name: str, status: dict[str, Any]) -> None:
    cp.kubectl("patch", f"{kind}.trellis.dev", name, "-n", namespace, "--subresource=status", "--type=merge",
               "-p", json.dumps({"status": status}))  # fmt: skip


def device(cp: ControlPlane, namespace: str, name: str, mac: str, **spec: Any) -> None:
    cp.apply({"apiVersion": "trellis.dev/v1alpha1", "kind": "TalosDevice",
              "metadata": {"name": name, "namespace": namespace}, "spec": {"mac": mac, **spec}})  # fmt: skip


def test_install_boot_waits_for_the_boot_reservation_and_a_new_network_wakes_it(
    crds: ControlPlane, namespace: str, ipmi: IpmiEmulator, slow_operator: OperatorProcess
) -> None:
    cp = crds
    net = f"evi-{secrets.token_hex(3)}"
    secret(cp, namespace, "bmc-creds", "admin", "password")
    nics = [{"name": "eno1", "mac": "52:54:00:91:00:01", "networkRef": net, "role": "boot"}]
    host(cp, namespace, "late", ipmi.address("ipmi0"), boot_mac="52:54:00:91:00:01", nics=nics,
         online=True, bootSource=PXE)  # fmt: skip
    try:
        status = wait_status(
            cp, namespace, "late",
            lambda s: provisioned_condition(s).get("reason") == "WaitingForBootReservation", "waiting",
        )  # fmt: skip
        cond = provisioned_condition(status)
        assert (
            cond["status"] == "False"
            and cond["observedGeneration"] == bmh(cp, namespace, "late")["metadata"]["generation"]
        )
        assert f"DHCPReservation late-eno1 on Network {net}" in cond["message"]
        assert (status["provisioning"]["state"], status["provisioning"]["step"]) == (
            "Provisioning",
            "PowerOn",
        )
        time.sleep(QUIET_SECONDS)
        assert ipmi.system("ipmi0")["power"] == "off" and not ipmi.system("ipmi0")["boots"]
        assert state_of(cp, namespace, "late") == "Provisioning"

        network(cp, net, "10.191.0.0/24")
        created = time.monotonic()
        wait_for(lambda: reservations(cp, namespace).get("late-eno1"), timeout=WATCH_DEADLINE,
                       what="reservation made once the Network exists")  # fmt: skip
        # The Network operator is not running here: the test serves the reservation in its place.
        assert ipmi.system("ipmi0")["power"] == "off"
        serve_reservation(cp, namespace, "late-eno1", "10.191.0.10")
        wait_for(lambda: ipmi.system("ipmi0")["power"] == "on", timeout=WATCH_DEADLINE, what="install boot")
        assert time.monotonic() - created < 2 * WATCH_DEADLINE
        status = wait_state(cp, namespace, "late", "Provisioned", timeout=WATCH_DEADLINE)["status"]
        assert provisioned_condition(status)["reason"] == "InstallBootStarted"
        boots = ipmi.system("ipmi0")["boots"]
        assert len(boots) == 1 and boots[0]["device"] == "pxe"
    finally:
        cp.kubectl("delete", "bmh", "-n", namespace, "late", "--wait=false", check=False)
        cp.kubectl("delete", "networks.trellis.dev", net, "--ignore-not-found", "--wait=false", check=False)


def state_of(cp: ControlPlane, namespace: str, name: str) -> str | None:
    return ((bmh(cp, namespace, name).get("status") or {}).get("provisioning") or {}).get("state")


def test_linked_device_ends_provisioning_when_it_reports_installed(
    crds: ControlPlane, namespace: str, ipmi: IpmiEmulator, slow_operator: OperatorProcess
) -> None:
    cp = crds
    secret(cp, namespace, "bmc-creds", "admin", "password")
    device(cp, namespace, "w-1", "52:54:00:92:00:01")  # linked by its MAC
    host(cp, namespace, "talos", ipmi.address("ipmi1"), boot_mac="52:54:00:92:00:01",
         online=True, bootSource=PXE)  # fmt: skip
    status = wait_status(
        cp,
        namespace,
        "talos",
        lambda s: provisioned_condition(s).get("reason") == "WaitingForInstall",
        "booted",
    )
    assert status["provisioning"]["step"] == "AwaitInstall" and status["provisioning"]["installBootTime"]
    assert "TalosDevice w-1" in provisioned_condition(status)["message"]
    assert ipmi.system("ipmi1")["power"] == "on"

    patch_status(cp, "talosdevices", namespace, "w-1", {"phase": "ConfigServed", "lastConfigFetch": now()})
    status = wait_status(
        cp, namespace, "talos", lambda s: "after serving" in provisioned_condition(s).get("message", ""),
        "config served", timeout=WATCH_DEADLINE,
    )  # fmt: skip
    assert status["provisioning"]["state"] == "Provisioning"
    time.sleep(1)
    assert state_of(cp, namespace, "talos") == "Provisioning"

    patch_status(cp, "talosdevices", namespace, "w-1", {"phase": "Installed"})
    status = wait_state(cp, namespace, "talos", "Provisioned", timeout=WATCH_DEADLINE)["status"]
    assert provisioned_condition(status)["reason"] == "DeviceInstalled"
    assert status["provisioning"]["installBootObserved"] is True
    assert len(ipmi.system("ipmi1")["boots"]) == 1  # exactly one install boot
    assert "InstallBootStarted" in {e["reason"] for e in events(cp, namespace, "talos")}


def test_install_not_reported_in_time_is_an_error_and_boots_again(
    crds: ControlPlane, namespace: str, ipmi: IpmiEmulator, slow_operator: OperatorProcess
) -> None:
    cp = crds
    secret(cp, namespace, "bmc-creds", "admin", "password")
    device(cp, namespace, "w-2", "52:54:00:93:00:99", bareMetalHostRef="slow")  # linked by its ref
    host(cp, namespace, "slow", ipmi.address("ipmi2"), boot_mac="52:54:00:93:00:01",
         online=True, bootSource=PXE, provisioningTimeoutSeconds=8)  # fmt: skip
    wait_status(cp, namespace, "slow", lambda s: s["provisioning"].get("step") == "AwaitInstall", "booted")
    status = wait_status(cp, namespace, "slow", lambda s: s.get("errorType") == "ProvisioningError",
                         "install timed out", timeout=20)  # fmt: skip
    assert "TalosDevice w-2 did not report Installed" in status["errorMessage"]
    assert status["operationalStatus"] == "error"
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "ProvisioningError")
    assert "ProvisioningError" in {e["reason"] for e in events(cp, namespace, "slow")}

    # After the backoff: powered off, booted again, exactly once.
    wait_for(lambda: len(ipmi.system("ipmi2")["boots"]) == 2, timeout=15, what="second install boot")
    status = wait_status(cp, namespace, "slow", lambda s: s["provisioning"].get("step") == "AwaitInstall",
                         "second attempt waiting")  # fmt: skip
    assert status["provisioning"]["installTimeouts"] == 1 and status["errorType"] == "ProvisioningError"
    patch_status(cp, "talosdevices", namespace, "w-2", {"phase": "Installed", "lastConfigFetch": now()})
    status = wait_state(cp, namespace, "slow", "Provisioned", timeout=WATCH_DEADLINE)["status"]
    assert status["operationalStatus"] == "OK" and "errorType" not in status
    assert "installTimeouts" not in status["provisioning"]
    assert len(ipmi.system("ipmi2")["boots"]) == 2
