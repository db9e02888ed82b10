"""Owned DHCPReservations: exact updates, missing Networks, iSCSI root-path, duplicate MACs."""

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


@pytest.fixture(scope="module")
def networks(crds: ControlPlane) -> Iterator[None]:
    with networks_for_module(crds, {"rsv-a": "10.164.0.0/24", "rsv-b": "10.165.0.0/24"}):
        yield


def conditions(cp: ControlPlane, namespace: str, name: str) -> dict[str, dict[str, str]]:
    return {c["type"]: c for c in (bmh(cp, namespace, name).get("status") or {}).get("conditions", [])}


def test_nic_changes_touch_exactly_the_affected_reservation(
    crds: ControlPlane, namespace: str, ipmi: IpmiEmulator, operator: Operator, networks: None
) -> None:
    cp = crds
    secret(cp, namespace, "bmc-creds", "admin", "password")
    nics = [
        {"name": "eno1", "mac": "52:54:00:71:00:01", "networkRef": "rsv-a", "role": "boot"},
        {"name": "eno2", "mac": "52:54:00:71:00:02", "networkRef": "rsv-a"},
        {"name": "eno3", "mac": "52:54:00:71:00:03", "networkRef": "rsv-a"},
    ]
    host(cp, namespace, "srv7", ipmi.address("ipmi6"), boot_mac="52:54:00:71:00:01", nics=nics)
    before = wait_for(lambda: len(reservations(cp, namespace)) == 3 and reservations(cp, namespace), what="3")
    uids = {name: obj["metadata"]["uid"] for name, obj in before.items()}

    nics[1] = {**nics[1], "networkRef": "rsv-b"}  # immutable field: replaced
    nics[2] = {**nics[2], "hostname": "storage-7"}  # mutable: updated in place
    merge(cp, namespace, "srv7", {"spec": {"nics": nics}})

    def settled() -> dict | None:
        now = reservations(cp, namespace)
        ok = (
            now.get("srv7-eno2", {}).get("spec", {}).get("networkRef") == "rsv-b"
            and now.get("srv7-eno3", {}).get("spec", {}).get("hostname") == "storage-7"
        )
        return now if ok else None

    after = wait_for(settled, timeout=30, what="eno2 moved and eno3 renamed")
    assert after["srv7-eno1"]["metadata"]["uid"] == uids["srv7-eno1"]
    assert (
        after["srv7-eno1"]["metadata"]["resourceVersion"]
        == before["srv7-eno1"]["metadata"]["resourceVersion"]
    )
    assert after["srv7-eno2"]["metadata"]["uid"] != uids["srv7-eno2"]
    assert after["srv7-eno3"]["metadata"]["uid"] == uids["srv7-eno3"]

    merge(cp, namespace, "srv7", {"spec": {"nics": nics[:2]}})
    wait_for(lambda: set(reservations(cp, namespace)) == {"srv7-eno1", "srv7-eno2"}, what="eno3 removed")

    # Deleted behind the operator's back: put back.
    cp.kubectl("delete", "dhcpreservations.trellis.dev", "-n", namespace, "srv7-eno1")
    wait_for(lambda: "srv7-eno1" in reservations(cp, namespace), timeout=30, what="eno1 re-created")

    # A NIC on a Network that does not exist: condition + Event, no reservation for it.
    merge(cp, namespace, "srv7", {"spec": {"nics": [*nics[:2], {**nics[2], "networkRef": "rsv-missing"}]}})
    wait_for(
        lambda: (
            conditions(cp, namespace, "srv7").get("ReservationsReady", {}).get("reason") == "NetworkNotFound"
        ),
        what="NetworkNotFound condition",
    )
    assert "srv7-eno3" not in reservations(cp, namespace)
    assert "NetworkNotFound" in {e["reason"] for e in events(cp, namespace, "srv7")}


