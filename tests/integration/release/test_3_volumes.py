"""StorageClass-backed PVCs end to end: provisioned by the CSI controller Pod on the simulated RDS,
staged and published by the node plugin Pod when kubelet mounts them into a workload Pod."""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from typing import Any

import pytest

from tests.integration.release.conftest import Release
from tests.support.release import (
    BASE_PATH,
    DRIVER_NAME,
    STORAGE_CLASS,
    delete_pod,
    get_json,
    wait_pod_phase,
    wait_pod_ready,
)
from tests.support.wait import wait_for

pytestmark = pytest.mark.integration
GIB = 1 << 30


def claim(rel: Release, namespace: str, name: str, **spec: Any) -> None:
    body: dict[str, Any] = {
        "storageClassName": STORAGE_CLASS,
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": "1Gi"}},
    }
    body.update(spec)
    rel.cp.apply(
        {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name}, "spec": body},
        namespace=namespace,
    )


def bound_pv(rel: Release, namespace: str, name: str) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        pvc = get_json(rel.cp, "pvc", name, "-n", namespace)
        if pvc.get("status", {}).get("phase") != "Bound":
            return None
        return get_json(rel.cp, "pv", pvc["spec"]["volumeName"])

    return wait_for(probe, timeout=120, interval=0.5, what=f"PVC {namespace}/{name} Bound")


def pod(
    rel: Release,
    namespace: str,
    name: str,
    script: str,
    claim_name: str,
    *,
    block: bool = False,
    read_only: bool = False,
    restart: str = "Never",
) -> None:
    """A workload Pod from the Trellis image (it has a shell) using one claim."""
    container: dict[str, Any] = {
        "name": "work",
        "image": rel.images["trellis"].reference,
        "imagePullPolicy": "IfNotPresent",
        "command": ["sh", "-c", script],
        "securityContext": {"runAsUser": 0, "runAsNonRoot": False},
    }
    if block:
        container["volumeDevices"] = [{"name": "vol", "devicePath": "/dev/xvda"}]
    else:
        container["volumeMounts"] = [{"name": "vol", "mountPath": "/data"}]
    rel.cp.apply(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name},
            "spec": {
                "restartPolicy": restart,
                "terminationGracePeriodSeconds": 1,
                "containers": [container],
                "volumes": [
                    {"name": "vol", "persistentVolumeClaim": {"claimName": claim_name, "readOnly": read_only}}
                ],
            },
        },
        namespace=namespace,
    )


def logs(rel: Release, namespace: str, name: str) -> str:
    return rel.cp.kubectl("logs", name, "-n", namespace).stdout


def run_to_completion(
    rel: Release, namespace: str, name: str, script: str, claim_name: str, **kw: Any
) -> str:
    pod(rel, namespace, name, script, claim_name, **kw)
    phase = wait_pod_phase(rel.cp, namespace, name, {"Succeeded", "Failed"}, timeout=180)
    out = logs(rel, namespace, name)
    assert phase == "Succeeded", f"pod {name} failed:\n{out}"
    delete_pod(rel.cp, namespace, name)
    return out


def delete_claim(rel: Release, namespace: str, name: str) -> None:
    rel.cp.kubectl("delete", "pvc", name, "-n", namespace, "--wait=true", timeout=120)


def rds_slots(rel: Release) -> set[str]:
    return {d["slot"] for d in rel.rds.control.disks()}


def rds_files(rel: Release) -> set[str]:
    return {r["name"] for r in rel.rds.control.menu("file")}


def kubelet_mounts(rel: Release, pv_name: str, handle: str) -> list[str]:
    """The host's mount table lines of one volume: kubelet's publish path names the PV, its staging
    path the sha256 of the volume handle (kubelet's CSI layout since 1.29)."""
    staging = hashlib.sha256(handle.encode()).hexdigest()
    with open("/proc/self/mountinfo") as table:
        return [line for line in table if f"/{pv_name}/" in line or f"/{staging}/" in line]


def test_filesystem_claim_keeps_its_data_across_pods_and_delete_removes_disk_and_file(
    release: Release, namespace: str
) -> None:
    token = secrets.token_hex(8)
    claim(release, namespace, "data")
    pv = bound_pv(release, namespace, "data")
    handle = pv["spec"]["csi"]["volumeHandle"]
    assert pv["spec"]["csi"]["driver"] == DRIVER_NAME
    disk = release.rds.control.disk(handle)
    assert disk["file_path"] == f"{BASE_PATH}/{handle}.img"

    run_to_completion(release, namespace, "writer", f"echo {token} > /data/token && sync", "data")
    out = run_to_completion(release, namespace, "reader", "cat /data/token && df -P /data", "data")
    assert out.splitlines()[0] == token
    assert "/data" in out

    delete_claim(release, namespace, "data")
    wait_for(
        lambda: handle not in rds_slots(release), timeout=120, what=f"disk {handle} deleted from the RDS"
    )
    assert disk["file_path"] not in rds_files(release)
    assert not kubelet_mounts(release, pv["metadata"]["name"], handle), "kubelet left a mount behind"


