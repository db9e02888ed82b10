"""PVCs end to end on the real apiserver: the real external-provisioner calls the driver, the
controller-manager's PV binder binds, and the disk appears on (and goes from) the RDS simulator."""

from __future__ import annotations

import json
import secrets
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.csi.conftest import disk_slots, file_names
from tests.support.csi_driver import BASE_PATH, Driver
from tests.support.kube import BIN, ControlPlane
from tests.support.rossim import RosSim
from tests.support.wait import wait_for

pytestmark = pytest.mark.integration
PROVISIONER = BIN / "csi-provisioner"
DRIVER_NAME = "rds.csi.trellis.dev"


@pytest.fixture(scope="module")
def provisioner(
    control_plane: ControlPlane, driver: Driver, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    if not PROVISIONER.exists():
        pytest.fail(f"{PROVISIONER} is missing: `make tools` builds it (hack/csi-sidecars.sh)")
    log = tmp_path_factory.mktemp("provisioner") / "csi-provisioner.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                str(PROVISIONER),
                f"--csi-address={driver.socket}",
                f"--kubeconfig={control_plane.kubeconfig}",
                "--leader-election=false",
                "--feature-gates=Topology=false",
                "--timeout=30s",
                "--retry-interval-start=1s",
                "--retry-interval-max=5s",
                "--v=4",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def storage_class(cp: ControlPlane, **parameters: str) -> str:
    name = f"rds-e2e-{secrets.token_hex(3)}"
    cp.apply(
        {
            "apiVersion": "storage.k8s.io/v1",
            "kind": "StorageClass",
            "metadata": {"name": name},
            "provisioner": DRIVER_NAME,
            "reclaimPolicy": "Delete",
            "volumeBindingMode": "Immediate",
            "allowVolumeExpansion": True,
            "parameters": {"basePath": BASE_PATH, **parameters},
        }
    )
    return name


def pvc(
    cp: ControlPlane,
    namespace: str,
    sc: str,
    name: str,
    mode: str = "Filesystem",
    access: str = "ReadWriteOnce",
) -> None:
    cp.apply(
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": name},
            "spec": {
                "storageClassName": sc,
                "accessModes": [access],
                "volumeMode": mode,
                "resources": {"requests": {"storage": "1Gi"}},
            },
        },
        namespace=namespace,
    )


def get(cp: ControlPlane, *args: str) -> dict[str, Any]:
    return dict(json.loads(cp.kubectl("get", *args, "-o", "json").stdout))


def delete_claim(cp: ControlPlane, namespace: str, name: str, pv: str | None = None) -> None:
    """Delete a claim the way a full cluster would.

    The test control plane runs the PV binder but not the pvc-/pv-protection controllers, so the
    protection finalizers (which those controllers drop once no pod uses the claim, and once the PV
    is released) are dropped here; nothing else about the deletion is emulated.
    """
    cp.kubectl("delete", "pvc", name, "-n", namespace, "--wait=false")
    patch = '{"metadata":{"finalizers":null}}'
    cp.kubectl("patch", "pvc", name, "-n", namespace, "--type=merge", "-p", patch, check=False)
    if pv is None:
        return

    def released() -> bool:
        obj = cp.kubectl("get", "pv", pv, "-o", "json", check=False)
        if obj.returncode != 0:
            return True
        if json.loads(obj.stdout)["metadata"].get("deletionTimestamp"):
            cp.kubectl("patch", "pv", pv, "--type=merge", "-p", patch, check=False)
        return False

    wait_for(released, timeout=90, interval=0.5, what=f"PV {pv} deleted by the provisioner")


def bound_pv(cp: ControlPlane, namespace: str, name: str) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        claim = get(cp, "pvc", name, "-n", namespace)
        if claim.get("status", {}).get("phase") != "Bound":
            return None
        return get(cp, "pv", claim["spec"]["volumeName"])

    return wait_for(probe, timeout=90, interval=0.5, what=f"PVC {namespace}/{name} Bound")


@pytest.mark.usefixtures("provisioner")
def test_pvc_binds_to_an_rds_disk_and_deleting_it_removes_disk_and_file(
    control_plane: ControlPlane, namespace: str, sim: RosSim
) -> None:
    sc = storage_class(control_plane, fsType="xfs")
    pvc(control_plane, namespace, sc, "data")
    pv = bound_pv(control_plane, namespace, "data")
    handle = pv["spec"]["csi"]["volumeHandle"]
    assert pv["spec"]["csi"]["driver"] == DRIVER_NAME and len(handle) <= 32
    assert pv["spec"]["csi"]["fsType"] == "xfs"
    attrs = pv["spec"]["csi"]["volumeAttributes"]
    disk = sim.control.disk(handle)
    assert disk["nvme_tcp_export"] and disk["nqn"] == attrs["nqn"] and disk["size"] == 1 << 30
    assert attrs["filePath"] == disk["file_path"] == f"{BASE_PATH}/{handle}.img"

    delete_claim(control_plane, namespace, "data", pv["metadata"]["name"])
    assert handle not in disk_slots(sim), "the provisioner deletes the PV only after DeleteVolume succeeded"
    assert disk["file_path"] not in file_names(sim)
    control_plane.kubectl("delete", "storageclass", sc)


@pytest.mark.usefixtures("provisioner")
def test_rwx_block_pvc_for_kubevirt(control_plane: ControlPlane, namespace: str, sim: RosSim) -> None:
    sc = storage_class(control_plane)
    pvc(control_plane, namespace, sc, "vm-disk", mode="Block", access="ReadWriteMany")
    pv = bound_pv(control_plane, namespace, "vm-disk")
    assert pv["spec"]["volumeMode"] == "Block" and pv["spec"]["accessModes"] == ["ReadWriteMany"]
    assert pv["spec"]["csi"]["volumeHandle"] in disk_slots(sim)
    delete_claim(control_plane, namespace, "vm-disk", pv["metadata"]["name"])
    assert pv["spec"]["csi"]["volumeHandle"] not in disk_slots(sim)
    control_plane.kubectl("delete", "storageclass", sc)


@pytest.mark.usefixtures("provisioner")
def test_bad_storage_class_parameter_is_reported_on_the_claim(
    control_plane: ControlPlane, namespace: str, sim: RosSim
) -> None:
    sc = storage_class(control_plane, nvmePort="99999")
    before = disk_slots(sim)
    pvc(control_plane, namespace, sc, "bad")

    def event() -> str | None:
        events = get(control_plane, "events", "-n", namespace, "--field-selector", "involvedObject.name=bad")
        for item in events["items"]:
            if item["reason"] == "ProvisioningFailed":
                return str(item["message"])
        return None

    message = wait_for(event, timeout=60, interval=0.5, what="ProvisioningFailed event")
    assert "InvalidArgument" in message and "nvmePort" in message
    assert get(control_plane, "pvc", "bad", "-n", namespace)["status"]["phase"] == "Pending"
    assert disk_slots(sim) == before
    delete_claim(control_plane, namespace, "bad")
    control_plane.kubectl("delete", "storageclass", sc)
