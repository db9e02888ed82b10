"""The node under stress: the CSI node plugin Pod killed while a volume is in use, kubelet restarted
with Pods running. Volumes stay usable, nothing is mounted twice, and clean-up still happens."""

from __future__ import annotations

import pytest

from tests.integration.release.conftest import Release
from tests.integration.release.test_3_volumes import (
    bound_pv,
    claim,
    delete_claim,
    kubelet_mounts,
    pod,
    rds_slots,
)
from tests.support.release import DRIVER_NAME, delete_pod, get_json, wait_pod_ready
from tests.support.wait import wait_for

pytestmark = pytest.mark.integration


def exec_sh(rel: Release, namespace: str, name: str, script: str) -> str:
    return rel.cp.kubectl("exec", "-n", namespace, name, "--", "sh", "-c", script, timeout=60).stdout


def node_plugin_pod(rel: Release) -> dict[str, object]:
    pods = get_json(rel.cp, "pods", "-n", rel.namespace, "-l", "app.kubernetes.io/component=csi-node")[
        "items"
    ]
    assert len(pods) == 1, [p["metadata"]["name"] for p in pods]
    return dict(pods[0])


def holder(rel: Release, namespace: str, claim_name: str) -> tuple[str, str]:
    """A long-running Pod using the claim; returns the PV name and the volume handle."""
    claim(rel, namespace, claim_name)
    pv = bound_pv(rel, namespace, claim_name)
    pod(rel, namespace, "holder", "sleep 3600", claim_name, restart="Always")
    wait_pod_ready(rel.cp, namespace, "holder", timeout=180)
    return str(pv["metadata"]["name"]), str(pv["spec"]["csi"]["volumeHandle"])


def registered(rel: Release) -> bool:
    csinode = get_json(rel.cp, "csinode", rel.node.spec.name)
    return DRIVER_NAME in [d["name"] for d in csinode["spec"].get("drivers") or []]


def release_volume(rel: Release, namespace: str, claim_name: str, volume: tuple[str, str]) -> None:
    pv_name, handle = volume
    delete_pod(rel.cp, namespace, "holder")
    wait_for(lambda: not kubelet_mounts(rel, *volume), timeout=120, what=f"mounts of {pv_name} gone")
    delete_claim(rel, namespace, claim_name)
    wait_for(lambda: handle not in rds_slots(rel), timeout=120, what=f"disk {handle} deleted")


def test_killed_node_plugin_comes_back_and_the_mounted_volume_stays_usable(
    release: Release, namespace: str
) -> None:
    volume = holder(release, namespace, "chaos")
    exec_sh(release, namespace, "holder", "echo before > /data/log && sync")
    mounts_before = len(kubelet_mounts(release, *volume))
    assert mounts_before >= 2, "staged and published on the node"
    old = node_plugin_pod(release)
    old_uid = old["metadata"]["uid"]  # type: ignore[index]
    release.cp.kubectl(
        "delete", "pod", "-n", release.namespace, old["metadata"]["name"],  # type: ignore[index]
        "--grace-period=0", "--force", "--wait=true", timeout=120,
    )  # fmt: skip

    def replaced() -> bool:
        new = node_plugin_pod(release)
        return (
            new["metadata"]["uid"] != old_uid
            and all(  # type: ignore[index]
                c["ready"]
                for c in new.get("status", {}).get("containerStatuses", [])  # type: ignore[attr-defined]
            )
            and bool(new.get("status", {}).get("containerStatuses"))
        )  # type: ignore[attr-defined]

    wait_for(replaced, timeout=120, interval=1, what="a new node plugin Pod Ready")
    wait_for(lambda: registered(release), timeout=60, what="the new plugin registered with kubelet")
    assert exec_sh(
        release, namespace, "holder", "echo after >> /data/log && sync && cat /data/log"
    ).split() == [
        "before",
        "after",
    ]
    assert len(kubelet_mounts(release, *volume)) == mounts_before
    release_volume(release, namespace, "chaos", volume)


def test_kubelet_restart_with_pods_running_remounts_nothing(release: Release, namespace: str) -> None:
    volume = holder(release, namespace, "steady")
    before = kubelet_mounts(release, *volume)
    assert before, "the volume is mounted on the node"
    release.node.restart_kubelet()

    def node_ready() -> bool:
        node = get_json(release.cp, "node", release.node.spec.name)
        return any(c["type"] == "Ready" and c["status"] == "True" for c in node["status"]["conditions"])

    wait_for(node_ready, timeout=120, what="node Ready after the kubelet restart")
    wait_pod_ready(release.cp, namespace, "holder")

    def written() -> bool:
        # Until the new kubelet has synced its Pods it answers exec with "pod does not exist".
        out = release.cp.kubectl(
            "exec",
            "-n",
            namespace,
            "holder",
            "--",
            "sh",
            "-c",
            "echo ok > /data/f && cat /data/f",
            check=False,
        )
        return out.returncode == 0 and out.stdout.strip() == "ok"

    wait_for(written, timeout=60, interval=1, what="a write to the volume after the kubelet restart")
    assert sorted(kubelet_mounts(release, *volume)) == sorted(before), "kubelet mounted the volume again"
    release_volume(release, namespace, "steady", volume)
