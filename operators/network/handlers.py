"""kopf wiring of the network operator: `kopf run -m trellis.operators.network.handlers`.

One worker (daemon) per Network does all of that Network's work, woken by changes to the
Network, its DHCPReservations or its Router and batching bursts of them into one pass.
Routers get a probe daemon each. The logic lives in reconcile.py, backends.py and routers.py.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

import kopf

from trellis import GROUP, VERSION
from trellis.operators.network import dnsmasq, ipam, workload
from trellis.operators.network.backends import DnsmasqBackend, RouterBackend
from trellis.operators.network.desired import DEFAULT_TAG_PREFIX
from trellis.operators.network.kube import Conflict, Kube
from trellis.operators.network.observe import LeaseObserver
from trellis.operators.network.reconcile import Reconciler, ReservationView, pending_status
from trellis.operators.network.routers import Endpoints, probe
from trellis.opkit.conditions import set_condition
from trellis.opkit.settings import configure
from trellis.routeros.api import RouterClients

TEST_MODE = bool(os.environ.get("TRELLIS_TEST_MODE"))
RESYNC_SECONDS = float(os.environ.get("TRELLIS_NETWORK_RESYNC_SECONDS", "30" if TEST_MODE else "300"))
# How often a Network with spec.discovery looks for DHCP clients without a reservation.
DISCOVERY_SECONDS = float(os.environ.get("TRELLIS_NETWORK_DISCOVERY_SECONDS", "3" if TEST_MODE else "30"))
DEBOUNCE_SECONDS = 0.25  # a pass starts once no change arrived for this long...
DEBOUNCE_LIMIT = 2.0  # ...or this long after the first one, whichever comes first


class Runtime:
    """Process-wide state, built at startup."""

    def __init__(self) -> None:
        namespace = os.environ.get("TRELLIS_NAMESPACE", "trellis-system")
        self.kube = Kube()
        self.clients = RouterClients(max_connections=int(os.environ.get("TRELLIS_ROUTER_CONNECTIONS", "4")))
        self.endpoints = Endpoints(self.kube, namespace)
        render = dnsmasq.Settings(
            tftp_root=os.environ.get("TRELLIS_DNSMASQ_TFTP_ROOT", dnsmasq.DEFAULT_TFTP_ROOT),
            lease_file=os.environ.get("TRELLIS_DNSMASQ_LEASE_FILE", f"{workload.LEASE_DIR}/dnsmasq.leases"),
            interface_conf=os.environ.get(
                "TRELLIS_DNSMASQ_INTERFACE_CONF", f"{workload.RUN_DIR}/interface.conf"
            ),
        )
        self.router = RouterBackend(
            self.kube,
            self.endpoints,
            self.clients,
            tag_prefix=os.environ.get("TRELLIS_ROUTER_TAG", DEFAULT_TAG_PREFIX),
            drift_seconds=float(os.environ.get("TRELLIS_ROUTER_DRIFT_SECONDS", "600")),
        )
        settings = workload.WorkloadSettings.from_env()
        observer = LeaseObserver(
            self.kube, self.router, settings, log_dir=os.environ.get("TRELLIS_DNSMASQ_LOG_DIR") or None
        )
        self.reconciler = Reconciler(
            self.kube,
            self.router,
            DnsmasqBackend(self.kube, settings, render),
            observer=observer,
            discovery_seconds=DISCOVERY_SECONDS,
        )
        self.wake: dict[str, asyncio.Event] = {}
        self.generations: dict[str, int | None] = {}  # reservation -> last spec generation seen

    def poke(self, network: str | None) -> None:
        if network and network in self.wake:
            self.wake[network].set()

    def poke_all(self) -> None:
        for event in self.wake.values():
            event.set()


RUNTIME: Runtime | None = None


def runtime() -> Runtime:
    assert RUNTIME is not None, "operator not started"
    return RUNTIME


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
    global RUNTIME
    configure(settings, "network")
    # Reservation events arrive by the thousand; kopf's per-handler INFO lines must not each become
    # a Kubernetes Event. The operator posts its own Events (conflicts, refusals) explicitly.
    settings.posting.level = logging.WARNING
    RUNTIME = Runtime()


@kopf.on.cleanup()
async def cleanup(**_: Any) -> None:
    if RUNTIME is not None:
        RUNTIME.clients.close()


# --- indexes: what every pass needs without listing the cluster ------------------------------


@kopf.index(GROUP, VERSION, "dhcpreservations")
def reservations_by_network(
    namespace: str | None, name: str, uid: str, spec: Any, status: Any, meta: Any, **_: Any
) -> dict[str, ReservationView]:
    view = ReservationView(
        namespace=namespace or "",
        name=name,
        uid=uid,
        created=str(meta.get("creationTimestamp") or ""),
        generation=meta.get("generation"),
        spec=dict(spec),
        status=dict(status),
    )
    return {str(spec.get("networkRef", "")): view}


@kopf.index(GROUP, VERSION, "networks")
def network_cidrs(name: str, spec: Any, meta: Any, **_: Any) -> dict[str, ipam.NetworkRef] | None:
    if meta.get("deletionTimestamp"):
        return None  # on its way out: no longer blocks a younger overlapping Network
    return {"all": ipam.NetworkRef(name, str(meta.get("creationTimestamp") or ""), str(spec.get("cidr", "")))}


# --- wake-ups ---------------------------------------------------------------------------------


@kopf.on.event(GROUP, VERSION, "dhcpreservations")
async def reservation_changed(
    type: str, namespace: str | None, name: str, spec: Any, status: Any, meta: Any, uid: str, **kwargs: Any
) -> None:
    rt = runtime()
    network_cidrs: kopf.Index[str, ipam.NetworkRef] = kwargs["network_cidrs"]
    network = str(spec.get("networkRef", ""))
    key, generation = f"{namespace}/{name}", meta.get("generation")
    if type == "DELETED":
        rt.generations.pop(key, None)
        rt.poke(network)
        return
    if rt.generations.get(key) == generation:
        return  # a status or metadata write (most often our own): nothing for IPAM or the backend
    rt.generations[key] = generation
    if network in rt.wake:
        rt.poke(network)
        return
    if meta.get("deletionTimestamp") or any(n.name == network for n in network_cidrs.get("all", [])):
        return
    # No such Network (yet): say so on the reservation; its worker takes over once it exists.
    if await rt.kube.get_cluster("networks", network) is None:
        view = ReservationView(
            namespace or "", name, uid, "", meta.get("generation"), dict(spec), dict(status)
        )
        await rt.reconciler.write_reservation(
            view, pending_status(view, "NetworkNotFound", f"Network {network} does not exist")
        )


@kopf.on.event(GROUP, VERSION, "networks")
def network_changed(type: str, name: str, **_: Any) -> None:
    rt = runtime()
    if type == "DELETED":
        rt.poke_all()  # a younger overlapping Network may now be valid
    else:
        rt.poke(name)


@kopf.on.event(GROUP, VERSION, "routers")
def router_changed(name: str, **_: Any) -> None:
    rt = runtime()
    rt.endpoints.invalidate(name)
    rt.poke_all()


# --- workers ----------------------------------------------------------------------------------


@kopf.daemon(GROUP, VERSION, "networks", cancellation_timeout=10)
async def network_worker(name: str, stopped: kopf.DaemonStopped, logger: Any, **kwargs: Any) -> None:
    rt = runtime()
    reservations_by_network: kopf.Index[str, ReservationView] = kwargs["reservations_by_network"]
    network_cidrs: kopf.Index[str, ipam.NetworkRef] = kwargs["network_cidrs"]
    wake = rt.wake.setdefault(name, asyncio.Event())
    failures = 0
    try:
        while not stopped:
            wake.clear()
            delay = RESYNC_SECONDS
            try:
                reservations = list(reservations_by_network.get(name, []))
                networks = list(network_cidrs.get("all", []))
                retry_in = await rt.reconciler.reconcile_network(name, reservations, networks, logger)
                if retry_in is not None:
                    delay = min(delay, retry_in)
                failures = 0
            except Conflict as exc:
                logger.info("%s; starting over", exc)
                delay = 0
            except Exception:
                failures += 1
                delay = min(30.0, 2.0**failures)
                logger.exception("Network %s: reconcile failed (retry in %.0fs)", name, delay)
            if delay:
                waiter = asyncio.ensure_future(wake.wait())
                stopper = asyncio.ensure_future(stopped.wait())
                await asyncio.wait({waiter, stopper}, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                stopper.cancel()
            await _quiet(wake)  # let a burst of changes land in one pass
    finally:
        if rt.wake.get(name) is wake:
            del rt.wake[name]


async def _quiet(wake: asyncio.Event) -> None:
    deadline = asyncio.get_running_loop().time() + DEBOUNCE_LIMIT
    while True:
        wake.clear()
        left = deadline - asyncio.get_running_loop().time()
        await asyncio.sleep(max(0.0, min(DEBOUNCE_SECONDS, left)))
        if not wake.is_set() or left <= DEBOUNCE_SECONDS:
            return


@kopf.on.delete(GROUP, VERSION, "networks")
async def network_deleted(name: str, body: kopf.Body, spec: Any, logger: Any, **kwargs: Any) -> None:
    """Refuse while reservations reference the Network; then remove only what we created."""
    rt = runtime()
    reservations_by_network: kopf.Index[str, ReservationView] = kwargs["reservations_by_network"]
    users = [r.key for r in reservations_by_network.get(name, [])]
    if users:
        listed = ", ".join(sorted(users)[:5]) + (f" and {len(users) - 5} more" if len(users) > 5 else "")
        message = f"{len(users)} DHCPReservation(s) still reference this Network: {listed}"
        old = body.get("status") or {}
        conds = set_condition(old.get("conditions"), "Ready", False, "DeletionBlocked", message)
        if conds != old.get("conditions"):
            await rt.kube.patch_network_status(name, {"conditions": conds}, None)
            kopf.warn(body, reason="DeletionBlocked", message=message)
        raise kopf.TemporaryError(message, delay=5)
    router = spec.get("router")
    if router:
        outcome = await rt.router.teardown(name, router)
        if outcome.reason == "RouterNotFound":
            # The Router object is gone: nothing we could reach is left to clean up.
            logger.warning("Network %s: Router %s does not exist; not cleaning it up", name, router)
        elif not outcome.ok:
            raise kopf.TemporaryError(
                f"cannot remove this Network's RouterOS items: {outcome.message}", delay=10
            )
        else:
            logger.info("Network %s: removed %d RouterOS items", name, outcome.writes)
    await rt.reconciler.dnsmasq.remove(name)


@kopf.daemon(GROUP, VERSION, "routers", cancellation_timeout=5)
async def router_prober(
    name: str, body: kopf.Body, stopped: kopf.DaemonStopped, logger: Any, **_: Any
) -> None:
    rt = runtime()
    while not stopped:
        interval = float(body.get("spec", {}).get("probeIntervalSeconds", 60))
        try:
            obj = await rt.kube.get_cluster("routers", name)
            if obj is None:
                return
            await probe(name, obj, rt.endpoints, rt.clients, rt.kube, logger)
        except Exception:
            logger.exception("Router %s: probe failed", name)
        await stopped.wait(interval)
