"""Pure functions between Kubernetes objects and the render/rules inputs, and desired status."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from trellis import API_VERSION
from trellis.api.common import normalize_mac
from trellis.operators.talosdevice.bundle import SecretsBundle
from trellis.operators.talosdevice.kube import LABEL_CLUSTER, LABEL_MANAGED_BY, LABEL_RULE, MANAGED_BY
from trellis.operators.talosdevice.rules import DeviceFacts, Verdict
from trellis.opkit.conditions import set_condition

# Secret and ConfigMap the operator owns per TalosCluster.
KEY_BUNDLE = "bundle.yaml"
KEY_TALOSCONFIG = "talosconfig"
KEY_REGISTRY_PATCHES = "machine-patches.yaml"
KEY_REGISTRY_DOCUMENTS = "documents.yaml"
REGENERATE_ANNOTATION = "talos.trellis.dev/regenerate-secrets"
GENERATED_FOR_ANNOTATION = "talos.trellis.dev/generated-for"
DISCOVERED_ANNOTATION = "talos.trellis.dev/discovered"
BOOT_IP_ANNOTATION = "talos.trellis.dev/boot-ip"
# Keys in a Registry's consumer ConfigMap (operators/registry/fragments.py).
REGISTRY_PATCH_KEY = "talos-machine-patch.yaml"
REGISTRY_DOCUMENTS_KEY = "talos-registry-documents.yaml"

LIVE_PHASES = ("ConfigServed", "Installed", "Ready")


def secret_name(cluster: str) -> str:
    return f"{cluster}-talos-secrets"


def registry_configmap_name(cluster: str) -> str:
    return f"{cluster}-talos-registries"


def owner_reference(obj: Mapping[str, Any]) -> dict[str, Any]:
    meta = obj["metadata"]
    return {
        "apiVersion": API_VERSION,
        "kind": obj.get("kind", "TalosCluster"),
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def owned_labels(cluster: str) -> dict[str, str]:
    return {LABEL_CLUSTER: cluster, LABEL_MANAGED_BY: MANAGED_BY}


def secret_body(
    cluster: Mapping[str, Any], bundle: SecretsBundle, talosconfig: str, request: str
) -> dict[str, Any]:
    meta = cluster["metadata"]
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": secret_name(meta["name"]),
            "namespace": meta["namespace"],
            "labels": owned_labels(meta["name"]),
            "annotations": {GENERATED_FOR_ANNOTATION: request},
            "ownerReferences": [owner_reference(cluster)],
        },
        "stringData": {KEY_BUNDLE: bundle.to_yaml(), KEY_TALOSCONFIG: talosconfig},
    }


def registry_configmap_body(
    cluster: Mapping[str, Any], patches: Sequence[Mapping[str, Any]], documents: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    meta = cluster["metadata"]
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": registry_configmap_name(meta["name"]),
            "namespace": meta["namespace"],
            "labels": owned_labels(meta["name"]),
            "ownerReferences": [owner_reference(cluster)],
        },
        "data": {
            KEY_REGISTRY_PATCHES: yaml.safe_dump_all(list(patches), sort_keys=True) if patches else "",
            KEY_REGISTRY_DOCUMENTS: yaml.safe_dump_all(list(documents), sort_keys=True) if documents else "",
        },
    }


def registry_fragments(consumer_data: Mapping[str, str]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(machine patches, documents) from one Registry's consumer ConfigMap data."""
    patches = [d for d in yaml.safe_load_all(consumer_data.get(REGISTRY_PATCH_KEY) or "") if d]
    documents = [d for d in yaml.safe_load_all(consumer_data.get(REGISTRY_DOCUMENTS_KEY) or "") if d]
    return patches, documents


def parse_registry_configmap(
    data: Mapping[str, str] | None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    data = data or {}
    patches = [d for d in yaml.safe_load_all(data.get(KEY_REGISTRY_PATCHES) or "") if d]
    documents = [d for d in yaml.safe_load_all(data.get(KEY_REGISTRY_DOCUMENTS) or "") if d]
    return patches, documents


def device_facts(obj: Mapping[str, Any], addresses: frozenset[str] = frozenset()) -> DeviceFacts:
    meta, spec, status = obj.get("metadata", {}), obj.get("spec", {}), obj.get("status") or {}
    annotations = meta.get("annotations") or {}
    labels = meta.get("labels") or {}
    return DeviceFacts(
        name=meta["name"],
        created=meta.get("creationTimestamp", ""),
        mac=normalize_mac(spec.get("mac", "")),
        cluster=spec.get("clusterRef"),
        role=spec.get("role", "worker"),
        approval=spec.get("approval", "Pending"),
        addresses=addresses,
        labels=labels,
        boot_ip=annotations.get(BOOT_IP_ANNOTATION) or (status.get("observed") or {}).get("ip"),
        approved_by_rule=labels.get(LABEL_RULE),
        deleting=bool(meta.get("deletionTimestamp")),
        served_role=status.get("role"),
    )


def device_phase(obj: Mapping[str, Any], verdict: Verdict | None) -> str:
    spec, status = obj.get("spec", {}), obj.get("status") or {}
    approval = spec.get("approval", "Pending")
    if approval != "Approved":
        return "Rejected" if approval == "Rejected" else "Pending"
    current = status.get("phase")
    if current in LIVE_PHASES:
        return str(current)
    return "Approved"


def device_status(
    obj: Mapping[str, Any], verdict: Verdict | None, no_verdict_reason: tuple[str, str]
) -> dict[str, Any]:
    """The operator's part of a device's status (the boot service writes the boot facts)."""
    meta, spec, status = obj["metadata"], obj.get("spec", {}), obj.get("status") or {}
    generation = meta.get("generation")
    if verdict is None:
        verdict = Verdict(False, *no_verdict_reason)
    conditions = set_condition(
        status.get("conditions"), "Ready", verdict.ok, verdict.reason, verdict.message, generation
    )
    conditions = set_condition(conditions, "Reconciled", True, "Reconciled", "", generation)
    out: dict[str, Any] = {
        "observedGeneration": generation,
        "phase": device_phase(obj, verdict),
        "conditions": conditions,
    }
    rule = (meta.get("labels") or {}).get(LABEL_RULE)
    if rule:
        out["approvedByRule"] = rule
    if verdict.ok:
        out["role"] = spec.get("role", "worker")
    return out


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    return value


def status_changes(current: Mapping[str, Any] | None, desired: Mapping[str, Any]) -> dict[str, Any]:
    """Only the fields that differ: an unchanged status means no write at all.

    Sections (dicts) are compared without their null fields; a changed section's patch nulls the
    fields it no longer has, since a merge patch would otherwise keep them.
    """
    current = current or {}
    out: dict[str, Any] = {}
    for key, value in desired.items():
        want, have = _without_nulls(value), current.get(key)
        if have == want:
            continue
        if isinstance(want, dict) and isinstance(have, dict):
            want = {**dict.fromkeys(k for k in have if k not in want), **want}
        out[key] = want
    return out


def unapproved_reason(obj: Mapping[str, Any]) -> tuple[str, str]:
    spec = obj.get("spec", {})
    approval = spec.get("approval", "Pending")
    if approval == "Rejected":
        return "Rejected", "the device was rejected; it is told to boot from its next boot device"
    if approval == "Pending":
        return "PendingApproval", "waiting for approval: set spec.approval to Approved"
    return "NoCluster", "spec.clusterRef names no TalosCluster"
