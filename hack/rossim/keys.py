"""Persistent SSH host key and TLS certificate for the simulator."""

from __future__ import annotations

import datetime
import ipaddress
import os
from pathlib import Path

import paramiko
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def host_key(data_dir: Path) -> paramiko.PKey:
    """The ed25519 host key, generated on first start and reused afterwards."""
    path = data_dir / "ssh_host_ed25519_key"
    if not path.exists():
        key = ed25519.Ed25519PrivateKey.generate()
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
        )
        _write_private(path, pem)
        pub = key.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
        (data_dir / "ssh_host_ed25519_key.pub").write_bytes(pub + b"\n")
    return paramiko.Ed25519Key.from_private_key_file(str(path))


def _covers(cert_path: Path, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return address in names.get_values_for_type(x509.IPAddress)


def tls_material(data_dir: Path, host: str = "127.0.0.1") -> tuple[Path, Path]:
    """A self-signed certificate (it is its own CA) for api-ssl, valid for localhost, 127.0.0.1 and
    the address the simulator listens on (a lab address that Pods reach it at)."""
    cert_path = data_dir / "api-ssl.crt"
    key_path = data_dir / "api-ssl.key"
    loopback = ipaddress.IPv4Address("127.0.0.1")
    try:
        listen = ipaddress.ip_address(host)
    except ValueError:
        listen = loopback  # a name such as localhost: covered by the DNS name
    if cert_path.exists() and key_path.exists() and _covers(cert_path, listen):
        return cert_path, key_path
    addresses = [x509.IPAddress(loopback)] + ([x509.IPAddress(listen)] if listen != loopback else [])
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "rossim api-ssl")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), *addresses]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    _write_private(
        key_path,
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path
