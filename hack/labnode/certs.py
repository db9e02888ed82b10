"""Node credentials minted from the test control plane's CA (trellis-testenv writes ca.key).

The kubelet gets a client certificate for ``system:node:<name>`` in ``system:nodes`` (what the
Node authorizer and NodeRestriction key on) and a serving certificate for its veth address (the
apiserver verifies it with ``--kubelet-certificate-authority``); kube-proxy gets
``system:kube-proxy``, which the built-in ``system:node-proxier`` binding covers.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def issue(
    ca_cert: Path,
    ca_key: Path,
    out: Path,
    common_name: str,
    groups: tuple[str, ...] = (),
    server_ips: tuple[str, ...] = (),
) -> tuple[Path, Path]:
    """Write ``out``.crt/.key signed by the CA; a serving cert when ``server_ips`` is given."""
    ca = x509.load_pem_x509_certificate(ca_cert.read_bytes())
    signer = serialization.load_pem_private_key(ca_key.read_bytes(), password=None)
    key = ec.generate_private_key(ec.SECP256R1())
    names = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, g) for g in groups]
    names.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    now = dt.datetime.now(dt.UTC)
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server_ips else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name(names))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    )
    if server_ips:
        sans = [x509.IPAddress(ipaddress.ip_address(ip)) for ip in server_ips]
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(signer, hashes.SHA256())  # type: ignore[arg-type]
    crt, keyfile = out.with_suffix(".crt"), out.with_suffix(".key")
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    keyfile.chmod(0o600)
    return crt, keyfile
