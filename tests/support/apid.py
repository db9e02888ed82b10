"""A TLS listener that stands in for Talos' apid in tests of the "installed" probe.

It presents a server certificate issued by a given CA for given IP addresses and, like apid,
requires a client certificate signed by a CA it trusts. Accepted connections get an HTTP/2
SETTINGS frame, as a gRPC server sends first.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import ssl
import tempfile
import threading
from pathlib import Path
from types import TracebackType

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from trellis.operators.talosdevice.bundle import load_ed25519_key

HTTP2_EMPTY_SETTINGS = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"


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


def _load_key(pem: str) -> ec.EllipticCurvePrivateKey | object:
    if "ED25519" in pem:
        return load_ed25519_key(pem)
    return serialization.load_pem_private_key(pem.encode(), None)


def server_certificate(ca_crt: str, ca_key: str, addresses: list[str]) -> tuple[str, str]:
    ca = x509.load_pem_x509_certificate(ca_crt.encode())
    signer = _load_key(ca_key)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("apid"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(a)) for a in addresses]),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(signer, None if "ED25519" in ca_key else hashes.SHA256())  # type: ignore[arg-type]
    )
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode(), pem.decode()


class FakeApid:
    """``with FakeApid(port, ca_crt, ca_key, client_ca=...):`` serves until the block ends."""

    def __init__(
        self, port: int, ca_crt: str, ca_key: str, client_ca: str, address: str = "127.0.0.1"
    ) -> None:
        self.address, self.port = address, port
        cert, key = server_certificate(ca_crt, ca_key, [address])
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.verify_mode = ssl.CERT_REQUIRED
        self.context.load_verify_locations(cadata=client_ca)
        self.context.set_alpn_protocols(["h2"])
        with tempfile.TemporaryDirectory() as tmp:
            Path(tmp, "c").write_text(cert)
            Path(tmp, "k").write_text(key)
            self.context.load_cert_chain(Path(tmp, "c"), Path(tmp, "k"))
        self.handshakes = 0
        self._sock = socket.create_server((address, port))
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            with conn:
                try:
                    with self.context.wrap_socket(conn, server_side=True) as tls:
                        self.handshakes += 1
                        tls.sendall(HTTP2_EMPTY_SETTINGS)
                except (OSError, ssl.SSLError):
                    continue

    def __enter__(self) -> FakeApid:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        # close() alone does not wake a thread blocked in accept(), and the port would stay bound.
        self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        self._thread.join(timeout=5)
