"""A small client of Talos' machine API (apid, port 50000): gRPC over mutual TLS.

``Version`` finds installed nodes and follows upgrades; ``ApplyConfiguration``, ``Upgrade`` and
``Reset`` are the day-2 calls (day2.py decides when; this module only speaks the protocol).

The stubs are generated at build time from Talos' own protos (stubs.py). Credentials are the
cluster's: the server must present a certificate issued by the OS CA that names the address we
dialled (apid's certificates carry the node's IPs as SANs, and grpc checks IP SANs when the target
is an IP literal, so no ``grpc.ssl_target_name_override`` is needed), and we present the admin
client certificate minted from the secrets bundle. Only a Talos node running this cluster's config
can pass both, so a ``Version`` answer is the evidence that a device is installed.

The calls block: the operator makes them from its reconcile passes, which run in worker threads
(handlers.py uses asyncio.to_thread), never on kopf's event loop.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import empty_pb2

from trellis.operators.talosdevice.bundle import SecretsBundle, admin_client_certificate
from trellis.operators.talosdevice.stubs import load

log = logging.getLogger(__name__)

TALOS_API_PORT = 50000
DEFAULT_TIMEOUT = 3.0
# Talos writes Ed25519 PKCS#8 keys under its own PEM label; BoringSSL (in grpc) wants the standard one.
_TALOS_KEY_LABEL = "ED25519 PRIVATE KEY"
# One call per channel: no retries or reconnect backoff beyond the deadline.
_CHANNEL_OPTIONS = (("grpc.enable_retries", 0), ("grpc.max_receive_message_length", 1 << 20))


@dataclass(frozen=True)
class ClientCredentials:
    ca_pem: str
    cert_pem: str
    key_pem: str

    @classmethod
    def admin_of(cls, bundle: SecretsBundle) -> ClientCredentials:
        """The cluster's OS CA and an admin client certificate minted from its bundle."""
        client = admin_client_certificate(bundle)
        return cls(bundle.os.crt, client.crt, client.key)

    def channel_credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=self.ca_pem.encode(),
            private_key=self.key_pem.replace(_TALOS_KEY_LABEL, "PRIVATE KEY").encode(),
            certificate_chain=self.cert_pem.encode(),
        )


class TalosApiError(Exception):
    """A day-2 call failed: ``code`` is the gRPC status name (``UNAVAILABLE`` when nothing answered)."""

    def __init__(self, method: str, code: str, details: str) -> None:
        super().__init__(f"{method}: {code}: {details}")
        self.method = method
        self.code = code
        self.details = details


