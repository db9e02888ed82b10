"""Kubernetes objects of a managed registry: Deployment, Service, PVC, ConfigMaps, Secrets, CronJob.

Pure builders: they take the resolved plan and return plain dicts ready for the API.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field
from typing import Any

from trellis.operators.registry.config import ENV_HTTP_SECRET, ENV_PROXY_PASSWORD, ENV_PROXY_USERNAME, Paths

MANAGED_BY = "trellis-registry-operator"
REGISTRY_LABEL = "trellis.dev/registry"
CHECKSUM_ANNOTATION = "trellis.dev/config-checksum"
CONTAINER_PORT = 5000
DEBUG_PORT = 5001
# The official image's non-root user; fsGroup makes the volume writable for it.
RUN_AS = 1000
MAX_NAME = 63
SYSTEM_CERT_DIR = "/etc/ssl/certs"


def child_name(registry: str, suffix: str = "") -> str:
    """``registry-<name>[-suffix]``, shortened with a hash so it stays a valid DNS label."""
    name = f"registry-{registry}" + (f"-{suffix}" if suffix else "")
    if len(name) <= MAX_NAME:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    keep = MAX_NAME - len(digest) - 1 - (len(suffix) + 1 if suffix else 0)
    return f"registry-{registry}"[:keep].rstrip("-") + f"-{digest}" + (f"-{suffix}" if suffix else "")


@dataclass(frozen=True)
class Owner:
    """The Registry that owns what we create (cluster-scoped, so it may own namespaced objects)."""

    name: str
    uid: str
    api_version: str = "trellis.dev/v1alpha1"
    kind: str = "Registry"

    def reference(self) -> dict[str, Any]:
        return {
            "apiVersion": self.api_version,
            "kind": self.kind,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }


@dataclass(frozen=True)
class WorkloadPlan:
    owner: Owner
    namespace: str
    image: str
    replicas: int
    config_text: str
    checksum: str
    service_type: str
    service_port: int
    node_port: int | None
    load_balancer_ip: str | None
    storage_size: str
    storage_class: str | None
    auth: bool
    proxy_credentials: bool
    gc_schedule: str | None
    upstream_ca: bool = False
    paths: Paths = field(default_factory=Paths)


def labels(owner: Owner, component: str = "registry") -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "registry",
        "app.kubernetes.io/instance": child_name(owner.name),
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/managed-by": MANAGED_BY,
        "app.kubernetes.io/part-of": "trellis",
        REGISTRY_LABEL: owner.name,
    }


def _meta(
    owner: Owner, name: str, namespace: str, owned: bool = True, component: str = "registry"
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": namespace, "labels": labels(owner, component)}
    if owned:
        meta["ownerReferences"] = [owner.reference()]
    return meta


def config_map(plan: WorkloadPlan) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(plan.owner, child_name(plan.owner.name, "config"), plan.namespace),
        "data": {"config.yml": plan.config_text},
    }


def secret(
    owner: Owner, name: str, namespace: str, data: dict[str, str], secret_type: str = "Opaque"
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _meta(owner, name, namespace),
        "type": secret_type,
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in sorted(data.items())},
    }


def consumer_config_map(owner: Owner, namespace: str, data: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(owner, child_name(owner.name, "consumers"), namespace, component="consumer-config"),
        "data": data,
    }


def persistent_volume_claim(plan: WorkloadPlan) -> dict[str, Any]:
    """Not owned by the Registry: deleting the Registry must not delete the images."""
    spec: dict[str, Any] = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": plan.storage_size}},
    }
    if plan.storage_class:
        spec["storageClassName"] = plan.storage_class
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": _meta(plan.owner, child_name(plan.owner.name, "data"), plan.namespace, owned=False),
        "spec": spec,
    }


def _volumes(plan: WorkloadPlan) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    name = plan.owner.name
    paths = plan.paths
    config_dir = paths.config.rsplit("/", 1)[0]
    volumes: list[dict[str, Any]] = [
        {"name": "config", "configMap": {"name": child_name(name, "config")}},
        {"name": "tls", "secret": {"secretName": child_name(name, "tls"), "defaultMode": 0o440}},
        {"name": "data", "persistentVolumeClaim": {"claimName": child_name(name, "data")}},
    ]
    mounts: list[dict[str, Any]] = [
        {"name": "config", "mountPath": config_dir, "readOnly": True},
        {"name": "tls", "mountPath": paths.tls_dir, "readOnly": True},
        {"name": "data", "mountPath": paths.storage},
    ]
    if plan.upstream_ca:
        ca_secret = child_name(name, "upstream-ca")
        volumes.append({"name": "upstream-ca", "secret": {"secretName": ca_secret, "defaultMode": 0o444}})
        mounts.append({"name": "upstream-ca", "mountPath": paths.upstream_ca_dir, "readOnly": True})
    if plan.auth:
        volumes.append(
            {"name": "auth", "secret": {"secretName": child_name(name, "auth"), "defaultMode": 0o440}}
        )
        mounts.append({"name": "auth", "mountPath": paths.auth_dir, "readOnly": True})
    return volumes, mounts


def _env(plan: WorkloadPlan) -> list[dict[str, Any]]:
    def from_secret(var: str, secret_name: str, key: str) -> dict[str, Any]:
        return {"name": var, "valueFrom": {"secretKeyRef": {"name": secret_name, "key": key}}}

    env = [from_secret(ENV_HTTP_SECRET, child_name(plan.owner.name, "http"), "secret")]
    if plan.upstream_ca:
        # Go reads the certificates of every directory listed here instead of its defaults.
        env.append({"name": "SSL_CERT_DIR", "value": f"{SYSTEM_CERT_DIR}:{plan.paths.upstream_ca_dir}"})
    if plan.proxy_credentials:
        upstream = child_name(plan.owner.name, "upstream")
        env += [
            from_secret(ENV_PROXY_USERNAME, upstream, "username"),
            from_secret(ENV_PROXY_PASSWORD, upstream, "password"),
        ]
    return env


def _pod_spec(plan: WorkloadPlan, args: list[str], probes: bool) -> dict[str, Any]:
    volumes, mounts = _volumes(plan)
    container: dict[str, Any] = {
        "name": "registry",
        "image": plan.image,
        "command": ["registry"],
        "args": args,
        "env": _env(plan),
        "volumeMounts": mounts,
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    if probes:
        container["ports"] = [
            {"name": "https", "containerPort": CONTAINER_PORT},
            {"name": "debug", "containerPort": DEBUG_PORT},
        ]
        # "/" answers 200 even with auth enabled, unlike /v2/; /debug/health includes the storage check.
        container["livenessProbe"] = {
            "httpGet": {"path": "/", "port": "https", "scheme": "HTTPS"},
            "periodSeconds": 30,
            "failureThreshold": 3,
        }
        container["readinessProbe"] = {
            "httpGet": {"path": "/debug/health", "port": "debug"},
            "periodSeconds": 10,
        }
    return {
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUN_AS,
            "runAsGroup": RUN_AS,
            "fsGroup": RUN_AS,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": volumes,
    }


def deployment(plan: WorkloadPlan) -> dict[str, Any]:
    name = child_name(plan.owner.name)
    selector = {"app.kubernetes.io/instance": name, "app.kubernetes.io/component": "registry"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(plan.owner, name, plan.namespace),
        "spec": {
            "replicas": plan.replicas,
            # One ReadWriteOnce volume: the old pod must let go before the new one mounts it.
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {
                    "labels": labels(plan.owner),
                    "annotations": {CHECKSUM_ANNOTATION: plan.checksum},
                },
                "spec": _pod_spec(plan, ["serve", plan.paths.config], probes=True),
            },
        },
    }


def service(plan: WorkloadPlan) -> dict[str, Any]:
    name = child_name(plan.owner.name)
    port: dict[str, Any] = {
        "name": "https",
        "port": plan.service_port,
        "targetPort": "https",
        "protocol": "TCP",
    }
    if plan.node_port and plan.service_type in ("NodePort", "LoadBalancer"):
        port["nodePort"] = plan.node_port
    spec: dict[str, Any] = {
        "type": plan.service_type,
        "selector": {"app.kubernetes.io/instance": name, "app.kubernetes.io/component": "registry"},
        "ports": [port],
    }
    if plan.load_balancer_ip and plan.service_type == "LoadBalancer":
        spec["loadBalancerIP"] = plan.load_balancer_ip
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(plan.owner, name, plan.namespace),
        "spec": spec,
    }


def gc_cron_job(plan: WorkloadPlan) -> dict[str, Any] | None:
    """Offline garbage collection on a schedule (same volume; the pod must land on the same node)."""
    if not plan.gc_schedule:
        return None
    pod = _pod_spec(plan, ["garbage-collect", "--delete-untagged", plan.paths.config], probes=False)
    pod["restartPolicy"] = "OnFailure"
    registry_pods = {
        "app.kubernetes.io/instance": child_name(plan.owner.name),
        "app.kubernetes.io/component": "registry",
    }
    pod["affinity"] = {
        "podAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {
                    "weight": 100,
                    "podAffinityTerm": {
                        "labelSelector": {"matchLabels": registry_pods},
                        "topologyKey": "kubernetes.io/hostname",
                    },
                }
            ]
        }
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": _meta(plan.owner, child_name(plan.owner.name, "gc"), plan.namespace, component="gc"),
        "spec": {
            "schedule": plan.gc_schedule,
            "concurrencyPolicy": "Forbid",
            "successfulJobsHistoryLimit": 1,
            "failedJobsHistoryLimit": 3,
            "jobTemplate": {
                "spec": {
                    "backoffLimit": 2,
                    "template": {"metadata": {"labels": labels(plan.owner, "gc")}, "spec": pod},
                }
            },
        },
    }
