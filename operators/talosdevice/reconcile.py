"""Reconcile passes of the operator: a TalosCluster's owned objects, and all devices of a cluster.

Sync code, run in a worker thread by the kopf handlers. Every write is preceded by a comparison,
so a pass that finds everything as it should be writes nothing.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import yaml
from pydantic import ValidationError

from trellis.api.talos import TalosClusterSpec, TalosDeviceSpec
from trellis.operators.talosdevice import objects as o
from trellis.operators.talosdevice.bundle import (
    SecretsBundle,
    admin_client_certificate,
    generate_bundle,
    talosconfig,
)
from trellis.operators.talosdevice.contract import UnsupportedTalosVersion, contract_for
from trellis.operators.talosdevice.day2 import initial_config
from trellis.operators.talosdevice.hardware import (
    hardware_status,
    hosts_in,
    link_events,
    linked_host,
    reinstall_request,
    start_reinstall,
)
from trellis.operators.talosdevice.installed import installed_devices, run_day2
from trellis.operators.talosdevice.kube import (
    DEVICES,
    LABEL_MAC,
    LABEL_MANAGED_BY,
    MANAGED_BY,
    Kube,
    mac_label,
)
from trellis.operators.talosdevice.render import (
    ClusterInput,
    Rendered,
    RenderError,
    config_hash,
    device_input_of,
    render_device,
)
from trellis.operators.talosdevice.rules import (
    Verdict,
    addresses_of,
    cluster_verdicts,
    endpoint_ip,
)
from trellis.opkit.conditions import set_condition

log = logging.getLogger(__name__)


class ClusterProblem(Exception):
    """The cluster cannot serve configs; reason and message go to conditions and Events."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass
class ClusterState:
    spec: TalosClusterSpec
    bundle: SecretsBundle
    registry_patches: list[dict[str, Any]] = field(default_factory=list)
    registry_documents: list[dict[str, Any]] = field(default_factory=list)


def parse_cluster(obj: Mapping[str, Any]) -> TalosClusterSpec:
    try:
        spec = TalosClusterSpec.model_validate(obj.get("spec") or {})
    except ValidationError as exc:
        raise ClusterProblem("InvalidSpec", str(exc).splitlines()[0]) from None
    try:
        contract_for(spec.talos_version)
    except UnsupportedTalosVersion as exc:
        raise ClusterProblem("UnsupportedTalosVersion", str(exc)) from None
    return spec


def ensure_secrets(
    kube: Kube, cluster: Mapping[str, Any], spec: TalosClusterSpec
) -> tuple[SecretsBundle, str]:
    """The cluster's bundle: created once, reused, regenerated only on an explicit request.

    Returns the bundle and what happened ("", "Generated" or "Regenerated"). A Secret of that name
    that Trellis did not create is used when it holds a valid bundle (import from talosctl/ktizo)
    and never modified.
    """
    meta = cluster["metadata"]
    request = (meta.get("annotations") or {}).get(o.REGENERATE_ANNOTATION, "")
    name = o.secret_name(meta["name"])
    existing = kube.get_secret(meta["namespace"], name)
    if existing is not None:
        ours = (existing["metadata"].get("labels") or {}).get(LABEL_MANAGED_BY) == MANAGED_BY
        data = existing.get("data") or {}
        if o.KEY_BUNDLE not in data:
            raise ClusterProblem("SecretsInvalid", f"Secret {name} exists but has no {o.KEY_BUNDLE} key")
        try:
            bundle = SecretsBundle.from_yaml(base64.b64decode(data[o.KEY_BUNDLE]).decode())
        except ValueError as exc:
            raise ClusterProblem("SecretsInvalid", f"Secret {name}: {exc}") from None
        done_for = (existing["metadata"].get("annotations") or {}).get(o.GENERATED_FOR_ANNOTATION, "")
        if not ours or not request or request == done_for:
            return bundle, ""
    bundle = generate_bundle(contract_for(spec.talos_version))
    client = admin_client_certificate(bundle)
    config = talosconfig(bundle, spec.cluster_name or meta["name"], [endpoint_host(spec.endpoint)], client)
    body = o.secret_body(cluster, bundle, config, request)
    if existing is None:
        kube.create_secret(meta["namespace"], body)
        return bundle, "Generated"
    body["metadata"]["resourceVersion"] = existing["metadata"]["resourceVersion"]
    kube.replace_secret(meta["namespace"], name, body)
    return bundle, "Regenerated"


def endpoint_host(endpoint: str) -> str:
    return urlsplit(endpoint).hostname or endpoint


def label_selector(selector: Any) -> str:
    parts = [f"{k}={v}" for k, v in sorted((selector.match_labels or {}).items())]
    for expr in selector.match_expressions or ():
        values = ",".join(expr.values)
        parts.append(
            {
                "In": f"{expr.key} in ({values})",
                "NotIn": f"{expr.key} notin ({values})",
                "Exists": expr.key,
                "DoesNotExist": f"!{expr.key}",
            }[expr.operator]
        )
    return ",".join(parts)


