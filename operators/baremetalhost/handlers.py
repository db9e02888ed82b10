"""kopf wiring of the BareMetalHost operator: one daemon per host runs its ``HostRunner``.

Run it with ``kopf run -m trellis.operators.baremetalhost.handlers`` or ``trellis-baremetalhost-operator``.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import os
from typing import Any

import kopf
from kubernetes.client.exceptions import ApiException

from trellis import GROUP
from trellis.api.common import normalize_mac
from trellis.operators.baremetalhost import conflicts, discovery, install
from trellis.operators.baremetalhost.config import Settings
from trellis.operators.baremetalhost.context import Context, info
from trellis.operators.baremetalhost.deletion import delete_host
from trellis.operators.baremetalhost.host import HostRunner
from trellis.operators.baremetalhost.reservations import HOST_LABEL
from trellis.opkit.settings import configure

VERSION = "v1alpha1"
PLURAL = "baremetalhosts"
HOT_LOOP_LIMIT = 50  # consecutive immediate passes before forcing a pause (guards against a logic loop)
log = logging.getLogger(__name__)

_ctx: list[Context] = []
_runners: dict[tuple[str, str], HostRunner] = {}


def ctx() -> Context:
    if not _ctx:
        _ctx.append(Context.create(Settings.from_env()))
    return _ctx[0]


def runner_for(namespace: str, name: str, uid: str) -> HostRunner:
    runner = _runners.get((namespace, name))
    if runner is None or runner.uid != uid:
        runner = _runners[(namespace, name)] = HostRunner(ctx(), namespace, name, uid)
    return runner


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
    configure(settings, "baremetalhost")
    ctx()


@kopf.on.cleanup()
async def cleanup(**_: Any) -> None:
    for runner in list(_runners.values()):
        await runner.close()


# Index and event handlers are async on purpose: they only touch memory, and kopf would otherwise
# hop to a worker thread for each of them on every watch event.
@kopf.index(GROUP, VERSION, PLURAL)
async def bmh_macs(
    namespace: str | None, name: str, spec: kopf.Spec, meta: kopf.Meta, **_: Any
) -> dict[Any, Any]:
    """(kind, mac) -> holder, across every namespace the operator watches."""
    holder = conflicts.Holder(str(meta.get("creationTimestamp") or ""), namespace or "", name)
    return {key: holder for key in conflicts.mac_keys(spec)}


@kopf.index(GROUP, VERSION, PLURAL)
async def bmh_networks(namespace: str | None, name: str, spec: kopf.Spec, **_: Any) -> dict[Any, Any]:
    """Network name -> the hosts with a NIC on it."""
    return {
        nic["networkRef"]: (namespace or "", name) for nic in spec.get("nics") or [] if nic.get("networkRef")
    }


@kopf.index(GROUP, VERSION, PLURAL)
async def bmh_known(namespace: str | None, name: str, spec: kopf.Spec, **_: Any) -> dict[Any, Any]:
    """Every MAC and name a host is known by -> (namespace, name), for discovery."""
    return {key: (namespace or "", name) for key in discovery.known_keys(name, spec)}


@kopf.on.event(GROUP, VERSION, PLURAL)
async def host_changed(
    namespace: str | None, name: str, spec: kopf.Spec, bmh_macs: kopf.Index[Any, Any] | None = None, **_: Any
) -> None:
    c = ctx()
    c.wake(namespace or "", name)
    if bmh_macs is None:
        return
    for key in conflicts.mac_keys(spec):  # hosts sharing a MAC re-evaluate their conflict at once
        for holder in bmh_macs.get(key, []):
            c.wake(holder.namespace, holder.name)


@kopf.on.event(GROUP, VERSION, "dhcpreservations", labels={HOST_LABEL: kopf.PRESENT})
async def reservation_changed(
    event: kopf.RawEvent,
    body: kopf.Body,
    namespace: str | None,
    name: str,
    labels: kopf.Labels,
    status: kopf.Status,
    **_: Any,
) -> None:
    c, namespace = ctx(), namespace or ""
    host = labels[HOST_LABEL]
    if event.get("type") == "DELETED":
        c.reservation_info.pop((namespace, name), None)
        c.dirty_reservations.add((namespace, host))
    else:
        generation = (body.get("metadata") or {}).get("generation")
        seen = {
            "ip": status.get("ip"),
            "phase": status.get("phase"),
            "message": status.get("message"),
            # Ready for the spec we wrote, not for the one before it (e.g. without the root-path).
            "current": generation is not None and status.get("observedGeneration") == generation,
        }
        if c.reservation_info.get((namespace, name)) == seen:
            return
        c.reservation_info[(namespace, name)] = seen
    c.wake(namespace, host)


@kopf.on.event(GROUP, VERSION, "networks")
async def network_changed(
    event: kopf.RawEvent,
    body: kopf.Body,
    name: str,
    bmh_networks: kopf.Index[Any, Any] | None = None,
    bmh_known: kopf.Index[Any, Any] | None = None,
    **_: Any,
) -> None:
    """A Network that appears (or changes) lets its hosts reserve on it now, not at their next poll;
    its observedLeases are turned into discovered hosts."""
    c = ctx()
    c.network_seen(name, event.get("type") != "DELETED")
    index: Any = bmh_networks or {}
    for namespace, host in index.get(name, []):
        c.wake(namespace, host)
    if event.get("type") != "DELETED" and bmh_known is not None:
        await _discover(copy.deepcopy(dict(body)), bmh_known)


async def _discover(network: dict[str, Any], known: kopf.Index[Any, Any]) -> None:
    def lookup(key: Any) -> list[Any]:
        return list(known.get(key, []))

    name = network["metadata"]["name"]
    retry_in = await discoverer().network(network, lookup)
    timer = discoverer().retry.pop(name, None)
    if timer is not None:
        timer.cancel()
    if retry_in is not None:  # rate-limited: look again when the next token is there

        def again() -> None:
            discoverer().retry.pop(name, None)
            task = asyncio.ensure_future(_discover(network, known))
            _tasks.add(task)
            task.add_done_callback(_tasks.discard)

        discoverer().retry[name] = asyncio.get_running_loop().call_later(max(1.0, retry_in), again)


_discoverers: list[discovery.Discoverer] = []
_tasks: set[asyncio.Future[None]] = set()


def discoverer() -> discovery.Discoverer:
    if not _discoverers:

        async def create(body: dict[str, Any]) -> Any:
            return await ctx().kube.create_host(body["metadata"]["namespace"], body)

        def event(obj: dict[str, Any], reason: str, message: str) -> None:
            info(obj, reason, message)

        namespace = os.environ.get("TRELLIS_NAMESPACE", "trellis-system")
        _discoverers.append(discovery.Discoverer(create, event, namespace))
    return _discoverers[0]


@kopf.on.event(GROUP, VERSION, "talosdevices")
async def device_changed(
    event: kopf.RawEvent,
    namespace: str | None,
    name: str,
    spec: kopf.Spec,
    status: kopf.Status,
    bmh_macs: kopf.Index[Any, Any] | None = None,
    **_: Any,
) -> None:
    """A linked device's phase is the evidence a host's install finished: wake that host at once."""
    c, namespace = ctx(), namespace or ""
    key = (namespace, name)
    before = c.devices.get(key) or {}
    if event.get("type") == "DELETED":
        c.devices.pop(key, None)
        seen: dict[str, Any] = {}
    else:
        seen = install.device_facts({"spec": spec, "status": status})
        if before == seen:
            return
        c.devices[key] = seen
    hosts = {ref for ref in (before.get("ref"), seen.get("ref")) if ref}
    macs = {str(mac) for mac in (before.get("mac"), seen.get("mac")) if mac}
    index: Any = bmh_macs or {}
    for mac in macs:
        for holder in index.get(("boot", normalize_mac(mac)), []):
            if holder.namespace == namespace:
                hosts.add(holder.name)
    for host in hosts:
        c.wake(namespace, host)


async def _pause(wake: asyncio.Event, stopped: kopf.DaemonStopped, delay: float) -> None:
    waiters = [asyncio.ensure_future(wake.wait()), asyncio.ensure_future(stopped.wait())]
    try:
        await asyncio.wait(waiters, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


@kopf.daemon(GROUP, VERSION, PLURAL, cancellation_timeout=30.0)
async def manage(
    body: kopf.Body,
    namespace: str | None,
    name: str,
    uid: str,
    stopped: kopf.DaemonStopped,
    logger: logging.Logger | logging.LoggerAdapter[Any],
    bmh_macs: kopf.Index[Any, Any] | None = None,
    **_: Any,
) -> None:
    runner = runner_for(namespace or "", name, uid)
    wake = ctx().waker(namespace or "", name)
    immediate = 0
    while not stopped:
        wake.clear()
        async with runner.lock:
            if stopped or body.get("metadata", {}).get("deletionTimestamp"):
                return
            try:
                delay = await runner.step(copy.deepcopy(dict(body)), bmh_macs)
            except ApiException as exc:
                logger.warning(f"Kubernetes API error {exc.status} {exc.reason}; retrying")
                runner.status = None  # re-read our status from the watch
                delay = 5.0
        immediate = immediate + 1 if delay <= 0 else 0
        if immediate > HOT_LOOP_LIMIT:
            logger.error("host keeps changing without settling; pausing for a second")
            delay, immediate = 1.0, 0
        if delay > 0:
            await _pause(wake, stopped, delay)


@kopf.on.delete(GROUP, VERSION, PLURAL)
async def deleted(body: kopf.Body, namespace: str | None, name: str, uid: str, **_: Any) -> None:
    key = (namespace or "", name)
    runner = runner_for(*key, uid)
    async with runner.lock:
        await delete_host(runner, copy.deepcopy(dict(body)))
    _runners.pop(key, None)
    ctx().wakers.pop(key, None)
