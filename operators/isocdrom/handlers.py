"""kopf handlers for ISOCDROM: transfer + export on create, periodic re-check, guarded deletion."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import kopf
from kubernetes.client.exceptions import ApiException

from trellis import GROUP, VERSION
from trellis.operators.isocdrom import reconcile as engine_mod
from trellis.operators.isocdrom.cluster import CliCache, Cluster, ConfigProblem
from trellis.operators.isocdrom.desired import describe_subscribers
from trellis.opkit.conditions import set_condition, without_times
from trellis.opkit.kube import api_client
from trellis.opkit.settings import configure

PLURAL = "isocdroms"
RESYNC_SECONDS = float(os.environ.get("TRELLIS_ISOCDROM_RESYNC_SECONDS", "30"))
OPERATOR_NAMESPACE = os.environ.get("TRELLIS_NAMESPACE", "trellis-system")
# Pool mount point used when spec.target.pool is empty (the RDS' storage-pool disk).
DEFAULT_POOL = os.environ.get("TRELLIS_ISOCDROM_DEFAULT_POOL", "storage-pool")

_locks: dict[str, asyncio.Lock] = {}
_engine: list[engine_mod.Engine] = []


def _get_engine() -> engine_mod.Engine:
    if not _engine:
        cluster = Cluster(api_client(), OPERATOR_NAMESPACE)
        _engine.append(engine_mod.Engine(cluster, CliCache(), DEFAULT_POOL))
    return _engine[0]


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
    configure(settings, "isocdrom")


def _post(body: kopf.Body, events: list[tuple[str, str, str]]) -> None:
    for kind, reason, message in events:
        kopf.event(body, type=kind, reason=reason, message=message)


async def _reconcile(body: kopf.Body, name: str, uid: str, spec: Any, status: Any, meta: Any) -> None:
    async with _locks.setdefault(uid, asyncio.Lock()):
        generation = int(meta.get("generation") or 0)
        try:
            run = await asyncio.to_thread(
                engine_mod.reconcile, _get_engine(), name, generation, dict(spec), dict(status)
            )
        except engine_mod.Retry as exc:
            raise kopf.TemporaryError(str(exc), delay=exc.delay) from exc
        except ApiException as exc:
            raise kopf.TemporaryError(f"Kubernetes API error: {exc.status} {exc.reason}", delay=5) from exc
        _post(body, run.events)


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL, field="spec")
async def reconcile(
    body: kopf.Body, name: str, uid: str, spec: Any, status: Any, meta: Any, **_: Any
) -> None:
    await _reconcile(body, name, uid, spec, status, meta)


@kopf.timer(GROUP, VERSION, PLURAL, interval=RESYNC_SECONDS, initial_delay=RESYNC_SECONDS)
async def recheck(body: kopf.Body, name: str, uid: str, spec: Any, status: Any, meta: Any, **_: Any) -> None:
    """Re-create a vanished export (router reboot), refresh subscribers, retry errors."""
    if meta.get("deletionTimestamp"):
        return
    await _reconcile(body, name, uid, spec, status, meta)


@kopf.on.delete(GROUP, VERSION, PLURAL)
async def delete(
    body: kopf.Body, name: str, uid: str, spec: Any, status: Any, meta: Any, patch: kopf.Patch, **_: Any
) -> None:
    """Refused (kept by the finalizer) while a BareMetalHost boots from the image."""
    engine = _get_engine()
    async with _locks.setdefault(uid, asyncio.Lock()):
        subs = await asyncio.to_thread(engine_mod.subscribers_of, engine, name)
        old = list(status.get("conditions") or [])
        generation = int(meta.get("generation") or 0)
        if subs:
            message = f"deletion waits: booted by {describe_subscribers(subs)}"
            conditions = set_condition(old, "DeletionBlocked", True, "InUse", message, generation)
            if without_times(conditions) != without_times(old):
                patch.status["conditions"] = conditions
                kopf.warn(body, reason="DeletionBlocked", message=message)
            patch.status["subscribers"] = subs
            raise kopf.TemporaryError(message, delay=min(RESYNC_SECONDS, 10.0))
        try:
            done = await asyncio.to_thread(engine_mod.tear_down, engine, name, dict(spec))
        except ConfigProblem as exc:
            raise kopf.TemporaryError(exc.message, delay=10) from exc
        except Exception as exc:
            raise kopf.TemporaryError(f"cleanup failed: {exc}", delay=5) from exc
        kopf.info(body, reason="Removed", message="; ".join(done))
    _locks.pop(uid, None)