def test_iscsi_isocdrom_boot_sets_and_clears_root_path(
    crds: ControlPlane, namespace: str, ipmi: IpmiEmulator, operator: Operator, networks: None
) -> None:
    cp = crds
    iso = f"talos-{namespace}"[:60]
    cp.apply({
        "apiVersion": "trellis.dev/v1alpha1", "kind": "ISOCDROM", "metadata": {"name": iso},
        "spec": {"source": {"url": "http://images.example/talos.iso", "sha256": "a" * 64},
                 "target": {"routerRef": "rds1"}},
    })  # fmt: skip
    try:
        secret(cp, namespace, "bmc-creds", "admin", "password")
        nics = [{"name": "eno1", "mac": "52:54:00:72:00:01", "networkRef": "rsv-a", "role": "boot"}]
        host(cp, namespace, "srv8", ipmi.address("ipmi7"), boot_mac="52:54:00:72:00:01", nics=nics)
        wait_state(cp, namespace, "srv8", "Available")
        merge(cp, namespace, "srv8", {"spec": {"bootSource": {"type": "isocdrom", "isocdromRef": iso}}})
        # Not exported yet: provisioning waits, saying why.
        wait_for(
            lambda: (
                conditions(cp, namespace, "srv8").get("ReservationsReady", {}).get("reason")
                == "ISOCDROMNotReady"
            ),
            what="waiting for the ISOCDROM",
        )
        assert bmh(cp, namespace, "srv8")["status"]["provisioning"]["state"] == "Provisioning"
        iqn = "iqn.2000-02.com.mikrotik:file--iso-talos-iso"
        status = {"phase": "Ready", "iqn": iqn, "portalAddress": "10.164.0.1", "portalPort": 3260}
        cp.kubectl(
            "patch", "isocdroms.trellis.dev", iso, "--subresource=status", "--type=merge", "-p",
            __import__("json").dumps({"status": status}),
        )  # fmt: skip
        wait_state(cp, namespace, "srv8", "Provisioned")  # offline: configured, not booted yet
        root = wait_for(
            lambda: reservations(cp, namespace)["srv8-eno1"]["spec"].get("pxe", {}).get("rootPath"),
            what="root-path on the boot reservation",
        )
        assert root == f"iscsi:10.164.0.1::::{iqn}"
        assert (ipmi.system("ipmi7")["boot_device"], ipmi.system("ipmi7")["boot_persistent"]) == (
            "pxe",
            False,
        )

        serve_reservation(cp, namespace, "srv8-eno1", "10.164.0.20")  # served with the root-path
        merge(cp, namespace, "srv8", {"spec": {"online": True}})  # the install boot happens now
        wait_status(
            cp, namespace, "srv8", lambda s: s["provisioning"].get("step") == "LocalBoot", "local boot"
        )
        wait_for(
            lambda: "pxe" not in reservations(cp, namespace)["srv8-eno1"]["spec"], what="root-path removed"
        )
        assert ipmi.system("ipmi7")["boots"][-1]["device"] == "pxe"
    finally:
        cp.kubectl("delete", "isocdroms.trellis.dev", iso, "--wait=false", check=False)


@pytest.fixture
def other_namespace(crds: ControlPlane, namespace: str) -> Iterator[str]:
    name = f"{namespace}-b"[:63]
    crds.kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        crds.kubectl("delete", "namespace", name, "--wait=false", check=False)


def test_duplicate_macs_across_namespaces_are_flagged(
    crds: ControlPlane,
    namespace: str,
    other_namespace: str,
    ipmi: IpmiEmulator,
    operator: Operator,
    networks: None,
) -> None:
    cp = crds
    nics = [{"name": "eno1", "mac": "52:54:00:73:00:01", "networkRef": "rsv-b", "role": "boot"}]
    for ns in (namespace, other_namespace):
        secret(cp, ns, "bmc-creds", "admin", "password")
    host(cp, namespace, "first", ipmi.address("ipmi8"), boot_mac="52:54:00:73:00:01", nics=nics)
    wait_for(lambda: "first-eno1" in reservations(cp, namespace), what="first host's reservation")
    host(cp, other_namespace, "copy", ipmi.address("ipmi9"), boot_mac="52:54:00:73:00:01", nics=nics)

    for ns, name in ((namespace, "first"), (other_namespace, "copy")):
        wait_for(
            lambda ns=ns, name=name: conditions(cp, ns, name).get("DuplicateMAC", {}).get("status") == "True",
            what=f"{ns}/{name} flagged",
        )
    assert f"{namespace}/first" in conditions(cp, other_namespace, "copy")["DuplicateMAC"]["message"]
    assert conditions(cp, other_namespace, "copy")["ReservationsReady"]["reason"] == "DuplicateMAC"
    assert "DuplicateMAC" in {e["reason"] for e in events(cp, other_namespace, "copy")}
    assert not reservations(cp, other_namespace)  # the newer host gets none
    assert "first-eno1" in reservations(cp, namespace)  # the older one keeps its own

    cp.kubectl("delete", "bmh", "-n", namespace, "first")
    wait_for(
        lambda: "copy-eno1" in reservations(cp, other_namespace), timeout=60, what="copy gets its reservation"
    )
    wait_for(
        lambda: conditions(cp, other_namespace, "copy").get("DuplicateMAC", {}).get("status") == "False",
        what="conflict cleared",
    )
