"""Failure handling: wrong password, a BMC going away, detached/paused hosts, an operator crash."""

from __future__ import annotations

import time

import pytest

from tests.integration.baremetalhost.conftest import (
    Operator,
    bmh,
    events,
    host,
    merge,
    secret,
    wait_state,
    wait_status,
)
from tests.support.bmc import IpmiEmulator
from tests.support.kube import ControlPlane
from tests.support.wait import wait_for

pytestmark = pytest.mark.integration
QUIET_SECONDS = 6  # two poll intervals of the test operator: long enough for it to act if it would


def test_wrong_password_is_a_registration_error_with_backoff(
    crds: ControlPlane, namespace: str, ipmi: IpmiEmulator, operator: Operator
) -> None:
    cp = crds
    secret(cp, namespace, "bmc-creds", "admin", "Zk4-not-the-password")
    host(cp, namespace, "srv3", ipmi.address("ipmi2"), boot_mac="52:54:00:63:00:01")
    status = wait_status(cp, namespace, "srv3", lambda s: (s.get("errorCount") or 0) >= 2, "two errors")
    assert status["errorType"] == "RegistrationError"
    assert status["operationalStatus"] == "error"
    assert status["provisioning"]["state"] == "Registering"
    assert "refused the credentials" in status["errorMessage"]
    assert "Zk4-not-the-password" not in str(bmh(cp, namespace, "srv3"))
    ready = {c["type"]: c for c in status["conditions"]}
    assert ready["BMCReachable"]["reason"] == "AuthenticationFailed"
    assert any(e["reason"] == "RegistrationError" for e in events(cp, namespace, "srv3"))
    # Backoff: with base 1 s and cap 4 s the operator tries at most every few seconds, not every poll.
    sessions = ipmi.system("ipmi2")["sessions"]
    time.sleep(QUIET_SECONDS)
    assert ipmi.system("ipmi2")["sessions"] - sessions <= 5

    secret(cp, namespace, "bmc-creds", "admin", "password")
    status = wait_state(cp, namespace, "srv3", "Available", timeout=60)["status"]
    assert status["errorCount"] == 0 and status["operationalStatus"] == "OK"
    assert "errorType" not in status


def test_bmc_going_away_mid_provisioning_is_an_error_then_recovers(
    crds: ControlPlane, namespace: str, ipmi: IpmiEmulator, operator: Operator
) -> None:
    cp = crds
    secret(cp, namespace, "bmc-creds", "admin", "password")
    host(cp, namespace, "srv4", ipmi.address("ipmi3"), boot_mac="52:54:00:64:00:01")
    wait_state(cp, namespace, "srv4", "Available")
    ipmi.set("ipmi3", unplugged=True)
    try:
        merge(
            cp, namespace, "srv4", {"spec": {"online": True, "bootSource": {"type": "pxe", "mode": "always"}}}
        )
        status = wait_status(
            cp, namespace, "srv4", lambda s: s.get("errorType") == "ProvisioningError", "ProvisioningError"
        )
        assert status["provisioning"]["state"] == "Provisioning"
        assert status["operationalStatus"] == "error"
        conds = {c["type"]: c for c in status["conditions"]}
        assert conds["BMCReachable"]["status"] == "False" and conds["BMCReachable"]["reason"] == "Unreachable"
        assert conds["Ready"]["status"] == "False"
    finally:
        ipmi.set("ipmi3", unplugged=False)
    status = wait_state(cp, namespace, "srv4", "Provisioned", timeout=90)["status"]
    assert status["errorCount"] == 0 and status["operationalStatus"] == "OK"
    system = ipmi.system("ipmi3")
    assert system["power"] == "on" and (system["boot_device"], system["boot_persistent"]) == ("pxe", True)


