"""The Talos secrets bundle, generated in Python in the format `talosctl gen secrets` writes.

Keeping the talosctl YAML format means a bundle stored by Trellis can be handed to
`talosctl gen config --with-secrets` and a bundle made by talosctl can be imported.
Nothing in here logs; the bundle's repr is redacted so it cannot leak through a log line.
"""

from __future__ import annotations

import base64
import datetime as dt
import secrets
import string
from dataclasses import dataclass, field
from typing import Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from trellis.operators.talosdevice.contract import Contract

CA_VALIDITY = dt.timedelta(hours=87600)
ADMIN_CERT_VALIDITY = dt.timedelta(days=365)
# A node's clock may lag ours (before NTP syncs, or a VM's clock under load): a certificate minted
# just now would not be valid yet there, and apid refuses it as expired.
ADMIN_CERT_BACKDATE = dt.timedelta(hours=1)
ED25519_PEM_LABEL = "ED25519 PRIVATE KEY"
_TOKEN_ALPHABET = string.ascii_lowercase + string.digits


@dataclass(frozen=True, repr=False)
class CertAndKey:
    crt: str  # PEM text
    key: str = ""  # PEM text; empty when only the certificate is known

    def __repr__(self) -> str:
        return "CertAndKey(<redacted>)"


@dataclass(frozen=True, repr=False)
class SecretsBundle:
    cluster_id: str
    cluster_secret: str
    bootstrap_token: str
    secretbox_secret: str
    trustd_token: str
    os: CertAndKey
    k8s: CertAndKey
    k8s_aggregator: CertAndKey
    etcd: CertAndKey
    service_account_key: str
    extra: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        return "SecretsBundle(<redacted>)"

    def to_yaml(self) -> str:
        def pair(ck: CertAndKey) -> dict[str, str]:
            return {"crt": b64(ck.crt), "key": b64(ck.key)}

        doc = {
            "cluster": {"id": self.cluster_id, "secret": self.cluster_secret},
            "secrets": {
                "bootstraptoken": self.bootstrap_token,
                "secretboxencryptionsecret": self.secretbox_secret,
            },
            "trustdinfo": {"token": self.trustd_token},
            "certs": {
                "etcd": pair(self.etcd),
                "k8s": pair(self.k8s),
                "k8saggregator": pair(self.k8s_aggregator),
                "k8sserviceaccount": {"key": b64(self.service_account_key)},
                "os": pair(self.os),
            },
        }
        return yaml.safe_dump(doc, sort_keys=False)

    @classmethod
    def from_yaml(cls, text: str) -> SecretsBundle:
        try:
            doc = yaml.safe_load(text)
            certs = doc["certs"]

            def pair(name: str) -> CertAndKey:
                return CertAndKey(unb64(certs[name]["crt"]), unb64(certs[name].get("key", "")))

            return cls(
                cluster_id=str(doc["cluster"]["id"]),
                cluster_secret=str(doc["cluster"]["secret"]),
                bootstrap_token=str(doc["secrets"]["bootstraptoken"]),
                secretbox_secret=str(doc["secrets"]["secretboxencryptionsecret"]),
                trustd_token=str(doc["trustdinfo"]["token"]),
                os=pair("os"),
                k8s=pair("k8s"),
                k8s_aggregator=pair("k8saggregator"),
                etcd=pair("etcd"),
                service_account_key=unb64(certs["k8sserviceaccount"]["key"]),
            )
        except (KeyError, TypeError, ValueError, yaml.YAMLError) as exc:
            # The message names the missing part only, never a value.
            raise ValueError(
                f"secrets bundle is incomplete or malformed: {type(exc).__name__} {exc}"
            ) from None


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode() if text else ""


def unb64(value: str) -> str:
    return base64.b64decode(value).decode() if value else ""


def random_token() -> str:
    """A kubeadm-style token: six and sixteen characters of [a-z0-9] joined by a dot."""
    first = "".join(secrets.choice(_TOKEN_ALPHABET) for _ in range(6))
    second = "".join(secrets.choice(_TOKEN_ALPHABET) for _ in range(16))
    return f"{first}.{second}"