def ensure_registry_fragments(
    kube: Kube, cluster: Mapping[str, Any], spec: TalosClusterSpec
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[str]]:
    """Collect the Talos fragments of the selected Registry objects into the cluster's ConfigMap."""
    patches: list[dict[str, Any]] = []
    documents: list[dict[str, Any]] = []
    problems: list[str] = []
    if spec.registry_selector is not None:
        for reg in sorted(kube.cluster_registries(label_selector(spec.registry_selector)), key=_name):
            ref = ((reg.get("status") or {}).get("consumerConfigMap")) or ""
            if "/" not in ref:
                problems.append(f"Registry {_name(reg)} has not published its consumer ConfigMap yet")
                continue
            namespace, name = ref.split("/", 1)
            cm = kube.get_configmap(namespace, name)
            if cm is None:
                problems.append(f"ConfigMap {ref} of Registry {_name(reg)} does not exist")
                continue
            reg_patches, reg_docs = o.registry_fragments(cm.get("data") or {})
            patches += reg_patches
            documents += reg_docs
    body = o.registry_configmap_body(cluster, patches, documents)
    kube.apply_configmap(cluster["metadata"]["namespace"], body["metadata"]["name"], body)
    return patches, documents, problems


def _name(obj: Mapping[str, Any]) -> str:
    return str(obj.get("metadata", {}).get("name", ""))


def load_cluster_state(kube: Kube, cluster: Mapping[str, Any], spec: TalosClusterSpec) -> ClusterState:
    meta = cluster["metadata"]
    secret = kube.get_secret(meta["namespace"], o.secret_name(meta["name"]))
    data = (secret or {}).get("data") or {}
    if o.KEY_BUNDLE not in data:
        raise ClusterProblem("SecretsMissing", f"Secret {o.secret_name(meta['name'])} is not there yet")
    bundle = SecretsBundle.from_yaml(base64.b64decode(data[o.KEY_BUNDLE]).decode())
    cm = kube.get_configmap(meta["namespace"], o.registry_configmap_name(meta["name"]))
    patches, documents = o.parse_registry_configmap(cm.get("data") if cm else None)
    return ClusterState(spec, bundle, patches, documents)


@dataclass
class PassResult:
    counts: dict[str, int]
    endpoint_device: str | None
    controlplane_addresses: list[str] = field(default_factory=list)
    events: list[tuple[Mapping[str, Any], str, str, bool]] = field(default_factory=list)
    upgrade: dict[str, Any] | None = None
    again_in: float | None = None  # judge the cluster again this soon (day-2 work under way)


def render_for_rules(state: ClusterState, name: str, obj: Mapping[str, Any]) -> Rendered | Verdict:
    """The device's rendered config, or the verdict explaining why it cannot be rendered."""
    try:
        spec = TalosDeviceSpec.model_validate(obj.get("spec") or {})
        cluster_input = ClusterInput(name, state.spec, state.registry_patches, state.registry_documents)
        return render_device(
            cluster_input, device_input_of(_name(obj), spec, obj.get("status")), state.bundle
        )
    except (RenderError, ValueError) as exc:
        return Verdict(False, "RenderFailed", str(exc).splitlines()[0])


