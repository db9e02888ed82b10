"""gRPC status codes for everything that can go wrong, in one place."""

from __future__ import annotations

import grpc

from trellis.routeros.cli import CliValueError, ErrorKind, RouterOSError
from trellis.routeros.ssh import AuthenticationFailed, HostKeyMismatch, TransportError


class CsiError(Exception):
    """Raised by the services; the server turns it into the gRPC status ``code``."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def invalid(message: str) -> CsiError:
    return CsiError(grpc.StatusCode.INVALID_ARGUMENT, message)


def not_found(message: str) -> CsiError:
    return CsiError(grpc.StatusCode.NOT_FOUND, message)


def precondition(message: str) -> CsiError:
    return CsiError(grpc.StatusCode.FAILED_PRECONDITION, message)


def internal(message: str) -> CsiError:
    return CsiError(grpc.StatusCode.INTERNAL, message)


_ROUTER_CODES = {
    ErrorKind.NO_SPACE: grpc.StatusCode.RESOURCE_EXHAUSTED,
    ErrorKind.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    ErrorKind.EXISTS: grpc.StatusCode.ALREADY_EXISTS,
    ErrorKind.BUSY: grpc.StatusCode.UNAVAILABLE,
    ErrorKind.PERMISSION: grpc.StatusCode.PERMISSION_DENIED,
    ErrorKind.INVALID_VALUE: grpc.StatusCode.INVALID_ARGUMENT,
}


def from_exception(exc: BaseException) -> CsiError:
    """The status for an exception escaping a service method."""
    if isinstance(exc, CsiError):
        return exc
    if isinstance(exc, RouterOSError):
        code = _ROUTER_CODES.get(exc.kind, grpc.StatusCode.INTERNAL)
        return CsiError(code, f"RDS refused the command: {exc.message}")
    if isinstance(exc, (HostKeyMismatch, AuthenticationFailed)):
        return CsiError(grpc.StatusCode.UNAVAILABLE, f"RDS connection misconfigured: {exc}")
    if isinstance(exc, TransportError):
        code = grpc.StatusCode.DEADLINE_EXCEEDED if exc.timeout else grpc.StatusCode.UNAVAILABLE
        return CsiError(code, f"RDS unreachable or too slow: {exc}")
    if isinstance(exc, CliValueError):
        return CsiError(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
    return CsiError(grpc.StatusCode.INTERNAL, f"{type(exc).__name__}: {exc}")
