"""Hardware discovery, the reading part: who asked this Network for DHCP.

* RouterOS: one ``print`` of ``/ip/dhcp-server/lease`` limited to the Network's own DHCP server,
  on the Router's pooled connection; only ``dynamic`` rows count (static ones are reservations).
* Managed dnsmasq: dnsmasq already logs every DHCP exchange (``log-dhcp``, to stdout), and the
  kubelet keeps those logs. The operator reads the lines written since its last look through the
  Pod log API (``pods/log``, read-only, release namespace only). No sidecar, no extra image, no
  credentials inside the hostNetwork Pod, no lease file shared with anyone: Kubernetes stays the
  only state store (the result lands in ``Network.status.observedLeases``), and unlike the lease
  file the log also shows clients that asked but got no address (a Network without a dynamic
  range). Tests that run the rendered config with dnsmasq themselves set
  ``TRELLIS_DNSMASQ_LOG_DIR`` and the log is read from ``<dir>/<dnsmasq object name>.log``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from dataclasses import dataclass, field
from pathlib import Path

from trellis.api.network import NetworkSpec
from trellis.operators.network import workload
from trellis.operators.network.backends import RouterBackend
from trellis.operators.network.desired import LEASE, server_name
from trellis.operators.network.kube import Kube
from trellis.operators.network.leases import Sighting, parse_dnsmasq_log, parse_routeros_leases
from trellis.operators.network.routers import EndpointProblem
from trellis.routeros.api import RouterError

LEASE_PROPS = (".id", "dynamic", "mac-address", "address", "active-mac-address", "active-address",
               "host-name", "last-seen", "status")  # fmt: skip
FIRST_LOOK_SECONDS = 3600  # after a restart: the last hour of dnsmasq's log


@dataclass
class LeaseObserver:
    kube: Kube
    router: RouterBackend
    settings: workload.WorkloadSettings
    log_dir: str | None = None
    _last_look: dict[str, float] = field(default_factory=dict)
    _offsets: dict[str, int] = field(default_factory=dict)

    async def sightings(self, network: str, spec: NetworkSpec) -> list[Sighting] | None:
        """DHCP clients seen since the last look; None when the backend could not be read."""
        server = spec.dhcp.server if spec.dhcp else "none"
        now = dt.datetime.now(dt.UTC)
        if server == "router" and spec.router:
            return await self._router(network, spec.router, now)
        if server == "dnsmasq":
            return await self._dnsmasq(network, now)
        return []

    async def _router(self, network: str, router: str, now: dt.datetime) -> list[Sighting] | None:
        try:
            endpoint = await self.router.endpoints.get(router)
        except EndpointProblem:
            return None
        client = self.router.clients.get(router, endpoint)
        where = {"server": server_name(network)}
        try:
            rows = await asyncio.to_thread(client.call, lambda s: s.print(LEASE, LEASE_PROPS, where))
        except RouterError:
            return None
        return parse_routeros_leases(rows, now)

    async def _dnsmasq(self, network: str, now: dt.datetime) -> list[Sighting]:
        name = workload.object_name(network)
        if self.log_dir:
            path = Path(self.log_dir) / f"{name}.log"
            if not path.exists():
                return []
            with path.open("rb") as f:
                f.seek(self._offsets.get(network, 0))
                data = f.read()
                self._offsets[network] = f.tell()
            return parse_dnsmasq_log(data.decode(errors="replace"), now)
        started = time.monotonic()
        last = self._last_look.get(network)
        # A little overlap with the last look: merging a sighting twice changes nothing.
        since = FIRST_LOOK_SECONDS if last is None else int(started - last) + 5
        label = workload.object_labels(network)[workload.NETWORK_LABEL]
        selector = f"{workload.NETWORK_LABEL}={label},app.kubernetes.io/name=dnsmasq"
        text = await self.kube.pod_logs(self.settings.namespace, selector, "dnsmasq", since)
        self._last_look[network] = started
        return parse_dnsmasq_log(text, now)

    def forget(self, network: str) -> None:
        self._last_look.pop(network, None)
        self._offsets.pop(network, None)
