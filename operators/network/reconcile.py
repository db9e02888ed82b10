"""One reconcile of one Network: IPAM for all its reservations, the backend, then statuses.

Only the Network's own worker calls ``reconcile_network`` for it, one pass at a time, with every
reservation that references it: that is what makes allocation race-free. The IPAM record
(``status.allocations``) is written with the resourceVersion read at the start of the pass, so a
second writer (another operator replica, a stale view) gets a 409 and the pass starts over.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import kopf
from pydantic import ValidationError

from trellis import API_VERSION
from trellis.api.common import normalize_mac
from trellis.api.network import NetworkSpec, PXEOptions, ReservationPXEOptions
from trellis.operators.network import ipam, leases
from trellis.operators.network.backends import DnsmasqBackend, Outcome, RouterBackend
from trellis.operators.network.desired import Host
from trellis.operators.network.kube import Kube
from trellis.opkit.conditions import find, now_rfc3339, set_condition, without_times

if TYPE_CHECKING:
    from trellis.operators.network.observe import LeaseObserver

Logger = logging.Logger | logging.LoggerAdapter[Any]
STATUS_WRITERS = 16


@dataclass(frozen=True)
class ReservationView:
    """What the reservation index keeps about one DHCPReservation."""

    namespace: str
    name: str
    uid: str
    created: str
    generation: int | None
    spec: Mapping[str, Any]
    status: Mapping[str, Any]

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def body(self) -> dict[str, Any]:
        meta = {"name": self.name, "namespace": self.namespace, "uid": self.uid}
        return {"apiVersion": API_VERSION, "kind": "DHCPReservation", "metadata": meta}


@dataclass
class Reconciler:
    kube: Kube
    router: RouterBackend
    dnsmasq: DnsmasqBackend
    observer: LeaseObserver | None = None
    discovery_seconds: float = 30.0

    async def reconcile_network(
        self,
        name: str,
        reservations: Sequence[ReservationView],
        networks: Iterable[ipam.NetworkRef],
        logger: Logger,
    ) -> float | None:
        """One pass; returns how soon another pass should look again, if sooner than the resync."""
        started = time.monotonic()
        net = await self.kube.get_cluster("networks", name)
        if net is None or net["metadata"].get("deletionTimestamp"):
            return None
        meta, old = net["metadata"], net.get("status") or {}
        generation = meta.get("generation")
        try:
            spec = NetworkSpec.model_validate(net.get("spec") or {})
        except ValidationError as exc:
            await self._network_failed(net, "InvalidSpec", str(exc.errors()[0]["msg"]), reservations, logger)
            return None
        ranges = [(spec.dhcp.range.start, spec.dhcp.range.end)] if spec.dhcp and spec.dhcp.range else []
        excluded = [spec.dnsmasq.address] if spec.dnsmasq and spec.dnsmasq.address else []
        plan, problems = ipam.plan_problems(spec.cidr, spec.gateway, ranges, excluded)
        older = ipam.overlaps(networks).get(name)
        if older:
            problems.insert(0, f"cidr {spec.cidr} overlaps the older Network {older}")
        if plan is None or problems:
            reason = "Overlapping" if older else "InvalidSpec"
            await self._network_failed(net, reason, "; ".join(problems), reservations, logger)
            return None

        # IPAM: previous allocations keep automatic addresses where they are.
        previous = {r.key: r.status["ip"] for r in reservations if r.status.get("ip")}
        previous.update(old.get("allocations") or {})
        requests = [_request(r) for r in reservations]
        result = ipam.allocate(plan, requests, previous)
        resource_version = meta.get("resourceVersion")
        old_alloc = old.get("allocations") or {}
        if result.allocations != old_alloc:
            patch: dict[str, Any] = {k: None for k in old_alloc if k not in result.allocations}
            patch.update(result.allocations)
            resource_version = await self.kube.patch_network_status(
                name, {"allocations": patch}, resource_version
            )

        by_key = {r.key: r for r in reservations}
        hosts = [_host(by_key[v.key], v) for v in result.verdicts.values() if v.ok and v.ip]
        backend_started = time.monotonic()
        outcome = await self._backends(name, meta["uid"], spec, hosts, logger)
        backend_took = time.monotonic() - backend_started

        conditions = set_condition(
            old.get("conditions"), "Ready", outcome.ok, outcome.reason, outcome.message, generation
        )
        conditions = set_condition(conditions, "Reconciled", outcome.ok, outcome.reason, "", generation)
        status: dict[str, Any] = {
            "observedGeneration": generation,
            "size": plan.size(),
            "allocated": len(result.allocations),
            "free": max(0, plan.reservable() - len(result.allocations)),
            "reservations": len(reservations),
            "conflicts": result.conflict_count(),
            "conditions": conditions,
        }
        if outcome.bridge:
            status["bridge"] = outcome.bridge
        retry_in = outcome.retry_in
        new_macs: list[str] = []
        if spec.discovery is not None and spec.discovery.enabled and self.observer is not None:
            seen = await self.observer.sightings(name, spec)
            if seen is not None:
                known = {normalize_mac(str(r.spec.get("mac", ""))) for r in reservations}
                before = {e.get("mac") for e in old.get("observedLeases") or ()}
                observed = leases.merge_observed(old.get("observedLeases"), seen, known)
                status["observedLeases"] = observed or None
                new_macs = [e["mac"] for e in observed if e["mac"] not in before]
            retry_in = min(retry_in or self.discovery_seconds, self.discovery_seconds)
        elif old.get("observedLeases"):
            status["observedLeases"] = None
        became_ready = outcome.ok and not _ready(old)
        if outcome.ok and (outcome.writes or became_ready):
            status["lastSyncTime"] = now_rfc3339()
        if _differs(old, status) or "lastSyncTime" in status:
            await self.kube.patch_network_status(name, status, resource_version)
            if became_ready:
                kopf.event(
                    as_body(net), type="Normal", reason=outcome.reason, message=outcome.message or "served"
                )
            elif not outcome.ok and _reason(old) != outcome.reason:
                kopf.warn(as_body(net), reason=outcome.reason, message=outcome.message)
            if new_macs:
                listed = ", ".join(new_macs[:8]) + (" ..." if len(new_macs) > 8 else "")
                message = f"DHCP from {len(new_macs)} MAC(s) without a reservation: {listed}"
                kopf.event(as_body(net), type="Normal", reason="UnknownDHCPClient", message=message)
        if not outcome.ok:
            logger.warning("Network %s: %s: %s", name, outcome.reason, outcome.message)
        await self._reservation_statuses(reservations, result, outcome)
        count, took = len(reservations), time.monotonic() - started
        logger.debug(
            "Network %s: pass complete (%d reservations, %d writes, %.2fs, backend %.2fs)",
            *(name, count, outcome.writes, took, backend_took),
        )
        return retry_in

    async def _backends(
        self, name: str, uid: str, spec: NetworkSpec, hosts: list[Host], logger: Logger
    ) -> Outcome:
        server = spec.dhcp.server if spec.dhcp else "none"
        outcome = Outcome(reason="Allocated", message="IPAM only (no router, no DHCP server)")
        if spec.router:
            outcome = await self.router.sync(name, spec, hosts)
            if not outcome.ok:
                return outcome
        if server == "dnsmasq":
            served = await self.dnsmasq.sync(name, uid, spec, hosts)
            served.bridge = outcome.bridge
            served.owner_problems.update(outcome.owner_problems)
            return served
        if await self.dnsmasq.remove(name):
            logger.info("Network %s: removed the managed dnsmasq (dhcp.server is %s)", name, server)
        return outcome

    async def _network_failed(
        self,
        net: dict[str, Any],
        reason: str,
        message: str,
        reservations: Sequence[ReservationView],
        logger: Logger,
    ) -> None:
        """Bad Network spec: report it, touch no backend, hold every reservation as Pending."""
        old = net.get("status") or {}
        generation = net["metadata"].get("generation")
        conditions = set_condition(old.get("conditions"), "Ready", False, reason, message, generation)
        conditions = set_condition(conditions, "Reconciled", False, reason, message, generation)
        status = {
            "observedGeneration": generation,
            "reservations": len(reservations),
            "conditions": conditions,
        }
        if _differs(old, status):
            await self.kube.patch_network_status(
                net["metadata"]["name"], status, net["metadata"]["resourceVersion"]
            )
            kopf.warn(as_body(net), reason=reason, message=message)
            logger.warning("Network %s: %s: %s", net["metadata"]["name"], reason, message)
        pending = f"Network {net['metadata']['name']} is not ready: {reason}"
        await _gather_limited(
            [self.write_reservation(r, pending_status(r, "NetworkNotReady", pending)) for r in reservations]
        )

    async def _reservation_statuses(
        self, reservations: Sequence[ReservationView], result: ipam.Result, outcome: Outcome
    ) -> None:
        jobs = []
        for r in reservations:
            verdict = result.verdicts[r.key]
            jobs.append(self.write_reservation(r, _reservation_status(r, verdict, outcome)))
        await _gather_limited(jobs)

    async def write_reservation(self, r: ReservationView, status: dict[str, Any]) -> None:
        if not _differs(r.status, status):
            return
        await self.kube.patch_reservation_status(r.namespace, r.name, status)
        new_problem = _problem(status)
        if new_problem and new_problem != _problem(r.status):
            kopf.warn(as_body(r.body()), reason=new_problem[0], message=new_problem[1])


def as_body(raw: Mapping[str, Any]) -> kopf.Body:
    return kopf.Body(cast(kopf.RawBody, raw))


def _request(r: ReservationView) -> ipam.Request:
    spec = r.spec
    return ipam.Request(
        key=r.key,
        created=r.created,
        mac=str(spec.get("mac", "")),
        ip=spec.get("ip") or None,
        hostname=spec.get("hostname") or None,
        allow_dynamic_range=bool(spec.get("allowInDynamicRange", False)),
    )


def _host(r: ReservationView, verdict: ipam.Verdict) -> Host:
    pxe_raw = r.spec.get("pxe")
    pxe = ReservationPXEOptions.model_validate(pxe_raw) if pxe_raw else None
    assert verdict.mac and verdict.ip
    boot = pxe.enabled if pxe is not None else True
    return Host(
        key=r.key,
        mac=verdict.mac,
        ip=verdict.ip,
        hostname=r.spec.get("hostname") or None,
        pxe=PXEOptions.model_validate(pxe.model_dump(exclude={"enabled"}))
        if pxe is not None and boot
        else None,
        default_gateway=bool(r.spec.get("defaultGateway", True)),
        boot=boot,
    )


def _reservation_status(r: ReservationView, v: ipam.Verdict, outcome: Outcome) -> dict[str, Any]:
    gen = r.generation
    conds = set_condition(r.status.get("conditions"), "Allocated", v.ok, v.reason, v.message, gen)
    if v.conflicts:
        others = ", ".join(v.conflicts)
        if v.ok:
            msg = f"{others} claims the same address, MAC or hostname; this older reservation keeps {v.ip}"
            conds = set_condition(conds, "Conflict", True, "ConflictDetected", msg, gen)
        else:
            conds = set_condition(conds, "Conflict", True, v.reason, v.message, gen)
    elif find(conds, "Conflict"):
        conds = set_condition(conds, "Conflict", False, "NoConflict", "", gen)
    problem = outcome.owner_problems.get(r.key)
    if not v.ok:
        ready, reason, message = False, v.reason, v.message
        phase = "Conflict" if v.conflicts else "Error"
    elif not outcome.ok:
        ready, reason, message, phase = (
            False,
            "NetworkNotReady",
            f"{outcome.reason}: {outcome.message}",
            "Allocated",
        )
    elif problem:
        ready, (reason, message), phase = False, problem, "Error"
    else:
        ready, reason, phase = True, outcome.reason, "Ready"
        message = f"{v.ip} served ({outcome.reason})"
    conds = set_condition(conds, "Ready", ready, reason, message, gen)
    status: dict[str, Any] = {"observedGeneration": gen, "phase": phase, "conditions": conds}
    status["ip"] = v.ip if v.ok else None
    status["message"] = "" if ready else message[:256]
    return status


def pending_status(r: ReservationView, reason: str, message: str) -> dict[str, Any]:
    conds = set_condition(r.status.get("conditions"), "Ready", False, reason, message, r.generation)
    return {
        "observedGeneration": r.generation,
        "phase": "Pending",
        "conditions": conds,
        "message": message[:256],
    }


def _problem(status: Mapping[str, Any]) -> tuple[str, str] | None:
    """The Warning an object's status calls for: a conflict, or why it is not Ready."""
    conflict = find(status.get("conditions"), "Conflict")
    if conflict and conflict.get("status") == "True":
        return str(conflict.get("reason")), str(conflict.get("message"))
    ready = find(status.get("conditions"), "Ready")
    if ready and ready.get("status") == "False" and ready.get("reason") not in ("NetworkNotReady",):
        return str(ready.get("reason")), str(ready.get("message"))
    return None


def _ready(status: Mapping[str, Any]) -> bool:
    cond = find(status.get("conditions"), "Ready")
    return bool(cond and cond.get("status") == "True")


def _reason(status: Mapping[str, Any]) -> str | None:
    cond = find(status.get("conditions"), "Ready")
    return str(cond.get("reason")) if cond else None


def _differs(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    for key, value in new.items():
        if key == "conditions":
            if without_times(old.get("conditions")) != without_times(value):
                return True
        elif key == "lastSyncTime":
            continue
        elif old.get(key) != value:
            return True
    return False


async def _gather_limited(jobs: Sequence[Any], limit: int = STATUS_WRITERS) -> None:
    sem = asyncio.Semaphore(limit)

    async def one(job: Any) -> None:
        async with sem:
            await job

    await asyncio.gather(*(one(j) for j in jobs))
