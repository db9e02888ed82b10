"""The gRPC server on a unix socket, with one interceptor for errors, metrics and log context."""

from __future__ import annotations

import logging
import os
import secrets
import time
from collections.abc import Callable
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc

from trellis.csi import metrics
from trellis.csi.errors import CsiError, from_exception
from trellis.csi.logs import scope
from trellis.csi.stubs import load

pb, pb_grpc = load()
log = logging.getLogger(__name__)
# Request fields that name what a call is about, bound to its log lines.
_SUBJECT_FIELDS = (
    "volume_id",
    "source_volume_id",
    "snapshot_id",
    "name",
    "target_path",
    "staging_target_path",
)
_QUIET = {
    "Probe",
    "GetPluginInfo",
    "GetPluginCapabilities",
    "NodeGetCapabilities",
    "ControllerGetCapabilities",
}


def _subject(request: Any) -> dict[str, str]:
    found = {}
    for name in _SUBJECT_FIELDS:
        value = getattr(request, name, "")
        if value:
            found["request_name" if name == "name" else name] = value
    return found


def _wrap(method: str, behavior: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    def handle(request: Any, context: Any) -> Any:
        started = time.monotonic()
        code = grpc.StatusCode.OK
        with scope(operation=method, request_id=secrets.token_hex(4), **_subject(request)):
            if method not in _QUIET:
                log.info("call")
            try:
                return behavior(request, context)
            except Exception as exc:
                error: CsiError = from_exception(exc)
                code = error.code
                level = logging.ERROR if code == grpc.StatusCode.INTERNAL else logging.WARNING
                log.log(
                    level,
                    "call failed",
                    extra={"code": code.name, "error": error.message},
                    exc_info=code == grpc.StatusCode.INTERNAL,
                )
                context.abort(code, error.message)
            finally:
                metrics.OPERATIONS.labels(method, code.name).inc()
                metrics.OPERATION_SECONDS.labels(method).observe(time.monotonic() - started)
                if method not in _QUIET and code == grpc.StatusCode.OK:
                    log.info("call done", extra={"seconds": round(time.monotonic() - started, 4)})

    return handle


class CsiInterceptor(grpc.ServerInterceptor):
    def intercept_service(self, continuation: Callable[[Any], Any], handler_call_details: Any) -> Any:
        handler = continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler
        method = handler_call_details.method.rsplit("/", 1)[-1]
        return grpc.unary_unary_rpc_method_handler(
            _wrap(method, handler.unary_unary),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


def socket_path(endpoint: str) -> Path:
    if not endpoint.startswith("unix://"):
        raise ValueError(f"endpoint {endpoint!r} must be unix:///path/to/csi.sock")
    return Path("/" + endpoint[len("unix://") :].lstrip("/"))


def build_server(
    endpoint: str,
    *,
    identity: Any,
    controller: Any | None = None,
    node: Any | None = None,
    workers: int = 64,
) -> grpc.Server:
    path = socket_path(endpoint)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() or path.is_symlink():
        os.unlink(path)  # a stale socket from a previous run
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="csi"),
        interceptors=[CsiInterceptor()],
    )
    pb_grpc.add_IdentityServicer_to_server(identity, server)
    if controller is not None:
        pb_grpc.add_ControllerServicer_to_server(controller, server)
    if node is not None:
        pb_grpc.add_NodeServicer_to_server(node, server)
    server.add_insecure_port(f"unix://{path}")
    return server