def _self_signed_ca(
    key: ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey, organization: str | None, now: dt.datetime
) -> x509.Certificate:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization)] if organization else []
    name = x509.Name(attrs)
    public = key.public_key()
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(secrets.randbits(128) | 1)
        .not_valid_before(now)
        .not_valid_after(now + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, algorithm)
    )


def _cert_pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def ed25519_key_pem(key: ed25519.Ed25519PrivateKey) -> str:
    """PKCS#8 DER under the label Talos uses for Ed25519 keys."""
    der = key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    body = base64.encodebytes(der).decode().replace("\n", "")
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return (
        f"-----BEGIN {ED25519_PEM_LABEL}-----\n" + "\n".join(lines) + f"\n-----END {ED25519_PEM_LABEL}-----\n"
    )


def load_ed25519_key(pem: str) -> ed25519.Ed25519PrivateKey:
    relabelled = pem.replace(ED25519_PEM_LABEL, "PRIVATE KEY")
    key = serialization.load_pem_private_key(relabelled.encode(), password=None)
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise ValueError("OS CA key is not Ed25519")
    return key


def _ec_key_pem(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()


def _ecdsa_ca(organization: str | None, now: dt.datetime) -> CertAndKey:
    key = ec.generate_private_key(ec.SECP256R1())
    return CertAndKey(_cert_pem(_self_signed_ca(key, organization, now)), _ec_key_pem(key))


def generate_bundle(contract: Contract, now: dt.datetime | None = None) -> SecretsBundle:
    """A fresh bundle. RSA-4096 generation takes a moment: call it off the event loop."""
    now = (now or dt.datetime.now(dt.UTC)).replace(microsecond=0)
    os_key = ed25519.Ed25519PrivateKey.generate()
    os_ca = CertAndKey(_cert_pem(_self_signed_ca(os_key, "talos", now)), ed25519_key_pem(os_key))
    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=4096)
    sa_pem = sa_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()
    id_bytes = secrets.token_bytes(32)
    cluster_id = (
        base64.urlsafe_b64encode(id_bytes).decode()
        if contract.cluster_id_urlsafe
        else base64.b64encode(id_bytes).decode()
    )
    return SecretsBundle(
        cluster_id=cluster_id,
        cluster_secret=base64.b64encode(secrets.token_bytes(32)).decode(),
        bootstrap_token=random_token(),
        secretbox_secret=base64.b64encode(secrets.token_bytes(32)).decode(),
        trustd_token=random_token(),
        os=os_ca,
        k8s=_ecdsa_ca("kubernetes", now),
        # talosctl asks for CN=front-proxy but its certificate library only copies the
        # organisation, so the issued aggregator CA has an empty subject; match that.
        k8s_aggregator=_ecdsa_ca(None, now),
        etcd=_ecdsa_ca("etcd", now),
        service_account_key=sa_pem,
    )


def admin_client_certificate(bundle: SecretsBundle, now: dt.datetime | None = None) -> CertAndKey:
    """An Ed25519 client certificate for talosctl, signed by the OS CA with O=os:admin."""
    now = (now or dt.datetime.now(dt.UTC)).replace(microsecond=0)
    ca_cert = x509.load_pem_x509_certificate(bundle.os.crt.encode())
    ca_key = load_ed25519_key(bundle.os.key)
    key = ed25519.Ed25519PrivateKey.generate()
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "os:admin")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(secrets.randbits(128) | 1)
        .not_valid_before(now - ADMIN_CERT_BACKDATE)
        .not_valid_after(now + ADMIN_CERT_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, None)
    )
    return CertAndKey(_cert_pem(cert), ed25519_key_pem(key))


def talosconfig(bundle: SecretsBundle, context: str, endpoints: list[str], client: CertAndKey) -> str:
    """A talosctl client config for the cluster (endpoints are the control-plane addresses)."""
    doc = {
        "context": context,
        "contexts": {
            context: {
                "endpoints": endpoints,
                "nodes": [],
                "ca": b64(bundle.os.crt),
                "crt": b64(client.crt),
                "key": b64(client.key),
            }
        },
    }
    return yaml.safe_dump(doc, sort_keys=False)
