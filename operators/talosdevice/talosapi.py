"""A small client of Talos' machine API (apid, port 50000): gRPC over mutual TLS, ``Version`` only.

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


def talos_version(
    address: str, port: int, creds: ClientCredentials, timeout: float = DEFAULT_TIMEOUT
) -> str | None:
    """The Talos version (tag) the node at address:port reports, or None when it does not answer.

    None covers everything that is not this cluster's Talos: nothing listening, a server whose
    certificate does not chain to the OS CA or does not name the address, a server that refuses
    our client certificate, a non-gRPC service, and a node that does not answer within timeout.
    """
    _, machine_grpc = load()
    target = f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
    try:
        with grpc.secure_channel(target, creds.channel_credentials(), options=_CHANNEL_OPTIONS) as channel:
            reply = machine_grpc.MachineServiceStub(channel).Version(empty_pb2.Empty(), timeout=timeout)
    except grpc.RpcError as exc:
        code = exc.code() if isinstance(exc, grpc.Call) else None
        log.debug("Talos API at %s: %s", target, code.name if code else exc)
        return None
    tags = [m.version.tag for m in reply.messages if m.version.tag]
    if not tags:
        log.debug("Talos API at %s answered Version without a tag", target)
        return None
    return str(tags[0])


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