def test_raw_block_claim_reaches_the_pod_as_a_device(release: Release, namespace: str) -> None:
    token = secrets.token_hex(8)
    claim(release, namespace, "raw", volumeMode="Block")
    bound_pv(release, namespace, "raw")
    run_to_completion(
        release, namespace, "block-writer",
        f"printf {token} | dd of=/dev/xvda bs=512 count=1 conv=sync,fsync 2>/dev/null && test -b /dev/xvda",
        "raw", block=True,
    )  # fmt: skip
    out = run_to_completion(
        release, namespace, "block-reader", "dd if=/dev/xvda bs=16 count=1 2>/dev/null", "raw", block=True
    )
    assert out.startswith(token)
    delete_claim(release, namespace, "raw")


def test_read_only_claim_is_read_only_inside_the_pod(release: Release, namespace: str) -> None:
    claim(release, namespace, "shared")
    bound_pv(release, namespace, "shared")
    run_to_completion(release, namespace, "seed", "echo seeded > /data/seed && sync", "shared")
    out = run_to_completion(
        release, namespace, "ro-reader",
        "cat /data/seed; if touch /data/new 2>/tmp/err; then echo WRITABLE; else cat /tmp/err; fi; "
        "grep ' /data ' /proc/mounts",
        "shared", read_only=True,
    )  # fmt: skip
    lines = out.splitlines()
    assert lines[0] == "seeded"
    assert "WRITABLE" not in out and "Read-only file system" in out
    assert re.search(r" /data \S+ ro[ ,]", out), out
    delete_claim(release, namespace, "shared")


def test_volume_stats_reach_kubelet_metrics(release: Release, namespace: str) -> None:
    claim(release, namespace, "stats")
    bound_pv(release, namespace, "stats")
    pod(
        release, namespace, "filler",
        "dd if=/dev/zero of=/data/fill bs=1M count=64 conv=fsync 2>/dev/null && sleep 3600",
        "stats", restart="Always",
    )  # fmt: skip
    wait_pod_ready(release.cp, namespace, "filler")
    node = release.node.spec.name

    def used_bytes() -> float | None:
        text = release.cp.kubectl("get", "--raw", f"/api/v1/nodes/{node}/proxy/metrics").stdout
        for line in text.splitlines():
            ours = 'persistentvolumeclaim="stats"' in line and f'namespace="{namespace}"' in line
            if line.startswith("kubelet_volume_stats_used_bytes{") and ours:
                value = float(line.rsplit(" ", 1)[1])
                return value if value >= 64 * (1 << 20) else None
        return None

    used = wait_for(used_bytes, timeout=150, interval=2, what="kubelet_volume_stats_used_bytes for the claim")
    assert used >= 64 * (1 << 20)
    delete_pod(release.cp, namespace, "filler")
    delete_claim(release, namespace, "stats")


def test_snapshot_restores_into_a_new_claim(
    release: Release, namespace: str, snapshot_controller: None
) -> None:
    token = secrets.token_hex(8)
    claim(release, namespace, "origin")
    bound_pv(release, namespace, "origin")
    run_to_completion(release, namespace, "origin-writer", f"echo {token} > /data/token && sync", "origin")
    classes = get_json(release.cp, "volumesnapshotclasses")["items"]
    assert [c for c in classes if c["driver"] == DRIVER_NAME], "the chart renders a VolumeSnapshotClass"
    snapshot_class = next(c for c in classes if c["driver"] == DRIVER_NAME)["metadata"]["name"]
    release.cp.apply(
        {
            "apiVersion": "snapshot.storage.k8s.io/v1",
            "kind": "VolumeSnapshot",
            "metadata": {"name": "snap"},
            "spec": {
                "volumeSnapshotClassName": snapshot_class,
                "source": {"persistentVolumeClaimName": "origin"},
            },
        },
        namespace=namespace,
    )

    def ready() -> bool:
        snap = get_json(release.cp, "volumesnapshot", "snap", "-n", namespace)
        return bool(snap.get("status", {}).get("readyToUse"))

    wait_for(ready, timeout=150, interval=1, what="VolumeSnapshot readyToUse")
    claim(
        release, namespace, "restored",
        dataSource={"name": "snap", "kind": "VolumeSnapshot", "apiGroup": "snapshot.storage.k8s.io"},
    )  # fmt: skip
    bound_pv(release, namespace, "restored")
    out = run_to_completion(release, namespace, "restored-reader", "cat /data/token", "restored")
    assert out.strip() == token
    release.cp.kubectl("delete", "volumesnapshot", "snap", "-n", namespace, "--wait=true", timeout=120)
    delete_claim(release, namespace, "restored")
    delete_claim(release, namespace, "origin")


def test_claims_left_nothing_on_the_rds(release: Release) -> None:
    """Run after the others in this module: every disk they made is gone again."""
    leftovers = {
        slot for slot in rds_slots(release) if json.dumps(release.rds.control.disk(slot)).find(BASE_PATH) >= 0
    }
    pvs = {
        pv["spec"]["csi"]["volumeHandle"]
        for pv in get_json(release.cp, "pv")["items"]
        if pv["spec"].get("csi")
    }
    assert leftovers <= pvs, f"disks on the RDS with no PV: {leftovers - pvs}"