def test_detached_and_paused_hosts_are_left_alone(
    crds: ControlPlane, namespace: str, ipmi: IpmiEmulator, operator: Operator
) -> None:
    cp = crds
    secret(cp, namespace, "bmc-creds", "admin", "password")
    host(cp, namespace, "srv5", ipmi.address("ipmi4"), boot_mac="52:54:00:65:00:01")
    wait_state(cp, namespace, "srv5", "Available")

    cp.kubectl("annotate", "bmh", "-n", namespace, "srv5", "baremetalhost.trellis.dev/detached=")
    wait_status(cp, namespace, "srv5", lambda s: s.get("operationalStatus") == "detached", "detached")
    commands = ipmi.system("ipmi4")["commands"]
    merge(cp, namespace, "srv5", {"spec": {"online": True}})
    time.sleep(QUIET_SECONDS)
    assert ipmi.system("ipmi4")["power"] == "off"
    assert ipmi.system("ipmi4")["commands"] == commands  # not a single BMC request while detached
    cp.kubectl("annotate", "bmh", "-n", namespace, "srv5", "baremetalhost.trellis.dev/detached-")
    wait_for(lambda: ipmi.system("ipmi4")["power"] == "on", timeout=30, what="power on after re-attach")
    wait_status(cp, namespace, "srv5", lambda s: s.get("operationalStatus") == "OK", "OK again")
    assert state_of(cp, namespace, "srv5") == "Available"  # re-attaching keeps the state

    cp.kubectl("annotate", "bmh", "-n", namespace, "srv5", "baremetalhost.trellis.dev/paused=")
    time.sleep(1)  # let the pass in flight finish
    before = bmh(cp, namespace, "srv5")["status"]
    merge(cp, namespace, "srv5", {"spec": {"online": False}})
    time.sleep(QUIET_SECONDS)
    assert ipmi.system("ipmi4")["power"] == "on"
    assert bmh(cp, namespace, "srv5")["status"] == before  # no status writes while paused
    cp.kubectl("annotate", "bmh", "-n", namespace, "srv5", "baremetalhost.trellis.dev/paused-")
    wait_for(lambda: ipmi.system("ipmi4")["power"] == "off", timeout=30, what="power off after unpause")


def state_of(cp: ControlPlane, namespace: str, name: str) -> str:
    return str(bmh(cp, namespace, name)["status"]["provisioning"]["state"])


def test_operator_killed_mid_provisioning_resumes_without_a_second_install_boot(
    crds: ControlPlane, namespace: str, ipmi: IpmiEmulator, operator: Operator
) -> None:
    cp = crds
    secret(cp, namespace, "bmc-creds", "admin", "password")
    host(cp, namespace, "srv6", ipmi.address("ipmi5"), boot_mac="52:54:00:66:00:01")
    wait_state(cp, namespace, "srv6", "Available")
    ipmi.set("ipmi5", power_delay=4.0)  # the power-on lands seconds after it was sent
    boots_before = len(ipmi.system("ipmi5")["boots"])
    merge(cp, namespace, "srv6", {"spec": {"online": True, "bootSource": {"type": "pxe", "mode": "once"}}})
    wait_status(
        cp,
        namespace,
        "srv6",
        lambda s: s["provisioning"].get("step") == "PowerOn",
        "boot configured",
        timeout=60,
    )
    operator.kill()  # SIGKILL in the middle of the power-on step
    try:
        assert state_of(cp, namespace, "srv6") == "Provisioning"
    finally:
        operator.start()
    wait_status(
        cp,
        namespace,
        "srv6",
        lambda s: s["provisioning"].get("step") == "LocalBoot",
        "local disk after install",
    )
    ipmi.set("ipmi5", power_delay=0.0)
    boots = ipmi.system("ipmi5")["boots"][boots_before:]
    assert [b["device"] for b in boots] == ["pxe"]  # exactly one install boot, from the network
    system = ipmi.system("ipmi5")
    assert (system["power"], system["boot_device"], system["boot_persistent"]) == ("on", "disk", True)
    assert bmh(cp, namespace, "srv6")["status"]["provisioning"]["state"] == "Provisioned"
