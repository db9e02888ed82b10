"""Applying a Network's desired state: RouterOS (diff over the API) and the managed dnsmasq."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from trellis.api.network import NetworkSpec
from trellis.operators.network import dnsmasq, workload
from trellis.operators.network.desired import (
    Entry,
    Host,
    bridge_name,
    fingerprint,
    router_entries,
    server_name,
)
from trellis.operators.network.kube import Kube
from trellis.operators.network.routers import EndpointProblem, Endpoints
from trellis.operators.network.routersync import apply_plan, plan_changes, read_state_parallel
from trellis.routeros.api import RouterClients, RouterError, RouterLoginFailed


@dataclass
class Outcome:
    """What a backend did. ``ok`` False means the Network as a whole is not served as specified."""

    ok: bool = True
    reason: str = "Synced"
    message: str = ""
    writes: int = 0
    skipped: bool = False
    owner_problems: dict[str, tuple[str, str]] = field(
        default_factory=dict
    )  # reservation key -> (reason, msg)
    bridge: str | None = None
    # Ask for another pass this soon (seconds): something is on its way, e.g. a dnsmasq rollout.
    retry_in: float | None = None

    @classmethod
    def failed(cls, reason: str, message: str) -> Outcome:
        return cls(ok=False, reason=reason, message=message)


@dataclass
class RouterBackend:
    kube: Kube
    endpoints: Endpoints
    clients: RouterClients
    tag_prefix: str
    drift_seconds: float

    def __post_init__(self) -> None:
        # Network -> (fingerprint of the desired entries, when the router last matched them).
        self._synced: dict[str, tuple[str, float]] = {}

    def forget(self, network: str) -> None:
        self._synced.pop(network, None)

    async def sync(self, network: str, spec: NetworkSpec, hosts: Sequence[Host]) -> Outcome:
        assert spec.router
        entries = router_entries(self.tag_prefix, network, spec, hosts)
        outcome = await self.converge(network, spec.router, entries)
        outcome.bridge = bridge_name(network, spec)
        return outcome

    async def teardown(self, network: str, router: str) -> Outcome:
        """Remove every item tagged for this Network (and nothing else)."""
        self.forget(network)
        return await self.converge(network, router, [], use_cache=False)

    async def converge(
        self, network: str, router: str, entries: list[Entry], use_cache: bool = True
    ) -> Outcome:
        try:
            endpoint = await self.endpoints.get(router)
        except EndpointProblem as exc:
            return Outcome.failed(exc.reason, exc.message)
        client = self.clients.get(router, endpoint)
        digest = fingerprint([endpoint.pool_key(), [dataclasses.astuple(e) for e in entries]])
        last = self._synced.get(network)
        if use_cache and last and last[0] == digest and time.monotonic() - last[1] < self.drift_seconds:
            return Outcome(skipped=True, message="RouterOS items match the desired state")
        try:
            actual = await asyncio.to_thread(read_state_parallel, client, server_name(network))
            plan = plan_changes(entries, actual, self.tag_prefix, network)
            if plan.blocked:
                self._synced.pop(network, None)
                return Outcome.failed("RouterConflict", "; ".join(plan.conflicts[None]))
            result = await asyncio.to_thread(apply_plan, client, plan)
        except RouterLoginFailed as exc:
            return Outcome.failed("RouterLoginFailed", str(exc))
        except RouterError as exc:
            self._synced.pop(network, None)
            return Outcome.failed("RouterUnreachable", str(exc))
        outcome = Outcome(writes=result.writes, message=f"{result.writes} RouterOS writes")
        for owner, reasons in plan.conflicts.items():
            if owner is not None:
                outcome.owner_problems[owner] = ("RouterConflict", "; ".join(reasons))
        for write, error in result.errors:
            if write.owner is None:
                outcome.ok, outcome.reason = False, "RouterRejected"
                outcome.message = f"{write.describe()}: {error}"
            else:
                outcome.owner_problems[write.owner] = ("RouterRejected", f"{write.describe()}: {error}")
        if outcome.ok and not outcome.owner_problems:
            self._synced[network] = (digest, time.monotonic())
        else:
            self._synced.pop(network, None)
        return outcome


ROLLOUT_RECHECK_SECONDS = 3.0


@dataclass
class DnsmasqBackend:
    kube: Kube
    settings: workload.WorkloadSettings
    render_settings: dnsmasq.Settings

    async def sync(self, network: str, uid: str, spec: NetworkSpec, hosts: Sequence[Host]) -> Outcome:
        try:
            config = dnsmasq.render(network, spec, hosts, self.render_settings)
        except dnsmasq.RenderError as exc:
            return Outcome.failed("InvalidDnsmasqValue", str(exc))
        ns = self.settings.namespace
        cm = workload.config_map(network, uid, config, self.settings)
        deploy = workload.deployment(network, uid, spec, config, self.settings)
        name = cm["metadata"]["name"]
        writes = 0
        live_cm = await self.kube.read_configmap(ns, name)
        if (
            live_cm is None
            or (live_cm.data or {}) != cm["data"]
            or _labels(live_cm) != cm["metadata"]["labels"]
        ):
            await self.kube.put_configmap(ns, cm, exists=live_cm is not None)
            writes += 1
        live = await self.kube.read_deployment(ns, name)
        wanted_hash = deploy["metadata"]["annotations"][workload.SPEC_HASH_ANNOTATION]
        live_hash = ((live.metadata.annotations or {}) if live is not None else {}).get(
            workload.SPEC_HASH_ANNOTATION
        )
        if live is None or live_hash != wanted_hash:
            await self.kube.put_deployment(ns, deploy, exists=live is not None)
            writes += 1
        label = f"dnsmasq {ns}/{name} (config {dnsmasq.checksum(config)[:12]})"
        if not self.settings.await_rollout:
            return Outcome(reason="DnsmasqConfigured", message=f"{label} configured", writes=writes)
        # Served means a ready Pod runs this very config: until then a machine booting now would
        # get the old options (or none), so the Network and its reservations are not Ready yet.
        waiting = "the Deployment was just updated" if writes else _not_rolled_out(live, wanted_hash)
        if waiting:
            return Outcome(
                ok=False,
                reason="DnsmasqRollingOut",
                message=f"{label}: {waiting}",
                writes=writes,
                retry_in=ROLLOUT_RECHECK_SECONDS,
            )
        return Outcome(reason="DnsmasqServing", message=f"{label} serving", writes=writes)

    async def remove(self, network: str) -> bool:
        return await self.kube.delete_dnsmasq(self.settings.namespace, workload.object_name(network))


def _labels(obj: Any) -> dict[str, str]:
    return dict(obj.metadata.labels or {})


def _not_rolled_out(deploy: Any, wanted_hash: str) -> str:
    """Why the Deployment does not yet run ``wanted_hash`` on a ready Pod ("" when it does)."""
    if deploy is None:
        return "no Deployment yet"
    if (deploy.metadata.annotations or {}).get(workload.SPEC_HASH_ANNOTATION) != wanted_hash:
        return "the Deployment has an older config"
    status = deploy.status
    wanted = deploy.spec.replicas if deploy.spec and deploy.spec.replicas is not None else 1
    if status is None or (status.observed_generation or 0) < (deploy.metadata.generation or 0):
        return "the Deployment controller has not seen the new config yet"
    if (status.updated_replicas or 0) < wanted or (status.ready_replicas or 0) < wanted:
        return f"{status.ready_replicas or 0}/{wanted} Pods with this config ready"
    if (status.replicas or 0) > wanted:
        return "a Pod with an older config is still running"
    return ""
