"""Trellis installed the way users install it: images from `make image`, `helm install` of the chart.

The images come from ``build/images/images.json`` (written by ``hack/image.sh``) and are imported
into the test node's containerd, so kubelet finds them under the references the chart uses. The
lab devices the Pods talk to (the RDS simulator for the CSI driver) listen on the node's host-side
address, the only host address Pods can reach.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.support.kube import BIN, REPO, ControlPlane
from tests.support.wait import wait_for

CHART = REPO / "charts" / "trellis"
IMAGES_JSON = REPO / "build" / "images" / "images.json"
RELEASE = "trellis"
RELEASE_NAMESPACE = "trellis-system"
DRIVER_NAME = "rds.csi.trellis.dev"
BASE_PATH = "storage-pool/trellis-csi"
STORAGE_CLASS = "rds-lab"
BOOT_NODE_PORT = 30847
# What the session's terminal summary shows of the release (tests/conftest.py): its Pods, the node.
SUMMARY: list[str] = []


@dataclass(frozen=True)
class Image:
    name: str
    reference: str
    archive: Path
    digest: str


def built_images() -> dict[str, Image]:
    """What `make image` produced, by image name; fails with the command to run when it is missing."""
    if not IMAGES_JSON.is_file():
        raise AssertionError(
            f"{IMAGES_JSON} is missing: `make image` (part of `make test`) builds the images"
        )
    index = json.loads(IMAGES_JSON.read_text())
    images = {}
    for entry in index["images"]:
        archive = Path(entry["archive"])
        images[entry["name"]] = Image(
            name=entry["name"],
            reference=entry["references"][0],
            archive=archive if archive.is_absolute() else REPO / archive,
            digest=entry["digest"],
        )
    return images


def split_reference(reference: str) -> tuple[str, str]:
    """``registry/repo:tag`` -> (``registry/repo``, ``tag``); a port in the registry is not a tag."""
    repository, _, tag = reference.rpartition(":")
    if "/" in tag or not repository:
        return reference, "latest"
    return repository, tag


@dataclass(frozen=True)
class LabDevices:
    """Where the release's peers are: the node, and the RDS simulator the CSI driver uses."""

    node_ip: str
    kubelet_dir: str
    rds_address: str
    rds_ssh_port: int
    rds_user: str
    rds_known_hosts: str
    rds_private_key: str
    rds_files: str


def lab_values(lab: LabDevices, images: dict[str, Image], default_class: bool = False) -> dict[str, Any]:
    """Chart values for the lab: our images, the boot service on a NodePort, the CSI driver on the
    simulated RDS with the loop transport (this kernel has no NVMe/TCP), no resizer (its image cannot
    be built here: docs/operations.md). ``default_class`` makes the RDS StorageClass the cluster's
    default, so claims without a class (a managed Registry's) land on the RDS too."""
    repository, tag = split_reference(images["trellis"].reference)
    return {
        "global": {"image": {"repository": repository, "tag": tag, "pullPolicy": "IfNotPresent"}},
        "network": {"dnsmasqImage": images["dnsmasq"].reference},
        "talosdevice": {
            "bootService": {
                "enabled": True,
                "publicURL": f"http://{lab.node_ip}:{BOOT_NODE_PORT}",
                "service": {"type": "NodePort", "nodePort": BOOT_NODE_PORT},
            }
        },
        "csi": {
            "enabled": True,
            "rds": {
                "address": lab.rds_address,
                "sshPort": lab.rds_ssh_port,
                "user": lab.rds_user,
                "knownHosts": lab.rds_known_hosts,
                "privateKey": lab.rds_private_key,
                "password": "",
            },
            "node": {"transport": "loop", "loopRoot": lab.rds_files, "kubeletDir": lab.kubelet_dir},
            "sidecars": {
                "provisioner": images["csi-provisioner"].reference,
                "snapshotter": images["csi-snapshotter"].reference,
                "resizer": "",
                "livenessprobe": "",
            },
            "storageClasses": [
                {
                    "name": STORAGE_CLASS,
                    "default": default_class,
                    "reclaimPolicy": "Delete",
                    "volumeBindingMode": "Immediate",
                    "allowVolumeExpansion": True,
                    "parameters": {"basePath": BASE_PATH},
                }
            ],
        },
    }


