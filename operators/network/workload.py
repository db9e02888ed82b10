"""The managed dnsmasq's ConfigMap and Deployment for one Network (pure builders)."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from typing import Any

from trellis import API_VERSION, __version__
from trellis.api.network import NetworkSpec
from trellis.operators.network.dnsmasq import CONFIG_KEY, checksum

CHECKSUM_ANNOTATION = "trellis.dev/config-checksum"
SPEC_HASH_ANNOTATION = "trellis.dev/applied-hash"
NETWORK_LABEL = "trellis.dev/network"
CONFIG_DIR = "/etc/dnsmasq-trellis"
RUN_DIR = "/run/trellis"
LEASE_DIR = "/var/lib/trellis-dnsmasq"
IMAGES = "ghcr.io/trellis-dev"


@dataclass(frozen=True)
class WorkloadSettings:
    namespace: str
    dnsmasq_image: str
    picker_image: str
    image_pull_policy: str = "IfNotPresent"
    # Report the Network served only once a ready Pod runs its current config. Off only where
    # nothing runs the Deployment (tests that run the rendered config with dnsmasq themselves).
    await_rollout: bool = True

    @classmethod
    def from_env(cls) -> WorkloadSettings:
        return cls(
            namespace=os.environ.get("TRELLIS_NAMESPACE", "trellis-system"),
            # What `make image` builds (hack/image.sh); the chart always sets both.
            dnsmasq_image=os.environ.get("TRELLIS_DNSMASQ_IMAGE", f"{IMAGES}/dnsmasq:{__version__}"),
            picker_image=os.environ.get("TRELLIS_OPERATOR_IMAGE", f"{IMAGES}/trellis:{__version__}"),
            image_pull_policy=os.environ.get("TRELLIS_IMAGE_PULL_POLICY", "IfNotPresent"),
            await_rollout=os.environ.get("TRELLIS_DNSMASQ_AWAIT_ROLLOUT", "true").lower()
            not in ("0", "false"),
        )


def object_name(network: str) -> str:
    # Network names are DNS subdomains of up to 253 characters; object names here must stay short.
    name = f"dnsmasq-{network}"
    if len(name) <= 63:
        return name
    return f"dnsmasq-{network[:45]}-{hashlib.sha256(network.encode()).hexdigest()[:8]}"


def _owner(network: str, uid: str) -> list[dict[str, Any]]:
    return [
        {
            "apiVersion": API_VERSION,
            "kind": "Network",
            "name": network,
            "uid": uid,
            "controller": True,
            "blockOwnerDeletion": False,
        }
    ]


def object_labels(network: str) -> dict[str, str]:
    """Labels of the managed dnsmasq's objects (and Pods) for ``network``."""
    return _labels(network)


def _labels(network: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "dnsmasq",
        "app.kubernetes.io/part-of": "trellis",
        "app.kubernetes.io/managed-by": "trellis-network-operator",
        NETWORK_LABEL: network[:63].rstrip("-."),
    }


def config_map(network: str, uid: str, config: str, settings: WorkloadSettings) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": object_name(network),
            "namespace": settings.namespace,
            "labels": _labels(network),
            "ownerReferences": _owner(network, uid),
        },
        "data": {CONFIG_KEY: config},
    }


def deployment(
    network: str, uid: str, spec: NetworkSpec, config: str, settings: WorkloadSettings
) -> dict[str, Any]:
    name = object_name(network)
    labels = _labels(network)
    placement = spec.dnsmasq
    picker_args = ["--cidr", spec.cidr, "--write", f"{RUN_DIR}/interface.conf"]
    if placement and placement.address:
        picker_args += ["--address", placement.address]
    if placement and placement.interface:
        picker_args += ["--interface", placement.interface]
    if placement and placement.parent_interface:
        picker_args += ["--parent", placement.parent_interface]
    if spec.vlan is not None:
        picker_args += ["--vlan", str(spec.vlan)]
    volumes = [
        {"name": "config", "configMap": {"name": name}},
        {"name": "run", "emptyDir": {}},
        {"name": "leases", "emptyDir": {}},
    ]
    mounts = [
        {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
        {"name": "run", "mountPath": RUN_DIR},
        {"name": "leases", "mountPath": LEASE_DIR},
    ]
    if placement and placement.address:
        # DNS on TCP answers only once dnsmasq has bound the Network's interface.
        readiness: dict[str, Any] = {"tcpSocket": {"host": placement.address, "port": 53}}
    else:
        readiness = {"exec": {"command": ["dnsmasq", "--test", f"--conf-file={CONFIG_DIR}/{CONFIG_KEY}"]}}
    readiness.update({"initialDelaySeconds": 2, "periodSeconds": 10, "failureThreshold": 3})
    pod_spec: dict[str, Any] = {
        "hostNetwork": True,
        "dnsPolicy": "ClusterFirstWithHostNet",
        "automountServiceAccountToken": False,
        "initContainers": [
            {
                "name": "interface",
                "image": settings.picker_image,
                "imagePullPolicy": settings.image_pull_policy,
                "command": ["python", "-m", "trellis.operators.network.ifpicker", *picker_args],
                "securityContext": {
                    # The Trellis image's user is 65532, and capabilities added to a non-root
                    # container are not effective: NET_ADMIN needs uid 0 here.
                    "runAsUser": 0,
                    "capabilities": {"drop": ["ALL"], "add": ["NET_ADMIN"]},
                    "allowPrivilegeEscalation": False,
                },
                "volumeMounts": [{"name": "run", "mountPath": RUN_DIR}],
            }
        ],
        "containers": [
            {
                "name": "dnsmasq",
                "image": settings.dnsmasq_image,
                "imagePullPolicy": settings.image_pull_policy,
                "command": ["dnsmasq", "--keep-in-foreground", f"--conf-file={CONFIG_DIR}/{CONFIG_KEY}"],
                "securityContext": {
                    # Ports 53/67/69, raw DHCP sockets and ARP entries; then it drops to nobody.
                    "capabilities": {
                        "drop": ["ALL"],
                        "add": ["NET_BIND_SERVICE", "NET_RAW", "NET_ADMIN", "SETUID", "SETGID", "CHOWN"],
                    },
                    "allowPrivilegeEscalation": False,
                    "readOnlyRootFilesystem": True,
                },
                "readinessProbe": readiness,
                "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"memory": "128Mi"}},
                "volumeMounts": mounts,
            }
        ],
        "volumes": volumes,
    }
    if placement and placement.node_name:
        pod_spec["nodeName"] = placement.node_name
    if placement and placement.node_selector:
        pod_spec["nodeSelector"] = dict(placement.node_selector)
    body: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "namespace": settings.namespace,
            "labels": labels,
            "ownerReferences": _owner(network, uid),
        },
        "spec": {
            "replicas": 1,
            # Two dnsmasq on one host network would fight over ports 53/67/69.
            "strategy": {"type": "Recreate"},
            "selector": {
                "matchLabels": {NETWORK_LABEL: labels[NETWORK_LABEL], "app.kubernetes.io/name": "dnsmasq"}
            },
            "template": {
                "metadata": {"labels": labels, "annotations": {CHECKSUM_ANNOTATION: checksum(config)}},
                "spec": pod_spec,
            },
        },
    }
    body["metadata"]["annotations"] = {SPEC_HASH_ANNOTATION: spec_hash(body)}
    return body


def spec_hash(body: dict[str, Any]) -> str:
    relevant = {k: body.get(k) for k in ("spec", "data")}
    relevant["labels"] = body["metadata"].get("labels")
    blob = json.dumps(relevant, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:32]
