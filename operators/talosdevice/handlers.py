"""kopf handlers for TalosCluster and TalosDevice.

A TalosCluster gets its secrets bundle and registry fragments when it changes; a daemon per cluster
then judges all of the cluster's devices together (addresses, endpoint, last control plane),
whenever one of them changes and on a resync timer. Device handlers label devices, run
auto-approval for discovered ones and guard the deletion of the last control plane.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping
from typing import Any

import kopf
from pydantic import ValidationError

from trellis import API_VERSION, GROUP, VERSION
from trellis.api.talos import TalosClusterSpec
from trellis.operators.talosdevice import objects as o
from trellis.operators.talosdevice import reconcile as r
from trellis.operators.talosdevice.kube import CLUSTERS, DEVICES, LABEL_RULE, Kube
from trellis.operators.talosdevice.retire import RESET_TRIES, retire
from trellis.operators.talosdevice.rules import auto_approval, blocks_deletion
from trellis.opkit.settings import configure

RESYNC_SECONDS = float(os.environ.get("TRELLIS_TALOS_RESYNC_SECONDS", "60"))
DEBOUNCE_SECONDS = 0.2

log = logging.getLogger(__name__)
_kube: list[Kube] = []
_dirty: set[tuple[str, str]] = set()
_known: set[tuple[str, str]] = set()
_wake = asyncio.Event()
_tasks: list[asyncio.Task[None]] = []
_approval_locks: dict[str, asyncio.Lock] = {}


def kube() -> Kube:
    if not _kube:
        _kube.append(Kube())
    return _kube[0]


def _trigger(namespace: str, cluster: str) -> None:
    _dirty.add((namespace, cluster))
    _wake.set()


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
    configure(settings, "talosdevice")
    _tasks.append(asyncio.create_task(judge_clusters()))


@kopf.on.cleanup()
async def cleanup(**_: Any) -> None:
    for task in _tasks:
        task.cancel()


# --- TalosCluster ---------------------------------------------------------------------------------


def _cluster_objects(body: Mapping[str, Any]) -> list[tuple[str, str, bool]]:
    """Secrets bundle and registry fragments; returns Events to record."""
    k = kube()
    events: list[tuple[str, str, bool]] = []
    try:
        spec = r.parse_cluster(body)
    except r.ClusterProblem as problem:
        return [(problem.reason, str(problem), True)]
    had_secret = bool((body.get("status") or {}).get("secretsSecretName"))
    secret = k.get_secret(body["metadata"]["namespace"], o.secret_name(body["metadata"]["name"]))
    if secret is None and had_secret:
        return [
            (
                "SecretsMissing",
                f"Secret {o.secret_name(body['metadata']['name'])} was deleted; restore it from a backup, or "
                f"set annotation {o.REGENERATE_ANNOTATION} to create a new bundle (installed machines stop "
                "trusting it)",
                True,
            )
        ]
    try:
        _, what = r.ensure_secrets(k, body, spec)
    except r.ClusterProblem as problem:
        return [(problem.reason, str(problem), True)]
    if what:
        events.append(
            (
                "Secrets" + what,
                f"secrets bundle {what.lower()} in Secret {o.secret_name(body['metadata']['name'])}",
                what == "Regenerated",
            )
        )
    _, _, problems = r.ensure_registry_fragments(k, body, spec)
    events += [("RegistryNotReady", p, True) for p in problems]
    return events


@kopf.on.create(GROUP, VERSION, CLUSTERS)
@kopf.on.update(GROUP, VERSION, CLUSTERS)
@kopf.on.resume(GROUP, VERSION, CLUSTERS)
async def cluster_changed(body: kopf.Body, namespace: Any, name: Any, **_: Any) -> None:
    for reason, message, warning in await asyncio.to_thread(_cluster_objects, dict(body)):
        (kopf.warn if warning else kopf.info)(body, reason=reason, message=message)
    _known.add((namespace, name))
    _trigger(namespace, name)


def _cluster_pass(namespace: str, name: str, refresh_registries: bool) -> r.PassResult | None:
    """What the pass found (status written, Events posted), or None when the cluster is gone."""
    k = kube()
    cluster = k.get(CLUSTERS, namespace, name)
    if cluster is None or cluster["metadata"].get("deletionTimestamp"):
        return None
    spec: TalosClusterSpec | None = None
    state: r.ClusterState | None = None
    problem: r.ClusterProblem | None = None
    try:
        spec = r.parse_cluster(cluster)
        if refresh_registries:
            r.ensure_registry_fragments(k, cluster, spec)
        state = r.load_cluster_state(k, cluster, spec)
    except r.ClusterProblem as exc:
        problem = exc
    result = r.devices_pass(k, cluster, state, problem)
    desired = r.cluster_status(cluster, spec, result, problem)
    changes = o.status_changes(cluster.get("status"), desired)
    if changes:
        k.patch_status(CLUSTERS, namespace, name, changes)
    if result.controlplane_addresses:
        r.record_talosconfig_endpoints(k, cluster, result.controlplane_addresses)
    # Posted directly: this runs outside kopf's handler context, where kopf.info cannot post.
    for obj, reason, message, warning in result.events:
        kind = obj.get("kind") or "TalosDevice"
        k.event({"apiVersion": API_VERSION, "kind": kind, **obj}, reason, message, warning)
    return result


async def judge_clusters() -> None:
    """Judges each changed cluster's devices (debounced), and every known cluster on a resync timer.

    One loop in the operator rather than a kopf daemon per cluster: a daemon would put a kopf
    finalizer on every TalosCluster, blocking namespace deletion whenever the operator is down.
    """
    while True:
        resync = False
        try:
            await asyncio.wait_for(_wake.wait(), timeout=RESYNC_SECONDS)
        except TimeoutError:
            resync = True
            _dirty.update(_known)
        await asyncio.sleep(DEBOUNCE_SECONDS)
        _wake.clear()
        batch = sorted(_dirty)
        _dirty.clear()
        for namespace, name in batch:
            try:
                result = await asyncio.to_thread(_cluster_pass, namespace, name, resync)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # judged again on the next trigger; logged, not lost
                log.exception("device pass for %s/%s failed: %s", namespace, name, exc)
                _trigger(namespace, name)
                await asyncio.sleep(1)
                continue
            if result is None:
                _known.discard((namespace, name))
            elif result.again_in is not None:
                # Day-2 work under way (an upgrade, a reboot): follow it closer than the resync.
                asyncio.get_running_loop().call_later(result.again_in, _trigger, namespace, name)


# --- TalosDevice ----------------------------------------------------------------------------------


def _auto_approve(obj: Mapping[str, Any]) -> tuple[str, str] | None:
    """Approve a discovered Pending device if a cluster's rule matches; returns (cluster, rule)."""
    k = kube()
    meta, spec = obj["metadata"], obj.get("spec") or {}
    if spec.get("approval", "Pending") != "Pending" or o.DISCOVERED_ANNOTATION not in (
        meta.get("annotations") or {}
    ):
        return None
    if LABEL_RULE in (meta.get("labels") or {}):
        return None
    namespace = meta["namespace"]
    clusters = [
        c
        for c in k.list_objects(CLUSTERS, namespace).get("items", [])
        if not c["metadata"].get("deletionTimestamp")
    ]
    if spec.get("clusterRef"):
        clusters = [c for c in clusters if c["metadata"]["name"] == spec["clusterRef"]]
    devices = k.list_objects(DEVICES, namespace).get("items", [])
    me = o.device_facts(obj)
    for cluster in sorted(clusters, key=lambda c: c["metadata"]["name"]):
        try:
            rules = TalosClusterSpec.model_validate(cluster.get("spec") or {}).auto_approval or []
        except ValidationError:
            continue
        cname = cluster["metadata"]["name"]
        siblings = [o.device_facts(d) for d in devices if (d.get("spec") or {}).get("clusterRef") == cname]
        rule = auto_approval(me, rules, siblings)
        if rule is None:
            continue
        k.patch(
            DEVICES,
            namespace,
            meta["name"],
            {
                "metadata": {"labels": {LABEL_RULE: rule.name}},
                "spec": {"approval": "Approved", "role": rule.role, "clusterRef": cname},
            },
        )
        return cname, rule.name
    return None