def helm(cp: ControlPlane, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [str(BIN / "helm"), "--kubeconfig", str(cp.kubeconfig), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=cp.env(),
    )
    if proc.returncode != 0:
        raise AssertionError(
            f"helm {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


def write_values(path: Path, values: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(values, sort_keys=False))
    return path


def get_json(cp: ControlPlane, *args: str) -> dict[str, Any]:
    return dict(json.loads(cp.kubectl("get", *args, "-o", "json").stdout))


def workloads_ready(cp: ControlPlane, namespace: str) -> list[str]:
    """Names of the Deployments and DaemonSets in ``namespace`` that are not fully rolled out."""
    waiting = []
    for kind in ("deployments", "daemonsets"):
        for item in get_json(cp, kind, "-n", namespace)["items"]:
            status = item.get("status", {})
            if kind == "deployments":
                want = item["spec"].get("replicas", 1)
                ok = status.get("readyReplicas", 0) == want and status.get("updatedReplicas", 0) == want
            else:
                want = status.get("desiredNumberScheduled", 0)
                ok = want > 0 and status.get("numberReady", 0) == want
            if not ok or status.get("observedGeneration") != item["metadata"]["generation"]:
                waiting.append(f"{kind}/{item['metadata']['name']}")
    return waiting


def pod_summary(cp: ControlPlane) -> str:
    return cp.kubectl("get", "pods", "-A", "-o", "wide").stdout


def wait_pod_phase(
    cp: ControlPlane, namespace: str, name: str, phases: set[str], timeout: float = 120
) -> str:
    def probe() -> str | None:
        pod = get_json(cp, "pod", name, "-n", namespace)
        phase = str(pod.get("status", {}).get("phase", ""))
        return phase if phase in phases else None

    try:
        return wait_for(probe, timeout=timeout, interval=0.5, what=f"pod {namespace}/{name} in {phases}")
    except AssertionError:
        described = cp.kubectl("describe", "pod", name, "-n", namespace, check=False).stdout
        raise AssertionError(f"pod {namespace}/{name} did not reach {phases}:\n{described[-3000:]}") from None


def wait_pod_ready(cp: ControlPlane, namespace: str, name: str, timeout: float = 120) -> None:
    def probe() -> bool:
        pod = get_json(cp, "pod", name, "-n", namespace)
        conditions = pod.get("status", {}).get("conditions", []) or []
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

    try:
        wait_for(probe, timeout=timeout, interval=0.5, what=f"pod {namespace}/{name} Ready")
    except AssertionError:
        described = cp.kubectl("describe", "pod", name, "-n", namespace, check=False).stdout
        raise AssertionError(f"pod {namespace}/{name} not Ready:\n{described[-3000:]}") from None


def delete_pod(cp: ControlPlane, namespace: str, name: str) -> None:
    cp.kubectl("delete", "pod", name, "-n", namespace, "--grace-period=1", "--wait=true", timeout=120)


def main(argv: list[str] | None = None) -> None:
    """``python -m tests.support.release values ...``: the lab values `make up` installs the chart with."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m tests.support.release")
    sub = parser.add_subparsers(dest="command", required=True)
    values = sub.add_parser("values", help="write the lab's chart values (YAML) to stdout")
    values.add_argument(
        "--node-json", type=Path, required=True, help="the node's node.json (python -m labnode)"
    )
    values.add_argument(
        "--rds-dir", type=Path, required=True, help="data dir of the CSI driver's RDS simulator"
    )
    values.add_argument("--rds-user", required=True)
    values.add_argument("--rds-key", type=Path, required=True, help="the SSH private key of --rds-user")
    values.add_argument("--default-class", action="store_true", help="make the RDS StorageClass the default")
    args = parser.parse_args(argv)
    node = json.loads(args.node_json.read_text())
    rds = json.loads((args.rds_dir / "ready.json").read_text())
    lab = LabDevices(
        node_ip=node["node_ip"],
        kubelet_dir=node["kubelet_root_dir"],
        rds_address=rds["host"],
        rds_ssh_port=rds["ssh_port"],
        rds_user=args.rds_user,
        rds_known_hosts=rds["known_hosts"],
        rds_private_key=args.rds_key.read_text(),
        rds_files=str(args.rds_dir.resolve() / "files"),
    )
    print(yaml.safe_dump(lab_values(lab, built_images(), args.default_class), sort_keys=False), end="")


if __name__ == "__main__":
    main()
