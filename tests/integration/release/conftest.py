"""One Trellis release per test session, installed with `helm install` onto the real test node.

Every component runs as a Pod from the images `make image` built: the five operators, the boot
service, the CSI controller (with the provisioner and snapshotter sidecars) and the CSI node plugin,
which kubelet drives for the Pods' volumes. The CSI driver talks to an RDS simulator on the node's
host-side address; the node plugin attaches the simulator's volume files with the loop transport
(this kernel has no NVMe/TCP: docs/csi.md).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.kube import REPO, ControlPlane
from tests.support.release import (
    CHART,
    RELEASE,
    RELEASE_NAMESPACE,
    SUMMARY,
    Image,
    LabDevices,
    built_images,
    get_json,
    helm,
    lab_values,
    pod_summary,
    workloads_ready,
    write_values,
)
from tests.support.rossim import RosSim, running_rossim
from tests.support.wait import wait_for

pytestmark = pytest.mark.integration
SNAPSHOT_CRDS = REPO / "build" / "snapshot-crds"
SNAPSHOT_KINDS = ("volumesnapshots", "volumesnapshotcontents", "volumesnapshotclasses")


@dataclass
class Release:
    cp: ControlPlane
    namespace: str
    rds: RosSim
    images: dict[str, Image]
    values_path: Path
    node: Any

    @property
    def loop_root(self) -> Path:
        return self.rds.data_dir / "files"

    def helm(self, *args: str, timeout: float = 600) -> str:
        return helm(self.cp, *args, timeout=timeout).stdout


@pytest.fixture(scope="session")
def images() -> dict[str, Image]:
    return built_images()


@pytest.fixture(scope="session")
def lab_rds(node: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RosSim]:
    """The RDS the CSI driver's Pods use, on the node's host-side address."""
    with running_rossim(
        tmp_path_factory.mktemp("release-rds"),
        username="trellis-csi",
        tls=False,
        pool_size="100G",
        extra_args=["--host", node.spec.host_ip],
    ) as rds:
        yield rds


def snapshot_api(cp: ControlPlane) -> None:
    """The VolumeSnapshot CRDs from the external-snapshotter module (`make image` copies them)."""
    if not SNAPSHOT_CRDS.is_dir():
        raise AssertionError(f"{SNAPSHOT_CRDS} is missing: `make image` copies the snapshot CRDs there")
    cp.kubectl("apply", "--server-side", "-f", str(SNAPSHOT_CRDS))
    names = [f"crd/{kind}.snapshot.storage.k8s.io" for kind in SNAPSHOT_KINDS]
    cp.kubectl("wait", "--for=condition=Established", "--timeout=60s", *names)


@pytest.fixture(scope="session")
def release(
    crds: ControlPlane,
    node: Any,
    lab_rds: RosSim,
    images: dict[str, Image],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Release]:
    cp = crds
    for image in images.values():
        node.import_image(image.archive)
    snapshot_api(cp)
    lab = LabDevices(
        node_ip=node.spec.node_ip,
        kubelet_dir=str(node.spec.kubelet_dir),
        rds_address=lab_rds.host,
        rds_ssh_port=lab_rds.ssh_port,
        rds_user=lab_rds.username,
        rds_known_hosts=lab_rds.known_hosts_line,
        rds_private_key=lab_rds.client_key_path.read_text(),
        rds_files=str(lab_rds.data_dir / "files"),
    )
    values = write_values(tmp_path_factory.mktemp("release") / "lab-values.yaml", lab_values(lab, images))
    helm(
        cp, "upgrade", "--install", RELEASE, str(CHART), "-n", RELEASE_NAMESPACE, "--create-namespace",
        "-f", str(values), "--wait", "--timeout", "5m",
    )  # fmt: skip
    rel = Release(cp, RELEASE_NAMESPACE, lab_rds, images, values, node)
    try:
        wait_for(lambda: not workloads_ready(cp, RELEASE_NAMESPACE), timeout=120, what="every workload ready")
    except AssertionError:
        raise AssertionError(f"release not ready:\n{pod_summary(cp)}") from None
    info = get_json(cp, "node", node.spec.name)["status"]["nodeInfo"]
    SUMMARY.append(
        f"helm release {RELEASE} on node {node.spec.name} (kubelet {info['kubeletVersion']}, "
        f"{info['containerRuntimeVersion']}, {info['osImage']}):\n{pod_summary(cp).rstrip()}"
    )
    yield rel
    if os.environ.get("TRELLIS_KEEP_RELEASE"):
        return
    installed = helm(cp, "list", "-n", RELEASE_NAMESPACE, "-q").stdout.split()
    if RELEASE in installed:
        helm(cp, "uninstall", RELEASE, "-n", RELEASE_NAMESPACE, "--wait", "--timeout", "3m")


SNAPSHOT_CONTROLLER_RULES = [
    {"apiGroups": [""], "resources": ["persistentvolumes"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": [""], "resources": ["persistentvolumeclaims"], "verbs": ["get", "list", "watch", "update"]},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["list", "watch", "create", "update", "patch"]},
    {
        "apiGroups": ["snapshot.storage.k8s.io"],
        "resources": ["volumesnapshotclasses"],
        "verbs": ["get", "list", "watch"],
    },
    {
        "apiGroups": ["snapshot.storage.k8s.io"],
        "resources": ["volumesnapshotcontents"],
        "verbs": ["create", "get", "list", "watch", "update", "delete", "patch"],
    },
    {
        "apiGroups": ["snapshot.storage.k8s.io"],
        "resources": ["volumesnapshotcontents/status"],
        "verbs": ["patch"],
    },
    {
        "apiGroups": ["snapshot.storage.k8s.io"],
        "resources": ["volumesnapshots"],
        "verbs": ["get", "list", "watch", "update", "patch", "delete"],
    },
    {
        "apiGroups": ["snapshot.storage.k8s.io"],
        "resources": ["volumesnapshots/status"],
        "verbs": ["update", "patch"],
    },
]


@pytest.fixture(scope="session")
def snapshot_controller(release: Release) -> Iterator[None]:
    """The cluster's snapshot-controller (a cluster add-on, not part of the chart), as a Pod."""
    name = "snapshot-controller"
    ns = "kube-system"
    labels = {"app": name}
    release.cp.apply(
        [
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": ns}},
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRole",
                "metadata": {"name": name},
                "rules": SNAPSHOT_CONTROLLER_RULES,
            },
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRoleBinding",
                "metadata": {"name": name},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
                "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": ns}],
            },
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": name, "namespace": ns},
                "spec": {
                    "replicas": 1,
                    "selector": {"matchLabels": labels},
                    "template": {
                        "metadata": {"labels": labels},
                        "spec": {
                            "serviceAccountName": name,
                            "terminationGracePeriodSeconds": 1,
                            "containers": [
                                {
                                    "name": name,
                                    "image": release.images["snapshot-controller"].reference,
                                    "imagePullPolicy": "IfNotPresent",
                                    "args": ["--leader-election=false", "--v=2"],
                                }
                            ],
                        },
                    },
                },
            },
        ]
    )
    release.cp.kubectl("rollout", "status", f"deployment/{name}", "-n", ns, "--timeout=120s", timeout=150)
    yield
    release.cp.kubectl("delete", "deployment", name, "-n", ns, "--wait=false", check=False)