def _target(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def _call(
    address: str, port: int, creds: ClientCredentials, method: str, request: Any, timeout: float
) -> Any:
    """One unary MachineService call; grpc.RpcError becomes TalosApiError."""
    _, machine_grpc = load()
    with grpc.secure_channel(
        _target(address, port), creds.channel_credentials(), options=_CHANNEL_OPTIONS
    ) as channel:
        stub = machine_grpc.MachineServiceStub(channel)
        try:
            return getattr(stub, method)(request, timeout=timeout)
        except grpc.RpcError as exc:
            code = exc.code() if isinstance(exc, grpc.Call) else None
            details = exc.details() if isinstance(exc, grpc.Call) else str(exc)
            raise TalosApiError(method, code.name if code else "UNKNOWN", details or "") from None


def talos_version(
    address: str, port: int, creds: ClientCredentials, timeout: float = DEFAULT_TIMEOUT
) -> str | None:
    """The Talos version (tag) the node at address:port reports, or None when it does not answer.

    None covers everything that is not this cluster's Talos: nothing listening, a server whose
    certificate does not chain to the OS CA or does not name the address, a server that refuses
    our client certificate, a non-gRPC service, and a node that does not answer within timeout.
    """
    try:
        reply = _call(address, port, creds, "Version", empty_pb2.Empty(), timeout)
    except TalosApiError as exc:
        log.debug("Talos API at %s: %s", _target(address, port), exc.code)
        return None
    tags = [m.version.tag for m in reply.messages if m.version.tag]
    if not tags:
        log.debug("Talos API at %s answered Version without a tag", _target(address, port))
        return None
    return str(tags[0])


APPLY_MODES = ("REBOOT", "AUTO", "NO_REBOOT", "STAGED", "TRY")


@dataclass(frozen=True)
class Applied:
    mode: str
    details: str
    warnings: tuple[str, ...]


def apply_configuration(
    address: str,
    port: int,
    creds: ClientCredentials,
    config: str,
    mode: str,
    timeout: float = 15.0,
) -> Applied:
    """Send a whole machine config; returns the mode Talos chose. Raises TalosApiError.

    A change that NO_REBOOT cannot apply is refused by Talos (day2.needs_reboot tells that
    refusal from an invalid config), which is how the caller learns that it needs a reboot.
    """
    machine_pb2, _ = load()
    request = machine_pb2.ApplyConfigurationRequest(
        data=config.encode(), mode=machine_pb2.ApplyConfigurationRequest.Mode.Value(mode)
    )
    reply = _call(address, port, creds, "ApplyConfiguration", request, timeout)
    messages = list(reply.messages)
    if not messages:
        return Applied(mode, "", ())
    first = messages[0]
    chosen = machine_pb2.ApplyConfigurationRequest.Mode.Name(first.mode)
    return Applied(chosen, first.mode_details, tuple(first.warnings))


def upgrade(address: str, port: int, creds: ClientCredentials, image: str, timeout: float = 30.0) -> str:
    """Ask the node to upgrade to the installer image; returns Talos' acknowledgement.

    Talos answers before it reboots; whether the upgrade worked shows only in the Version the
    node reports once it is back (a failed install boots the previous release again).
    """
    machine_pb2, _ = load()
    reply = _call(
        address, port, creds, "Upgrade", machine_pb2.UpgradeRequest(image=image, preserve=True), timeout
    )
    return "; ".join(m.ack for m in reply.messages if m.ack) or "accepted"


def reset(
    address: str, port: int, creds: ClientCredentials, reboot: bool, graceful: bool, timeout: float = 30.0
) -> None:
    """Wipe the node's system disk (Talos ``talosctl reset``); it halts or reboots afterwards."""
    machine_pb2, _ = load()
    request = machine_pb2.ResetRequest(
        graceful=graceful, reboot=reboot, mode=machine_pb2.ResetRequest.WipeMode.Value("SYSTEM_DISK")
    )
    _call(address, port, creds, "Reset", request, timeout)


class TalosClient:
    """The day-2 calls for one cluster: its credentials, the API port and a deadline."""

    def __init__(
        self, creds: ClientCredentials, port: int = TALOS_API_PORT, timeout: float = DEFAULT_TIMEOUT
    ):
        self.creds, self.port, self.timeout = creds, port, timeout

    def version(self, address: str) -> str | None:
        return talos_version(address, self.port, self.creds, self.timeout)

    def apply(self, address: str, config: str, mode: str) -> Applied:
        return apply_configuration(address, self.port, self.creds, config, mode)

    def upgrade(self, address: str, image: str) -> str:
        return upgrade(address, self.port, self.creds, image)

    def reset(self, address: str, reboot: bool, graceful: bool) -> None:
        reset(address, self.port, self.creds, reboot, graceful)


def talos_versions(
    targets: Mapping[str, str], port: int, creds: ClientCredentials, timeout: float = DEFAULT_TIMEOUT
) -> dict[str, str]:
    """``{name: version}`` of the targets (``{name: address}``) that answered, asked in parallel."""
    if not targets:
        return {}
    with ThreadPoolExecutor(max_workers=min(16, len(targets))) as pool:
        answers = pool.map(lambda a: talos_version(a, port, creds, timeout), targets.values())
        found = dict(zip(targets, answers, strict=True))
    return {name: version for name, version in found.items() if version is not None}
