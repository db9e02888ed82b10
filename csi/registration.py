"""Kubelet plugin registration (``pluginregistration/v1``), served by the node plugin itself.

Kubelet's plugin watcher watches its ``plugins_registry`` directory. For a socket that appears there
it calls GetInfo, registers the CSI driver at the endpoint it got (calling NodeGetInfo on it to fill
the CSINode object) and reports the outcome with NotifyRegistrationStatus; a socket that disappears
deregisters the driver. node-driver-registrar serves the same from a sidecar container; serving it
here means the chart needs no registrar image.

Re-registration needs no extra work: a restarted kubelet walks the directory again and calls GetInfo
on the socket that is still being served; a restarted plugin replaces the stale socket with a new
one, which kubelet sees as a plugin appearing.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
from collections.abc import Callable
from concurrent import futures
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc

from trellis.csi import metrics
from trellis.csi.server import CsiInterceptor, socket_path
from trellis.csi.stubs import load_registration

reg_pb, reg_pb_grpc = load_registration()
if TYPE_CHECKING:
    _Base = object
else:
    _Base = reg_pb_grpc.RegistrationServicer
log = logging.getLogger(__name__)

PLUGIN_TYPE = "CSIPlugin"
# What node-driver-registrar advertises; kubelet reads them as CSI spec versions and needs a 1.x.
SUPPORTED_VERSIONS = ("1.0.0",)
# sun_path is 108 bytes with the terminating NUL; grpc's own error for a longer path is obscure.
_SUN_PATH_MAX = 107
WARN_AFTER_SECONDS = 120.0


class RegistrationError(Exception):
    pass


def socket_name(driver_name: str) -> str:
    """node-driver-registrar's naming, so a node moving off the sidecar keeps one socket per driver."""
    return f"{driver_name}-reg.sock"


def kubelet_endpoint(value: str | None, csi_endpoint: str) -> str:
    """The CSI socket's path as kubelet dials it: ``value`` when given, else the endpoint's own path.

    Kubelet dials the endpoint as a bare unix socket path, so a ``unix://`` form is unwrapped.
    """
    path = value or csi_endpoint
    if path.startswith("unix://"):
        path = str(socket_path(path))
    if not path.startswith("/"):
        raise RegistrationError(f"--kubelet-registration-path {value!r} must be an absolute path on the host")
    return path


class RegistrationService(_Base):
    """Answers kubelet's plugin watcher; ``on_failed(error)`` runs when kubelet refuses the plugin."""

    def __init__(self, driver_name: str, endpoint: str, on_failed: Callable[[str], None]) -> None:
        self.driver_name = driver_name
        self.endpoint = endpoint
        self.on_failed = on_failed
        self.asked = threading.Event()

    def GetInfo(self, request: Any, context: Any) -> Any:
        self.asked.set()
        return reg_pb.PluginInfo(
            type=PLUGIN_TYPE,
            name=self.driver_name,
            endpoint=self.endpoint,
            supported_versions=list(SUPPORTED_VERSIONS),
        )

    def NotifyRegistrationStatus(self, request: Any, context: Any) -> Any:
        if request.plugin_registered:
            metrics.KUBELET_REGISTRATIONS.labels("registered").inc()
            metrics.KUBELET_REGISTERED.set(1)
            log.info("registered with kubelet", extra={"driver": self.driver_name, "endpoint": self.endpoint})
        else:
            metrics.KUBELET_REGISTRATIONS.labels("failed").inc()
            metrics.KUBELET_REGISTERED.set(0)
            # As node-driver-registrar does: exit non-zero so kubelet restarts the container, whose
            # new socket makes kubelet try the registration again.
            log.error(
                "kubelet refused the registration; exiting so the container is restarted",
                extra={"driver": self.driver_name, "endpoint": self.endpoint, "error": request.error},
            )
            self.on_failed(request.error)
        return reg_pb.RegistrationStatusResponse()


def _remove_stale(path: Path) -> None:
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not (stat.S_ISSOCK(mode) or stat.S_ISLNK(mode)):
        raise RegistrationError(f"{path} exists and is not a socket: not removing it")
    os.unlink(path)
    log.info("removed a stale registration socket", extra={"socket": str(path)})


class Registration:
    """The Registration service on ``<directory>/<driver-name>-reg.sock``."""

    def __init__(
        self,
        directory: Path,
        driver_name: str,
        endpoint: str,
        on_failed: Callable[[str], None],
        *,
        warn_after: float = WARN_AFTER_SECONDS,
    ) -> None:
        self.socket = Path(directory) / socket_name(driver_name)
        self.service = RegistrationService(driver_name, endpoint, on_failed)
        self._warn_after = warn_after
        self._server: grpc.Server | None = None
        self._timer: threading.Timer | None = None

    def start(self) -> None:
        if len(os.fsencode(self.socket)) > _SUN_PATH_MAX:
            raise RegistrationError(f"registration socket path {self.socket} is too long for a unix socket")
        # Created when missing, like the CSI socket's directory: in the chart it is the mounted
        # hostPath; if that mount is wrong, the warning below says kubelet never came.
        self.socket.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale(self.socket)
        metrics.KUBELET_REGISTERED.set(0)
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="registration"),
            interceptors=[CsiInterceptor()],
        )
        reg_pb_grpc.add_RegistrationServicer_to_server(self.service, server)
        # Only kubelet (root) has to reach it, and the socket exists from the bind on: a umask
        # leaves no moment in which it is open to others (node-driver-registrar does the same).
        previous = os.umask(0o077)
        try:
            bound = server.add_insecure_port(f"unix://{self.socket}")
        finally:
            os.umask(previous)
        if not bound:
            raise RegistrationError(f"cannot listen on {self.socket}")
        server.start()
        self._server = server
        log.info(
            "registration socket ready for kubelet",
            extra={"socket": str(self.socket), "endpoint": self.service.endpoint},
        )
        self._timer = threading.Timer(self._warn_after, self._warn_if_unasked)
        self._timer.daemon = True
        self._timer.start()

    def _warn_if_unasked(self) -> None:
        if not self.service.asked.is_set():
            log.warning(
                "kubelet has not asked for the plugin's registration yet: is the registration "
                "directory kubelet's plugins_registry?",
                extra={"socket": str(self.socket)},
            )

    def stop(self, grace: float = 2.0) -> None:
        """Remove the socket first, so kubelet deregisters the plugin, then finish in-flight calls."""
        if self._timer is not None:
            self._timer.cancel()
        self.socket.unlink(missing_ok=True)
        if self._server is not None:
            self._server.stop(grace).wait()
            self._server = None
