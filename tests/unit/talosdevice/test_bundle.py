"""The secrets bundle: key types, PEM labels, token shapes and the talosctl YAML format."""

from __future__ import annotations

import base64
import datetime as dt
import re

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from trellis.operators.talosdevice.bundle import (
    SecretsBundle,
    admin_client_certificate,
    generate_bundle,
    load_ed25519_key,
    talosconfig,
)
from trellis.operators.talosdevice.contract import CONTRACTS, Contract

TOKEN = re.compile(r"^[a-z0-9]{6}\.[a-z0-9]{16}$")


@pytest.fixture(scope="module")
def bundle() -> SecretsBundle:
    return generate_bundle(CONTRACTS["1.12"])


def _cert(pem: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem.encode())


def _assert_ca(cert: x509.Certificate, organization: str | None) -> None:
    orgs = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
    assert orgs == ([organization] if organization else [])
    if organization is None:
        assert len(cert.subject) == 0
    assert cert.issuer == cert.subject
    basic = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert basic.critical and basic.value.ca
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_cert_sign and usage.digital_signature
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert cert.serial_number.bit_length() > 64
    validity = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert validity == dt.timedelta(hours=87600)


def test_os_ca_is_ed25519_with_talos_pem_label(bundle: SecretsBundle) -> None:
    cert = _cert(bundle.os.crt)
    assert isinstance(cert.public_key(), ed25519.Ed25519PublicKey)
    _assert_ca(cert, "talos")
    assert bundle.os.key.startswith("-----BEGIN ED25519 PRIVATE KEY-----\n")
    assert bundle.os.key.rstrip().endswith("-----END ED25519 PRIVATE KEY-----")
    key = load_ed25519_key(bundle.os.key)
    assert key.public_key().public_bytes_raw() == cert.public_key().public_bytes_raw()  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("name", "organization"), [("k8s", "kubernetes"), ("etcd", "etcd"), ("k8s_aggregator", None)]
)
def test_ecdsa_cas_are_p256_with_sec1_keys(
    bundle: SecretsBundle, name: str, organization: str | None
) -> None:
    pair = getattr(bundle, name)
    cert = _cert(pair.crt)
    public = cert.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    assert isinstance(public.curve, ec.SECP256R1)
    assert cert.signature_algorithm_oid == x509.SignatureAlgorithmOID.ECDSA_WITH_SHA256
    _assert_ca(cert, organization)
    assert pair.key.startswith("-----BEGIN EC PRIVATE KEY-----\n")
    key = serialization.load_pem_private_key(pair.key.encode(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert key.public_key().public_numbers() == public.public_numbers()


def test_service_account_key_is_rsa_4096_pkcs1(bundle: SecretsBundle) -> None:
    assert bundle.service_account_key.startswith("-----BEGIN RSA PRIVATE KEY-----\n")
    key = serialization.load_pem_private_key(bundle.service_account_key.encode(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    assert key.key_size == 4096


def test_tokens_and_random_secrets(bundle: SecretsBundle) -> None:
    assert TOKEN.match(bundle.bootstrap_token)
    assert TOKEN.match(bundle.trustd_token)
    assert bundle.bootstrap_token != bundle.trustd_token
    assert len(base64.b64decode(bundle.secretbox_secret, validate=True)) == 32
    assert len(base64.b64decode(bundle.cluster_secret, validate=True)) == 32
    assert len(base64.urlsafe_b64decode(bundle.cluster_id)) == 32


def test_cluster_id_alphabet_follows_contract() -> None:
    urlsafe = Contract("x", hostname_document=False, registry_mirror_documents=False, cluster_id_urlsafe=True)
    standard = Contract(
        "y", hostname_document=False, registry_mirror_documents=False, cluster_id_urlsafe=False
    )
    # 32 random bytes: over a handful of bundles each alphabet shows its own characters.
    ids_urlsafe = "".join(generate_bundle(urlsafe).cluster_id for _ in range(4))
    ids_standard = "".join(generate_bundle(standard).cluster_id for _ in range(4))
    assert not set("+/") & set(ids_urlsafe)
    assert not set("-_") & set(ids_standard)


def test_two_bundles_share_nothing() -> None:
    a, b = generate_bundle(CONTRACTS["1.12"]), generate_bundle(CONTRACTS["1.12"])
    assert a.os.key != b.os.key and a.k8s.key != b.k8s.key and a.cluster_secret != b.cluster_secret


def test_yaml_is_talosctl_format_and_round_trips(bundle: SecretsBundle) -> None:
    text = bundle.to_yaml()
    doc = yaml.safe_load(text)
    assert set(doc) == {"cluster", "secrets", "trustdinfo", "certs"}
    assert set(doc["secrets"]) == {"bootstraptoken", "secretboxencryptionsecret"}
    assert set(doc["certs"]) == {"etcd", "k8s", "k8saggregator", "k8sserviceaccount", "os"}
    # crt/key values are base64 of the PEM text.
    assert base64.b64decode(doc["certs"]["os"]["key"]).startswith(b"-----BEGIN ED25519 PRIVATE KEY-----")
    assert base64.b64decode(doc["certs"]["k8sserviceaccount"]["key"]).startswith(
        b"-----BEGIN RSA PRIVATE KEY"
    )
    again = SecretsBundle.from_yaml(text)
    assert again.to_yaml() == text


def test_secrets_never_show_in_repr(bundle: SecretsBundle) -> None:
    for text in (repr(bundle), str(bundle), repr(bundle.os), f"{bundle}"):
        assert bundle.os.key not in text and bundle.bootstrap_token not in text
        assert "redacted" in text


def test_malformed_bundle_error_names_no_values() -> None:
    with pytest.raises(ValueError, match="incomplete or malformed") as info:
        SecretsBundle.from_yaml("cluster: {id: abc, secret: topsecretvalue}\n")
    assert "topsecretvalue" not in str(info.value)


def test_admin_certificate_is_signed_by_os_ca(bundle: SecretsBundle) -> None:
    client = admin_client_certificate(bundle)
    cert, ca = _cert(client.crt), _cert(bundle.os.crt)
    assert isinstance(cert.public_key(), ed25519.Ed25519PublicKey)
    assert cert.issuer == ca.subject
    assert [a.value for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)] == ["os:admin"]
    cert.verify_directly_issued_by(ca)
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    config = yaml.safe_load(talosconfig(bundle, "lab", ["10.0.0.11"], client))
    ctx = config["contexts"]["lab"]
    assert config["context"] == "lab" and ctx["endpoints"] == ["10.0.0.11"]
    assert base64.b64decode(ctx["ca"]).decode() == bundle.os.crt
