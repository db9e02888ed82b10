"""kopf handlers for Registry: reconcile on changes and on a timer (health probe, drift, Secrets)."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field
from typing import Any

import kopf
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from trellis import GROUP, VERSION
from trellis.api.registry import RegistrySpec
from trellis.operators.registry import desired as plan
from trellis.operators.registry.client import Kube, ProbeResult, probe, resolve
from trellis.operators.registry.workload import child_name
from trellis.opkit.conditions import now_rfc3339, set_condition, without_times
from trellis.opkit.kube import api_client
from trellis.opkit.settings import configure

PLURAL = "registries"
RESYNC_SECONDS = float(os.environ.get("TRELLIS_REGISTRY_RESYNC_SECONDS", "60"))
OPERATOR_NAMESPACE = os.environ.get("TRELLIS_NAMESPACE", "trellis-system")
DEFAULT_IMAGE = os.environ.get("TRELLIS_REGISTRY_IMAGE", plan.DEFAULT_IMAGE)

_locks: dict[str, asyncio.Lock] = {}
_api: list[k8s.ApiClient] = []


def _kube() -> Kube:
    if not _api:
        _api.append(api_client())
    return Kube(_api[0])


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
    configure(settings, "registry")


@dataclass
class Outcome:
    """What one reconcile found; turned into status and Events by ``_publish``."""

    reconciled: tuple[bool, str, str]
    desired: plan.Desired | None = None
    health: ProbeResult | None = None
    upstream: tuple[bool, str, str] | None = None
    ready_replicas: int | None = None
    changes: list[str] = field(default_factory=list)


def _namespace(spec: RegistrySpec) -> str:
    if spec.mode == "managed" and spec.managed and spec.managed.namespace:
        return spec.managed.namespace
    return OPERATOR_NAMESPACE


def _upstream_check(want: plan.Desired) -> tuple[bool, str, str] | None:
    if not want.upstream_url:
        return None
    result = probe(want.upstream_url + "/v2/", want.upstream_ca)
    if not result.ok:
        return False, "UpstreamUnreachable", result.detail
    if want.upstream_has_credentials and result.challenge.lower().startswith("basic"):
        return (
            False,
            "UpstreamBasicAuthUnsupported",
            "the upstream asks for HTTP basic auth; the registry's proxy sends credentials only to "
            "token-auth (Bearer) upstreams, so private images will not be pulled",
        )
    return True, "UpstreamReachable", result.detail


def _reconcile_sync(name: str, uid: str, raw_spec: dict[str, Any]) -> Outcome:
    try:
        spec = RegistrySpec.model_validate(raw_spec)
    except ValidationError as exc:
        return Outcome((False, "InvalidSpec", str(exc).replace("\n", " ")))
    kube = _kube()
    namespace = _namespace(spec)
    try:
        resolved = resolve(kube, name, spec, namespace)
        if spec.mode == "managed":
            want = plan.managed(name, uid, spec, resolved, namespace, DEFAULT_IMAGE)
        else:
            want = plan.external(name, uid, spec, resolved, namespace)
    except plan.InvalidSpec as exc:
        return Outcome((False, exc.reason, exc.message))
    outcome = Outcome((True, "Applied", f"objects in namespace {namespace} are up to date"), desired=want)
    try:
        for obj in want.objects:
            if kube.apply(obj) != "unchanged":
                outcome.changes.append(f"{obj['kind']}/{obj['metadata']['name']}")
    except ApiException as exc:
        if exc.status == 404 and "namespaces" in (exc.body or ""):
            outcome.reconciled = (False, "NamespaceNotFound", f"namespace {namespace} does not exist")
            return outcome
        raise
    if spec.mode == "managed":
        outcome.ready_replicas = kube.ready_replicas(namespace, child_name(name))
    outcome.health = probe(want.probe_url, want.ca_bundle, want.insecure_skip_verify, want.probe_credentials)
    outcome.upstream = _upstream_check(want)
    return outcome


def _publish(
    body: kopf.Body, status: dict[str, Any], patch: kopf.Patch, outcome: Outcome, generation: int
) -> None:
    old_conditions = list(status.get("conditions") or [])
    conditions = old_conditions
    ok, reason, message = outcome.reconciled
    conditions = set_condition(conditions, "Reconciled", ok, reason, message, generation)
    new: dict[str, Any] = {"observedGeneration": generation}
    ready = (False, reason, message)
    want = outcome.desired
    if want is not None:
        new.update(
            endpoint=want.endpoint, caBundle=want.ca_bundle, consumerConfigMap=want.consumer_config_map
        )
    if outcome.health is not None:
        health = outcome.health
        conditions = set_condition(
            conditions,
            "Available",
            health.ok,
            "Answering" if health.ok else "NotAnswering",
            health.detail,
            generation,
        )
        new["healthy"] = health.ok
        if status.get("healthy") != health.ok or not status.get("lastProbeTime"):
            new["lastProbeTime"] = now_rfc3339()
        ready = (health.ok, "Available" if health.ok else "NotAvailable", health.detail)
    if outcome.ready_replicas is not None:
        new["readyReplicas"] = outcome.ready_replicas
        if ready[0] and outcome.ready_replicas < 1:
            ready = (False, "NoReadyReplicas", "no registry pod is ready")
    if outcome.upstream is not None:
        conditions = set_condition(conditions, "Upstream", *outcome.upstream, generation)
    if ok:
        conditions = set_condition(conditions, "Ready", *ready, generation)
    else:
        conditions = set_condition(conditions, "Ready", False, reason, message, generation)

    for key, value in new.items():
        if status.get(key) != value:
            patch.status[key] = value
    if without_times(conditions) != without_times(old_conditions):
        patch.status["conditions"] = conditions
        _events(body, old_conditions, conditions)


def _events(body: kopf.Body, old: list[dict[str, Any]], new: list[dict[str, Any]]) -> None:
    before = {c["type"]: (c.get("status"), c.get("reason")) for c in old}
    for cond in new:
        if before.get(cond["type"]) == (cond.get("status"), cond.get("reason")):
            continue
        if cond["status"] == "True":
            if cond["type"] == "Ready":
                kopf.info(body, reason=cond["reason"], message=cond.get("message", ""))
        else:
            kopf.warn(body, reason=cond["reason"], message=cond.get("message", ""))


async def _reconcile(
    body: kopf.Body,
    name: str,
    uid: str,
    spec: Any,
    status: Any,
    patch: kopf.Patch,
    logger: Any,
    generation: int,
) -> None:
    lock = _locks.setdefault(uid, asyncio.Lock())
    async with lock:
        try:
            outcome = await asyncio.to_thread(_reconcile_sync, name, uid, dict(spec))
        except ApiException as exc:
            raise kopf.TemporaryError(f"Kubernetes API error: {exc.status} {exc.reason}", delay=5) from exc
        if outcome.changes:
            logger.info("applied: %s", ", ".join(outcome.changes))
        _publish(body, dict(status), patch, outcome, generation)


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL, field="spec")
async def reconcile(
    body: kopf.Body,
    name: str,
    uid: str,
    spec: Any,
    status: Any,
    patch: kopf.Patch,
    logger: Any,
    meta: Any,
    **_: Any,
) -> None:
    await _reconcile(body, name, uid, spec, status, patch, logger, int(meta.get("generation") or 0))


@kopf.timer(GROUP, VERSION, PLURAL, interval=RESYNC_SECONDS, initial_delay=RESYNC_SECONDS)
async def resync(
    body: kopf.Body,
    name: str,
    uid: str,
    spec: Any,
    status: Any,
    patch: kopf.Patch,
    logger: Any,
    meta: Any,
    **_: Any,
) -> None:
    await _reconcile(body, name, uid, spec, status, patch, logger, int(meta.get("generation") or 0))


@kopf.on.delete(GROUP, VERSION, PLURAL, optional=True)
async def forget(uid: str, **_: Any) -> None:
    """Owned objects go with the Registry (owner references); the data volume is kept on purpose."""
    _locks.pop(uid, None)