def _device_without_cluster(obj: Mapping[str, Any]) -> None:
    """Status for a device no cluster daemon judges (no clusterRef, or the cluster is missing)."""
    k = kube()
    spec = obj.get("spec") or {}
    reason = o.unapproved_reason(obj)
    if spec.get("clusterRef") and spec.get("approval") == "Approved":
        reason = ("ClusterNotFound", f"TalosCluster {spec['clusterRef']} does not exist")
    desired = o.device_status(obj, None, reason)
    changes = o.status_changes(obj.get("status"), desired)
    if changes:
        k.patch_status(DEVICES, obj["metadata"]["namespace"], obj["metadata"]["name"], changes)


def _device_changed(obj: Mapping[str, Any]) -> str | None:
    """Label the device; returns the cluster whose daemon judges it, if that cluster exists."""
    k = kube()
    r.ensure_mac_label(k, obj)
    cluster = (obj.get("spec") or {}).get("clusterRef")
    if cluster and k.get(CLUSTERS, obj["metadata"]["namespace"], cluster) is not None:
        return str(cluster)
    _device_without_cluster(obj)
    return None


@kopf.on.create(GROUP, VERSION, DEVICES)
@kopf.on.update(GROUP, VERSION, DEVICES)
@kopf.on.resume(GROUP, VERSION, DEVICES)
async def device_changed(body: kopf.Body, namespace: Any, **_: Any) -> None:
    obj = dict(body)
    lock = _approval_locks.setdefault(namespace, asyncio.Lock())
    async with lock:
        approved = await asyncio.to_thread(_auto_approve, obj)
    if approved:
        kopf.info(
            body,
            reason="AutoApproved",
            message=f"approved by rule {approved[1]} of TalosCluster {approved[0]}",
        )
        _trigger(namespace, approved[0])
        return  # the spec change comes back as an update
    cluster = await asyncio.to_thread(_device_changed, obj)
    if cluster:
        _trigger(namespace, cluster)


