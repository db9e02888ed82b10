"""Stand-ins for Talos' apid in tests of the Talos API client: certificates and an in-process server.

`TalosApiServer` is a grpc.aio server with the servicer generated from Talos' own machine.proto
(trellis.operators.talosdevice.stubs), running on its own event loop in a thread so synchronous
tests and the blocking client can talk to it. Like apid it presents a server certificate issued by
a given CA for given IP addresses and requires a client certificate signed by a CA it trusts.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import threading
from types import TracebackType
from typing import Any

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from trellis.operators.talosdevice.bundle import load_ed25519_key
from trellis.operators.talosdevice.stubs import load


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def self_signed_ca(cn: str = "foreign") -> tuple[str, str]:
    """A throw-away CA (PEM certificate, PEM key) that no Trellis cluster trusts."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode(), pem.decode()


def _load_key(pem: str) -> Any:
    if "ED25519" in pem:
        return load_ed25519_key(pem)
    return serialization.load_pem_private_key(pem.encode(), None)


def _leaf(ca_crt: str, ca_key: str, builder: x509.CertificateBuilder) -> tuple[str, str]:
    ca = x509.load_pem_x509_certificate(ca_crt.encode())
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        builder.issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(_load_key(ca_key), None if "ED25519" in ca_key else hashes.SHA256())
    )
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode(), pem.decode()


def server_certificate(ca_crt: str, ca_key: str, addresses: list[str]) -> tuple[str, str]:
    """An apid-like server certificate (PEM certificate, PEM key) naming the addresses as IP SANs."""
    sans = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(a)) for a in addresses])
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name("apid"))
        .add_extension(sans, critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    )
    return _leaf(ca_crt, ca_key, builder)


def client_certificate(ca_crt: str, ca_key: str) -> tuple[str, str]:
    """An os:admin client certificate with an ECDSA key (PEM certificate, PEM key).

    The operator's real admin certificate has an Ed25519 key, as talosctl's does. Go servers (apid,
    the stand-in) accept Ed25519 signatures in the TLS handshake; a grpc (BoringSSL) server such as
    TalosApiServer does not offer them, so tests against it present this certificate instead.
    """
    org = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "os:admin")])
    builder = (
        x509.CertificateBuilder()
        .subject_name(org)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    )
    return _leaf(ca_crt, ca_key, builder)


class TalosApiServer:
    """``with TalosApiServer(ca_crt, ca_key, client_ca=...) as api:`` serves on ``api.port`` until the
    block ends; ``api.calls`` counts the Version calls that reached the servicer."""

    def __init__(
        self,
        ca_crt: str,
        ca_key: str,
        client_ca: str,
        tag: str = "v1.12.0",
        address: str = "127.0.0.1",
        san: list[str] | None = None,
    ) -> None:
        self.address, self.tag, self.calls, self.port = address, tag, 0, 0
        cert, key = server_certificate(ca_crt, ca_key, san or [address])
        self._credentials = grpc.ssl_server_credentials(
            [(key.encode(), cert.encode())], root_certificates=client_ca.encode(), require_client_auth=True
        )
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: grpc.aio.Server | None = None

    async def _start(self) -> None:
        machine_pb2, machine_grpc = load()
        outer = self

        class Servicer(machine_grpc.MachineServiceServicer):  # type: ignore[name-defined,misc]
            async def Version(self, request: Any, context: Any) -> Any:
                outer.calls += 1
                info = machine_pb2.VersionInfo(tag=outer.tag, os="linux", arch="amd64")
                return machine_pb2.VersionResponse(messages=[machine_pb2.Version(version=info)])

        self._server = grpc.aio.server()
        machine_grpc.add_MachineServiceServicer_to_server(Servicer(), self._server)
        self.port = self._server.add_secure_port(f"{self.address}:0", self._credentials)
        await self._server.start()

    def __enter__(self) -> TalosApiServer:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=10)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._server is not None:
            asyncio.run_coroutine_threadsafe(self._server.stop(None), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()
