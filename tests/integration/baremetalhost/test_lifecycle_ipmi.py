"""Full BareMetalHost lifecycle against the IPMI emulator, through a real operator process."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.baremetalhost.conftest import (
    Operator,
    bmh,
    events,
    host,
    merge,
    networks_for_module,
    reservations,
    secret,
    serve_reservation,
    wait_state,
    wait_status,
)
from tests.support.bmc import IpmiEmulator
from tests.support.kube import ControlPlane
from tests.support.wait import wait_for

pytestmark = pytest.mark.integration


def nics(prefix: str) -> list[dict[str, str]]:
    return [
        {
            "name": "eno1",
            "mac": f"{prefix}:01",
            "networkRef": "bmh-prov",
            "role": "boot",
            "ip": "10.161.0.21",
        },
        {"name": "bmc", "mac": f"{prefix}:0a", "networkRef": "bmh-oob", "role": "bmc"},
        {"name": "eno2", "mac": f"{prefix}:02", "networkRef": "bmh-storage"},
    ]


@pytest.fixture(scope="module")
def networks(crds: ControlPlane) -> Iterator[None]:
    cidrs = {"bmh-prov": "10.161.0.0/24", "bmh-oob": "10.162.0.0/24", "bmh-storage": "10.163.0.0/24"}
    with networks_for_module(crds, cidrs):
        yield


def test_full_lifecycle(
    crds: ControlPlane, namespace: str, ipmi: IpmiEmulator, operator: Operator, networks: None
) -> None:
    cp = crds
    secret(cp, namespace, "bmc-creds", "admin", "password")
    host(
        cp, namespace, "srv1", ipmi.address("ipmi0"), boot_mac="52:54:00:61:00:01",
        bmc={"address": ipmi.address("ipmi0"), "credentialsName": "bmc-creds", "mac": "52:54:00:61:00:0a"},
        nics=nics("52:54:00:61:00"),
    )  # fmt: skip
    obj = wait_state(cp, namespace, "srv1", "Available", timeout=60)
    status = obj["status"]
    assert status["hardware"]["serialNumber"] == "SN-ipmi0"
    assert status["hardware"]["manufacturer"] == "Trellis Labs"
    assert status["poweredOn"] is False and status["operationalStatus"] == "OK"
    assert status["goodCredentials"]["name"] == "bmc-creds"
    reasons = {e["reason"] for e in events(cp, namespace, "srv1")}
    assert {"Registered", "Inspected"} <= reasons

    # Reservations: one per NIC, owned by the host, with the role's fields.
    res = wait_for(
        lambda: len(reservations(cp, namespace)) == 3 and reservations(cp, namespace), what="3 reservations"
    )
    boot = res["srv1-eno1"]
    assert boot["spec"]["ip"] == "10.161.0.21" and boot["spec"]["hostname"] == "srv1"
    assert boot["metadata"]["ownerReferences"][0]["uid"] == obj["metadata"]["uid"]
    assert res["srv1-eno2"]["spec"]["defaultGateway"] is False
    assert res["srv1-bmc"]["spec"]["networkRef"] == "bmh-oob"

    # Provision: PXE once, online; the install boot goes once the boot NIC's reservation is served.
    serve_reservation(cp, namespace, "srv1-eno1", "10.161.0.21")
    merge(cp, namespace, "srv1", {"spec": {"online": True, "bootSource": {"type": "pxe", "mode": "once"}}})
    wait_state(cp, namespace, "srv1", "Provisioned", timeout=60)
    status = wait_status(
        cp,
        namespace,
        "srv1",
        lambda s: s["provisioning"].get("step") == "LocalBoot",
        "switched to local disk",
    )
    assert status["provisioning"]["installBootObserved"] is True and status["poweredOn"] is True
    system = ipmi.system("ipmi0")
    assert system["power"] == "on"
    assert system["boots"][-1]["device"] == "pxe"  # the install boot went to the network
    assert (system["boot_device"], system["boot_persistent"]) == ("disk", True)
    flags = ipmi.ipmitool("ipmi0", "chassis", "bootparam", "get", "5").stdout
    assert "Force Boot from default Hard-Drive" in flags and "all future boots" in flags

    # kubectl get bmh shows the lifecycle columns.
    table = cp.kubectl("get", "bmh", "-n", namespace, "srv1").stdout
    header, row = table.splitlines()[:2]
    assert header.split() == ["NAME", "STATE", "STATUS", "POWER", "ONLINE", "BMC", "NETWORK", "IP", "AGE"]
    assert row.split()[:6] == ["srv1", "Provisioned", "OK", "true", "true", ipmi.address("ipmi0")]

    # Deprovision, then delete: powered off before the finalizer goes, reservations removed.
    merge(cp, namespace, "srv1", {"spec": {"bootSource": None}})
    wait_state(cp, namespace, "srv1", "Available", timeout=60)
    assert ipmi.system("ipmi0")["power"] == "on"  # online is still true
    cp.kubectl("delete", "bmh", "-n", namespace, "srv1", "--wait=false")
    wait_for(
        lambda: cp.kubectl("get", "bmh", "-n", namespace, "srv1", check=False).returncode != 0,
        timeout=90,
        what="srv1 deleted",
    )
    assert ipmi.system("ipmi0")["power"] == "off"
    wait_for(lambda: not reservations(cp, namespace), timeout=30, what="reservations removed")
    reasons = {e["reason"] for e in events(cp, namespace, "srv1")}
    assert "PoweredOffForDelete" in reasons


def test_online_flips_and_reboot_annotation(
    crds: ControlPlane, namespace: str, ipmi: IpmiEmulator, operator: Operator
) -> None:
    cp = crds
    secret(cp, namespace, "bmc-creds", "admin", "password")
    host(cp, namespace, "srv2", ipmi.address("ipmi1"), boot_mac="52:54:00:62:00:01", online=True)
    # online is enforced from creation on, before inspection finishes
    wait_for(lambda: ipmi.system("ipmi1")["power"] == "on", timeout=60, what="ipmi1 powered on")
    wait_state(cp, namespace, "srv2", "Available")
    wait_status(cp, namespace, "srv2", lambda s: s.get("poweredOn") is True, "poweredOn true")

    merge(cp, namespace, "srv2", {"spec": {"online": False}})
    wait_for(lambda: ipmi.system("ipmi1")["power"] == "off", timeout=30, what="ipmi1 off")
    wait_status(cp, namespace, "srv2", lambda s: s.get("poweredOn") is False, "poweredOn false")
    merge(cp, namespace, "srv2", {"spec": {"online": True}})
    wait_for(lambda: ipmi.system("ipmi1")["power"] == "on", timeout=30, what="ipmi1 on again")

    # Someone powers the server off behind the operator's back: online wins at the next poll.
    ipmi.set("ipmi1", power="off")
    wait_for(lambda: ipmi.system("ipmi1")["power"] == "on", timeout=30, what="ipmi1 powered back on")

    boots = len(ipmi.system("ipmi1")["boots"])
    cp.kubectl("annotate", "bmh", "-n", namespace, "srv2", "baremetalhost.trellis.dev/reboot=hard")
    wait_for(
        lambda: (
            "baremetalhost.trellis.dev/reboot"
            not in (bmh(cp, namespace, "srv2")["metadata"].get("annotations") or {})
        ),
        timeout=30,
        what="reboot annotation consumed",
    )
    wait_for(lambda: ipmi.system("ipmi1")["power"] == "on", timeout=30, what="ipmi1 on after reboot")
    assert len(ipmi.system("ipmi1")["boots"]) == boots + 1  # exactly one reboot
    assert "Rebooted" in {e["reason"] for e in events(cp, namespace, "srv2")}

    # Re-inspection on request: Available -> Inspecting -> Available, annotation consumed.
    cp.kubectl("annotate", "bmh", "-n", namespace, "srv2", "baremetalhost.trellis.dev/inspect=")
    wait_for(
        lambda: (
            "baremetalhost.trellis.dev/inspect"
            not in (bmh(cp, namespace, "srv2")["metadata"].get("annotations") or {})
        ),
        timeout=30,
        what="inspect annotation consumed",
    )
    wait_for(
        lambda: "InspectRequested" in {e["reason"] for e in events(cp, namespace, "srv2")},
        what="InspectRequested",
    )
    status = wait_state(cp, namespace, "srv2", "Available")["status"]
    assert status["hardware"]["serialNumber"] == "SN-ipmi1"