def _deletion_blocker(obj: Mapping[str, Any]) -> str | None:
    k = kube()
    meta, spec = obj["metadata"], obj.get("spec") or {}
    cluster_name = spec.get("clusterRef")
    if not cluster_name:
        return None
    cluster = k.get(CLUSTERS, meta["namespace"], cluster_name)
    if cluster is None or cluster["metadata"].get("deletionTimestamp"):
        return None
    if k.namespace_terminating(meta["namespace"]):
        return None
    siblings = [
        o.device_facts(d)
        for d in k.list_objects(DEVICES, meta["namespace"]).get("items", [])
        if (d.get("spec") or {}).get("clusterRef") == cluster_name
    ]
    return blocks_deletion(o.device_facts(obj), siblings)


@kopf.on.delete(GROUP, VERSION, DEVICES)
async def device_deleted(body: kopf.Body, namespace: Any, spec: Any, retry: int, **_: Any) -> None:
    reason = await asyncio.to_thread(_deletion_blocker, dict(body))
    if reason:
        kopf.warn(body, reason="LastControlPlane", message=reason)
        raise kopf.TemporaryError(reason, delay=15)
    for event_reason, message, warning in await asyncio.to_thread(
        retire, kube(), dict(body), retry >= RESET_TRIES
    ):
        (kopf.warn if warning else kopf.info)(body, reason=event_reason, message=message)
    cluster = spec.get("clusterRef")
    if cluster:
        _trigger(namespace, cluster)
