"""config.yml rendering, htpasswd, CA/serving certificates and consumer fragments."""

from __future__ import annotations

import base64
import tomllib

import bcrypt
import pytest
import yaml
from cryptography import x509

from trellis.operators.registry import fragments, htpasswd, pki
from trellis.operators.registry.config import (
    Paths,
    ServeOptions,
    UpstreamURLError,
    checksum,
    config_document,
    render_config,
    validate_upstream_url,
)


def test_minimal_config_has_the_binary_top_level_keys() -> None:
    doc = config_document(ServeOptions(name="r1"))
    assert doc["version"] == "0.1"
    assert doc["http"]["addr"] == ":5000"
    assert doc["http"]["tls"] == {
        "certificate": "/etc/trellis/registry-tls/tls.crt",
        "key": "/etc/trellis/registry-tls/tls.key",
        "minimumtls": "tls1.2",
    }
    assert doc["storage"]["filesystem"] == {"rootdirectory": "/var/lib/registry"}
    assert doc["storage"]["delete"] == {"enabled": False}
    # mkube wrapped its settings in a `registry:` key the binary never reads; we must not.
    assert "registry" not in doc
    assert "auth" not in doc and "proxy" not in doc


def test_options_reach_the_document() -> None:
    opts = ServeOptions(
        name="r2",
        port=5443,
        tls=False,
        htpasswd=True,
        auth_realm="lab",
        proxy_remote_url="https://registry-1.docker.io/",
        delete_enabled=True,
        paths=Paths(storage="/data", auth_dir="/auth"),
    )
    doc = config_document(opts)
    assert doc["http"]["addr"] == ":5443"
    assert "tls" not in doc["http"]
    assert doc["auth"] == {"htpasswd": {"realm": "lab", "path": "/auth/htpasswd"}}
    assert doc["proxy"] == {"remoteurl": "https://registry-1.docker.io"}
    assert doc["storage"]["delete"]["enabled"] is True
    assert doc["storage"]["filesystem"]["rootdirectory"] == "/data"


def test_rendering_is_stable_and_carries_no_secrets() -> None:
    opts = ServeOptions(name="r", htpasswd=True, proxy_remote_url="https://ghcr.io")
    text = render_config(opts)
    assert text == render_config(opts)
    assert yaml.safe_load(text) == config_document(opts)
    assert "password" not in text and "secret" not in text


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://registry-1.docker.io", "https://registry-1.docker.io"),
        ("https://ghcr.io/", "https://ghcr.io"),
        ("http://10.0.0.5:5000", "http://10.0.0.5:5000"),
        ("https://[fd00::5]:5000/", "https://[fd00::5]:5000"),
    ],
)
def test_upstream_urls_accepted(url: str, expected: str) -> None:
    assert validate_upstream_url(url) == expected


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://example.com", "https://"),
        ("registry-1.docker.io", "https://"),
        ("https://", "no host"),
        ("https://user:pw@ghcr.io", "credentials"),
        ("https://ghcr.io/v2/library", "base URL"),
        ("https://ghcr.io?x=1", "base URL"),
        ("https://ghcr.io:99999", "does not parse"),
    ],
)
def test_upstream_urls_refused_with_reason(url: str, reason: str) -> None:
    with pytest.raises(UpstreamURLError, match=reason):
        validate_upstream_url(url)


def test_checksum_tracks_every_input() -> None:
    base = {"config.yml": "a", "tls.crt": "b"}
    assert checksum(base) == checksum(dict(reversed(base.items())))
    assert checksum(base) != checksum({**base, "tls.crt": "c"})
    assert checksum(base) != checksum({**base, "htpasswd": ""})
    # Boundaries between inputs matter: moving a byte between fields changes the sum.
    assert checksum({"a": "xy", "b": ""}) != checksum({"a": "x", "b": "y"})


def test_htpasswd_is_bcrypt_and_reuses_matching_hashes() -> None:
    text = htpasswd.render({"bob": "pw1", "alice": "pw2"})
    entries = htpasswd.parse(text)
    assert list(entries) == ["alice", "bob"]
    assert all(h.startswith("$2") for h in entries.values())
    assert bcrypt.checkpw(b"pw1", entries["bob"].encode())
    assert htpasswd.render({"bob": "pw1", "alice": "pw2"}, existing=text) == text
    changed = htpasswd.parse(htpasswd.render({"bob": "new", "alice": "pw2"}, existing=text))
    assert changed["alice"] == entries["alice"]
    assert changed["bob"] != entries["bob"] and bcrypt.checkpw(b"new", changed["bob"].encode())


@pytest.mark.parametrize(
    ("users", "reason"),
    [({}, "no user"), ({"a b": "x"}, "must match"), ({"a": ""}, "empty"), ({"a": "x" * 73}, "72")],
)
def test_htpasswd_refuses_bad_users(users: dict[str, str], reason: str) -> None:
    with pytest.raises(htpasswd.CredentialsError, match=reason):
        htpasswd.render(users)