def devices_pass(
    kube: Kube, cluster: Mapping[str, Any], state: ClusterState | None, problem: ClusterProblem | None
) -> PassResult:
    """Judge every device of the cluster and write the status of those whose verdict changed."""
    meta = cluster["metadata"]
    items = [
        d
        for d in kube.list_objects(DEVICES, meta["namespace"]).get("items", [])
        if (d.get("spec") or {}).get("clusterRef") == meta["name"]
    ]
    facts, failed, rendered = [], {}, {}
    for obj in items:
        addresses: frozenset[str] = frozenset()
        if state is not None and (obj.get("spec") or {}).get("approval") == "Approved":
            found = render_for_rules(state, meta["name"], obj)
            if isinstance(found, Verdict):
                failed[_name(obj)] = found
            else:
                rendered[_name(obj)] = found
                addresses = addresses_of(found.documents)
        facts.append(o.device_facts(obj, addresses))
    endpoint = (cluster.get("spec") or {}).get("endpoint", "")
    verdicts = cluster_verdicts([f for f in facts if f.name not in failed], endpoint)
    verdicts.update(failed)
    installed = installed_devices(items, facts, verdicts, state.bundle if state else None)
    hosts = hosts_in(kube, meta["namespace"])
    result = PassResult(counts={"controlPlanes": 0, "workers": 0, "pendingDevices": 0}, endpoint_device=None)
    day2 = None
    if state is not None and problem is None:
        day2 = run_day2(cluster, state.spec, state.bundle, items, facts, verdicts, rendered)
        result.upgrade, result.again_in = day2.cluster_upgrade, day2.again_in
    ep = endpoint_ip(endpoint)
    for obj, fact in zip(items, facts, strict=True):
        verdict = verdicts.get(fact.name)
        if problem is not None and fact.approved:
            verdict = Verdict(False, problem.reason, str(problem))
        if fact.approval == "Pending":
            result.counts["pendingDevices"] += 1
        elif verdict is not None and verdict.ok:
            result.counts["controlPlanes" if fact.role == "controlplane" else "workers"] += 1
            if fact.role == "controlplane":
                if ep and ep in fact.addresses:
                    result.endpoint_device = fact.name
                own = sorted(a for a in fact.addresses if a != ep) or ([fact.boot_ip] if fact.boot_ip else [])
                result.controlplane_addresses += own[:1]
        desired = o.device_status(obj, verdict, o.unapproved_reason(obj))
        if fact.name in installed:
            endpoint_at, version = installed[fact.name]
            desired["phase"] = "Installed"
            desired["talosVersion"] = version
            served = (obj.get("status") or {}).get("servedConfigHash")
            if fact.name in rendered:
                desired["config"] = initial_config(served, config_hash(rendered[fact.name].to_yaml()))
            desired["upgrade"] = None
            result.events.append((obj, "Installed", f"Talos {version} answers at {endpoint_at}", False))
        elif day2 is not None and fact.name in day2.devices:
            desired.update(day2.devices[fact.name])
        host = linked_host(obj, hosts)
        desired.update(hardware_status(obj, host))
        result.events += [(obj, *event) for event in link_events(obj, host)]
        request = reinstall_request(obj)
        if request and verdict is not None and verdict.ok:
            desired.update(reinstalledFor=request, phase="Approved", config=None, upgrade=None)
        changes = o.status_changes(obj.get("status"), desired)
        if changes:
            kube.patch_status(DEVICES, meta["namespace"], fact.name, changes)
            if "hostDisk" in changes:  # the render reads status.hostDisk: judge again with it
                result.again_in = min(result.again_in or 1.0, 1.0)
            before = _ready(obj.get("status"))
            after = _ready(desired)
            if before != after and after is not None:
                result.events.append((obj, after[1], after[2], not after[0]))
        if request and verdict is not None and verdict.ok:
            # After the phase is back to Approved: the host waits for the device's new install.
            result.events.append((obj, *start_reinstall(kube, obj, host, request)))
    if day2 is not None:
        by_name = {_name(obj): obj for obj in items}
        result.events += [(by_name.get(n, cluster), r, m, w) for n, r, m, w in day2.events]
    return result


def _ready(status: Mapping[str, Any] | None) -> tuple[bool, str, str] | None:
    for cond in (status or {}).get("conditions") or ():
        if cond.get("type") == "Ready":
            return cond.get("status") == "True", cond.get("reason", ""), cond.get("message", "")
    return None


def ensure_mac_label(kube: Kube, obj: Mapping[str, Any]) -> None:
    mac = (obj.get("spec") or {}).get("mac", "")
    labels = obj["metadata"].get("labels") or {}
    if mac and labels.get(LABEL_MAC) != mac_label(mac):
        kube.patch(
            DEVICES,
            obj["metadata"]["namespace"],
            _name(obj),
            {"metadata": {"labels": {LABEL_MAC: mac_label(mac)}}},
        )


def cluster_status(
    cluster: Mapping[str, Any],
    spec: TalosClusterSpec | None,
    result: PassResult | None,
    problem: ClusterProblem | None,
) -> dict[str, Any]:
    meta = cluster["metadata"]
    status = cluster.get("status") or {}
    generation = meta.get("generation")
    ok = problem is None
    reason, message = "Ready", "secrets bundle present, devices reconciled"
    if problem is not None:
        reason, message = problem.reason, str(problem)
    conditions = set_condition(status.get("conditions"), "Ready", ok, reason, message, generation)
    conditions = set_condition(conditions, "Reconciled", True, "Reconciled", "", generation)
    out: dict[str, Any] = {
        "observedGeneration": generation,
        "conditions": conditions,
        "secretsSecretName": o.secret_name(meta["name"]),
    }
    if spec is not None:
        out["contract"] = contract_for(spec.talos_version).line
    if result is not None:
        out.update(result.counts)
        out["endpointDevice"] = result.endpoint_device
        out["upgrade"] = result.upgrade
    return out


def record_talosconfig_endpoints(kube: Kube, cluster: Mapping[str, Any], endpoints: list[str]) -> None:
    """Keep talosconfig's endpoints on the admitted control planes (the client cert stays)."""
    meta = cluster["metadata"]
    secret = kube.get_secret(meta["namespace"], o.secret_name(meta["name"]))
    if secret is None or (secret["metadata"].get("labels") or {}).get(LABEL_MANAGED_BY) != MANAGED_BY:
        return
    raw = (secret.get("data") or {}).get(o.KEY_TALOSCONFIG)
    if not raw or not endpoints:
        return
    config = yaml.safe_load(base64.b64decode(raw).decode())
    context = config["contexts"][config["context"]]
    if context.get("endpoints") == sorted(endpoints):
        return
    context["endpoints"] = sorted(endpoints)
    kube.patch_secret(
        meta["namespace"],
        o.secret_name(meta["name"]),
        {"stringData": {o.KEY_TALOSCONFIG: yaml.safe_dump(config, sort_keys=False)}},
    )
