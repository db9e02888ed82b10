"""The rendered config.yml under the real registry binary (Debian docker-registry).

Every option the operator renders is checked for its effect, not just accepted: mkube's config
was silently ignored by its binary, and these tests are what catch that class of bug.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
import requests

from tests.support.oci import OCIClient, garbage_collect, registry_binary
from tests.support.operators import free_port
from tests.support.wait import wait_for
from trellis.operators.registry import htpasswd, pki
from trellis.operators.registry.config import (
    ENV_HTTP_SECRET,
    ENV_PROXY_PASSWORD,
    ENV_PROXY_USERNAME,
    Paths,
    ServeOptions,
    render_config,
)
from trellis.operators.registry.workload import SYSTEM_CERT_DIR

USER, PASSWORD = "ci", "s3cret-pass"


@dataclass
class Served:
    url: str
    ca_file: Path
    config: Path
    storage: Path
    client: OCIClient


def _write_instance(root: Path, opts: ServeOptions, ca: pki.KeyPair) -> tuple[Path, Paths]:
    paths = Paths(
        config=str(root / "config.yml"),
        storage=str(root / "storage"),
        tls_dir=str(root / "tls"),
        auth_dir=str(root / "auth"),
        upstream_ca_dir=str(root / "upstream-ca"),
    )
    for d in (paths.tls_dir, paths.auth_dir, paths.storage):
        Path(d).mkdir(parents=True, exist_ok=True)
    serving = pki.issue_serving(ca, ["localhost", "127.0.0.1"])
    Path(paths.certificate).write_text(serving.cert_pem)
    Path(paths.key).write_text(serving.key_pem)
    Path(paths.htpasswd).write_text(htpasswd.render({USER: PASSWORD}))
    config = Path(paths.config)
    config.write_text(render_config(replace(opts, paths=paths)))
    return config, paths


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> tuple[pki.KeyPair, Path]:
    keypair = pki.generate_ca("trellis-test-registry-ca")
    ca_file = tmp_path_factory.mktemp("ca") / "ca.crt"
    ca_file.write_text(keypair.cert_pem)
    return keypair, ca_file


@pytest.fixture(scope="module")
def origin(tmp_path_factory: pytest.TempPathFactory, ca: tuple[pki.KeyPair, Path]) -> Iterator[Served]:
    """A TLS + htpasswd registry with delete enabled, from the rendered config."""
    keypair, ca_file = ca
    root = tmp_path_factory.mktemp("origin")
    port = free_port()
    opts = ServeOptions(name="origin", port=port, listen_host="127.0.0.1", htpasswd=True, delete_enabled=True)
    config, paths = _write_instance(root, opts, keypair)
    url = f"https://127.0.0.1:{port}"
    with registry_binary(config, url, env={ENV_HTTP_SECRET: secrets.token_hex(16)}, verify=str(ca_file)):
        yield Served(
            url, ca_file, config, Path(paths.storage), OCIClient(url, str(ca_file), (USER, PASSWORD))
        )


def test_basic_auth_realm_and_credentials_are_enforced(origin: Served) -> None:
    anonymous = OCIClient(origin.url, str(origin.ca_file)).ping()
    assert anonymous.status_code == 401
    assert 'realm="trellis-registry"' in anonymous.headers["WWW-Authenticate"]
    wrong = OCIClient(origin.url, str(origin.ca_file), (USER, "wrong")).ping()
    assert wrong.status_code == 401
    assert origin.client.ping().status_code == 200


def test_tls_is_served_with_the_operator_ca(origin: Served) -> None:
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(origin.url + "/v2/", timeout=5)  # system roots do not know our CA
    plain = origin.url.replace("https://", "http://")
    resp = requests.get(plain + "/v2/", timeout=5)
    assert resp.status_code == 400  # Go's TLS server answers plain HTTP with 400


def test_push_and_pull_blob_and_manifest(origin: Served) -> None:
    layer = secrets.token_bytes(4096)
    digest = origin.client.push_image("team/app", "v1", layer)
    manifest = origin.client.get_manifest("team/app", "v1")
    assert manifest.status_code == 200
    assert manifest.headers["Docker-Content-Digest"] == digest
    layer_digest = manifest.json()["layers"][0]["digest"]
    blob = origin.client.get_blob("team/app", layer_digest)
    assert blob.status_code == 200 and blob.content == layer
    # storage.filesystem.rootdirectory is honoured: the blob is on disk where we said.
    hexdigest = layer_digest.split(":", 1)[1]
    assert (origin.storage / "docker/registry/v2/blobs/sha256" / hexdigest[:2] / hexdigest / "data").exists()


def test_delete_and_garbage_collection(origin: Served) -> None:
    layer = secrets.token_bytes(2048)
    digest = origin.client.push_image("team/gc", "old", layer)
    layer_digest = origin.client.get_manifest("team/gc", digest).json()["layers"][0]["digest"]
    assert origin.client.delete_manifest("team/gc", digest).status_code == 202
    assert origin.client.get_manifest("team/gc", "old").status_code == 404
    result = garbage_collect(origin.config)
    assert result.returncode == 0, result.stderr
    hexdigest = layer_digest.split(":", 1)[1]
    assert not (origin.storage / "docker/registry/v2/blobs/sha256" / hexdigest[:2] / hexdigest).exists()


def test_delete_disabled_is_refused(tmp_path: Path, ca: tuple[pki.KeyPair, Path]) -> None:
    keypair, ca_file = ca
    port = free_port()
    opts = ServeOptions(name="nodelete", port=port, listen_host="127.0.0.1", delete_enabled=False)
    config, _ = _write_instance(tmp_path, opts, keypair)
    url = f"https://127.0.0.1:{port}"
    with registry_binary(config, url, verify=str(ca_file)):
        client = OCIClient(url, str(ca_file))
        assert client.ping().status_code == 200  # no auth section rendered → anonymous access
        digest = client.push_image("x/y", "t", b"layer")
        assert client.delete_manifest("x/y", digest).status_code == 405


@pytest.fixture(scope="module")
def public_origin(tmp_path_factory: pytest.TempPathFactory, ca: tuple[pki.KeyPair, Path]) -> Iterator[Served]:
    """A TLS registry with anonymous access: what the pull-through cache fronts."""
    keypair, ca_file = ca
    root = tmp_path_factory.mktemp("public-origin")
    port = free_port()
    opts = ServeOptions(name="public", port=port, listen_host="127.0.0.1")
    config, paths = _write_instance(root, opts, keypair)
    url = f"https://127.0.0.1:{port}"
    with registry_binary(config, url, verify=str(ca_file)):
        yield Served(url, ca_file, config, Path(paths.storage), OCIClient(url, str(ca_file)))


def _cache_of(upstream: Served, root: Path, ca: pki.KeyPair, env: dict[str, str]) -> tuple[Path, Paths, str]:
    port = free_port()
    opts = ServeOptions(name="cache", port=port, listen_host="127.0.0.1", proxy_remote_url=upstream.url + "/")
    config, paths = _write_instance(root, opts, ca)
    # How the Deployment trusts proxy.caSecretRef: the CA's directory added to Go's SSL_CERT_DIR.
    env.setdefault("SSL_CERT_DIR", f"{SYSTEM_CERT_DIR}:{upstream.ca_file.parent}")
    return config, paths, f"https://127.0.0.1:{port}"


def test_pull_through_cache_serves_an_image_it_never_received(
    public_origin: Served, tmp_path: Path, ca: tuple[pki.KeyPair, Path]
) -> None:
    keypair, ca_file = ca
    layer = secrets.token_bytes(8192)
    digest = public_origin.client.push_image("library/base", "1.0", layer)

    env: dict[str, str] = {}
    config, paths, url = _cache_of(public_origin, tmp_path, keypair, env)
    with registry_binary(config, url, env=env, verify=str(ca_file)):
        cache = OCIClient(url, str(ca_file))
        manifest = cache.get_manifest("library/base", "1.0")
        assert manifest.status_code == 200, manifest.text
        assert manifest.headers["Docker-Content-Digest"] == digest
        layer_digest = manifest.json()["layers"][0]["digest"]
        blob = cache.get_blob("library/base", layer_digest)
        assert blob.status_code == 200 and blob.content == layer
        # A pull-through cache refuses pushes.
        assert cache._req("POST", "/v2/library/other/blobs/uploads/").status_code == 405
        # The cache stores what it served (the copy is committed just after the response ends).
        hexdigest = layer_digest.split(":", 1)[1]
        blob_path = (
            Path(paths.storage) / "docker/registry/v2/blobs/sha256" / hexdigest[:2] / hexdigest / "data"
        )
        wait_for(
            lambda: blob_path.exists() and blob_path.read_bytes() == layer, timeout=10, what="cached blob"
        )


def test_proxy_cannot_use_a_basic_auth_upstream(
    origin: Served, tmp_path: Path, ca: tuple[pki.KeyPair, Path]
) -> None:
    """distribution 2.x hands proxy credentials only to token-auth (Bearer) upstreams.

    The operator warns about exactly this combination (see upstream probe in the client layer);
    this test pins the binary behaviour the warning is based on.
    """
    keypair, ca_file = ca
    origin.client.push_image("library/private", "1.0", b"private-layer")
    env = {ENV_PROXY_USERNAME: USER, ENV_PROXY_PASSWORD: PASSWORD}
    config, _, url = _cache_of(origin, tmp_path, keypair, env)
    with registry_binary(config, url, env=env, verify=str(ca_file)):
        resp = OCIClient(url, str(ca_file)).get_manifest("library/private", "1.0")
        assert resp.status_code == 404