def test_ca_and_serving_certificate() -> None:
    ca = pki.generate_ca("test-ca")
    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem.encode())
    assert ca_cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    names = ["registry.lab", "registry.ns.svc", "10.0.0.5"]
    serving = pki.issue_serving(ca, names)
    assert pki.signed_by(serving.cert_pem, ca.cert_pem)
    assert pki.certificate_names(serving.cert_pem) == set(names)
    assert pki.serving_needs_reissue(serving, ca, names) is None
    assert pki.serving_needs_reissue(serving, ca, [*names, "other.lab"]) == (
        "serving certificate names differ from the wanted names"
    )
    assert pki.serving_needs_reissue(None, ca, names) == "no serving certificate yet"
    other_ca = pki.generate_ca("other")
    assert "not signed" in (pki.serving_needs_reissue(serving, other_ca, names) or "")
    assert pki.validate_keypair(serving.cert_pem, serving.key_pem) is None
    assert "does not belong" in (pki.validate_keypair(serving.cert_pem, ca.key_pem) or "")
    assert "not a PEM" in (pki.validate_keypair("junk", serving.key_pem) or "")
    assert pki.validate_ca_bundle(ca.cert_pem) is None
    assert pki.validate_ca_bundle("nope") is not None


def test_serving_certificate_needs_a_name() -> None:
    with pytest.raises(ValueError, match="at least one"):
        pki.issue_serving(pki.generate_ca("x"), [])


CA_PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def test_containerd_hosts_files() -> None:
    consumer = fragments.Consumer("https://reg.lab:5000", CA_PEM, mirrors=["docker.io", "ghcr.io"])
    files = fragments.containerd_files(consumer)
    paths = {path: content for path, content in files.values()}
    own = tomllib.loads(paths["reg.lab:5000/hosts.toml"])
    assert own["server"] == "https://reg.lab:5000"
    assert own["host"]["https://reg.lab:5000"] == {
        "capabilities": ["pull", "resolve", "push"],
        "ca": "/etc/containerd/certs.d/reg.lab:5000/ca.crt",
    }
    hub = tomllib.loads(paths["docker.io/hosts.toml"])
    assert hub["server"] == "https://registry-1.docker.io"
    assert hub["host"]["https://reg.lab:5000"]["capabilities"] == ["pull", "resolve"]
    assert tomllib.loads(paths["ghcr.io/hosts.toml"])["server"] == "https://ghcr.io"
    assert paths["docker.io/ca.crt"] == CA_PEM
    for key in files:
        assert all(c.isalnum() or c in "-._" for c in key), key


def test_configmap_data_and_talos_fragments() -> None:
    consumer = fragments.Consumer("https://10.0.0.5:5000", CA_PEM, mirrors=["docker.io"])
    data = fragments.configmap_data(consumer)
    index = yaml.safe_load(data[fragments.KEY_CONTAINERD_FILES])
    assert set(index) <= set(data)
    assert index["containerd.10.0.0.5_5000.hosts.toml"] == "10.0.0.5:5000/hosts.toml"
    assert data[fragments.KEY_ENDPOINT] == "https://10.0.0.5:5000"
    assert data[fragments.KEY_CA] == CA_PEM
    patch = yaml.safe_load(data[fragments.KEY_TALOS_PATCH])
    regs = patch["machine"]["registries"]
    assert regs["mirrors"] == {"docker.io": {"endpoints": ["https://10.0.0.5:5000"]}}
    assert base64.b64decode(regs["config"]["10.0.0.5:5000"]["tls"]["ca"]).decode() == CA_PEM
    docs = list(yaml.safe_load_all(data[fragments.KEY_TALOS_DOCUMENTS]))
    assert docs[0] == {
        "apiVersion": "v1alpha1",
        "kind": "RegistryMirrorConfig",
        "name": "docker.io",
        "endpoints": [{"url": "https://10.0.0.5:5000"}],
    }
    assert docs[1] == {
        "apiVersion": "v1alpha1",
        "kind": "RegistryTLSConfig",
        "name": "10.0.0.5:5000",
        "ca": CA_PEM,
    }


def test_fragments_without_private_ca() -> None:
    data = fragments.configmap_data(fragments.Consumer("https://registry.example.com", None))
    assert fragments.KEY_CA not in data
    assert "config" not in yaml.safe_load(data[fragments.KEY_TALOS_PATCH])["machine"]["registries"]
    assert data[fragments.KEY_TALOS_DOCUMENTS] == ""
    toml = tomllib.loads(data["containerd.registry.example.com.hosts.toml"])
    assert "ca" not in toml["host"]["https://registry.example.com"]
