"""CSI Identity service: plugin info, capabilities and a Probe that reflects RDS reachability."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from google.protobuf import wrappers_pb2

from trellis.csi import DRIVER_NAME, version
from trellis.csi.stubs import load

pb, pb_grpc = load()
if TYPE_CHECKING:
    _Base = object
else:
    _Base = pb_grpc.IdentityServicer
log = logging.getLogger(__name__)
PROBE_CACHE_SECONDS = 5.0


class IdentityService(_Base):
    """``check`` raises when the RDS is unreachable (controller); None means always ready (node)."""

    def __init__(
        self, *, controller: bool, check: Callable[[], None] | None = None, name: str = DRIVER_NAME
    ) -> None:
        self.controller = controller
        self.check = check
        self.name = name
        self._lock = threading.Lock()
        self._last: tuple[float, bool] = (0.0, False)

    def GetPluginInfo(self, request: Any, context: Any) -> Any:
        return pb.GetPluginInfoResponse(name=self.name, vendor_version=version())

    def GetPluginCapabilities(self, request: Any, context: Any) -> Any:
        service = pb.PluginCapability.Service
        caps = [pb.PluginCapability(service=service(type=service.VOLUME_ACCESSIBILITY_CONSTRAINTS))]
        if self.controller:
            caps.insert(0, pb.PluginCapability(service=service(type=service.CONTROLLER_SERVICE)))
            expansion = pb.PluginCapability.VolumeExpansion
            caps.append(pb.PluginCapability(volume_expansion=expansion(type=expansion.ONLINE)))
        return pb.GetPluginCapabilitiesResponse(capabilities=caps)

    def Probe(self, request: Any, context: Any) -> Any:
        return pb.ProbeResponse(ready=wrappers_pb2.BoolValue(value=self.ready()))

    def ready(self) -> bool:
        """RDS reachability, cached briefly so liveness probes do not each open a command."""
        if self.check is None:
            return True
        with self._lock:
            checked_at, ok = self._last
            if time.monotonic() - checked_at < PROBE_CACHE_SECONDS:
                return ok
            try:
                self.check()
                ok = True
            except Exception as exc:
                log.warning("RDS is not reachable", extra={"error": str(exc)})
                ok = False
            self._last = (time.monotonic(), ok)
            return ok


def probe_over_socket(endpoint: str, timeout: float) -> Callable[[], bool]:
    """A liveness check that does what the livenessprobe sidecar does: call this plugin's own Probe
    over its gRPC socket, so a wedged server (every worker stuck) fails it, not only a dead process."""
    import grpc

    stub = pb_grpc.IdentityStub(grpc.insecure_channel(endpoint))

    def healthy() -> bool:
        try:
            response = stub.Probe(pb.ProbeRequest(), timeout=timeout)
        except grpc.RpcError as exc:
            log.warning("liveness: Probe failed", extra={"error": str(exc.code())})
            return False
        return not response.HasField("ready") or bool(response.ready.value)

    return healthy
