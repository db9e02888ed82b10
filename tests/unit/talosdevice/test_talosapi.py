"""The Talos API client: MachineService.Version over mutual TLS, answered only by this cluster's Talos.

The server is an in-process grpc.aio server with the servicer generated from Talos' machine.proto.
It cannot take the Ed25519 admin certificate (see tests.support.apid.client_certificate), so the
client presents an ECDSA certificate from the same OS CA; the Ed25519 one is exercised against the
Go stand-in (tests/integration/talosdevice/test_talos_api.py, hack/guest's go test).
"""

from __future__ import annotations

import socket
import time

import pytest

from tests.support.apid import TalosApiServer, client_certificate, self_signed_ca
from trellis.operators.talosdevice.bundle import SecretsBundle, generate_bundle
from trellis.operators.talosdevice.contract import contract_for
from trellis.operators.talosdevice.stubs import prepare
from trellis.operators.talosdevice.talosapi import ClientCredentials, talos_version, talos_versions


@pytest.fixture(scope="module")
def bundle() -> SecretsBundle:
    return generate_bundle(contract_for("v1.12.0"))


@pytest.fixture(scope="module")
def creds(bundle: SecretsBundle) -> ClientCredentials:
    return ClientCredentials(bundle.os.crt, *client_certificate(bundle.os.crt, bundle.os.key))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_admin_credentials_come_from_the_bundle(bundle: SecretsBundle) -> None:
    admin = ClientCredentials.admin_of(bundle)
    assert admin.ca_pem == bundle.os.crt and "ED25519 PRIVATE KEY" in admin.key_pem


def test_talos_of_the_cluster_reports_its_version(bundle: SecretsBundle, creds: ClientCredentials) -> None:
    with TalosApiServer(bundle.os.crt, bundle.os.key, client_ca=bundle.os.crt, tag="v1.12.1") as api:
        assert talos_version("127.0.0.1", api.port, creds) == "v1.12.1"
    assert api.calls == 1


def test_server_certificate_from_another_ca_is_refused(
    bundle: SecretsBundle, creds: ClientCredentials
) -> None:
    crt, key = self_signed_ca()
    with TalosApiServer(crt, key, client_ca=bundle.os.crt) as api:
        assert talos_version("127.0.0.1", api.port, creds) is None
    assert api.calls == 0


def test_server_certificate_for_another_address_is_refused(
    bundle: SecretsBundle, creds: ClientCredentials
) -> None:
    # The cluster's CA, but issued to another node: a certificate copied between machines.
    with TalosApiServer(bundle.os.crt, bundle.os.key, client_ca=bundle.os.crt, san=["10.9.9.9"]) as api:
        assert talos_version("127.0.0.1", api.port, creds) is None
    assert api.calls == 0


def test_talos_of_another_cluster_refuses_our_client(bundle: SecretsBundle, creds: ClientCredentials) -> None:
    other = generate_bundle(contract_for("v1.12.0"))
    # The server certificate is fine for us, but the server trusts only its own cluster's clients.
    with TalosApiServer(bundle.os.crt, bundle.os.key, client_ca=other.os.crt) as api:
        assert talos_version("127.0.0.1", api.port, creds) is None
    assert api.calls == 0


def test_blackholed_and_closed_ports_give_up_quickly(creds: ClientCredentials) -> None:
    # A listener that never accepts: the TCP handshake completes (backlog), TLS never does.
    with socket.create_server(("127.0.0.1", 0), backlog=8) as hole:
        start = time.monotonic()
        assert talos_version("127.0.0.1", hole.getsockname()[1], creds, timeout=0.5) is None
        assert time.monotonic() - start < 2.0
    start = time.monotonic()
    assert talos_version("127.0.0.1", free_port(), creds, timeout=0.5) is None
    assert time.monotonic() - start < 2.0


def test_versions_of_many_devices(bundle: SecretsBundle, creds: ClientCredentials) -> None:
    with TalosApiServer(bundle.os.crt, bundle.os.key, client_ca=bundle.os.crt) as api:
        found = talos_versions({"cp-1": "127.0.0.1", "cp-2": "127.0.0.2"}, api.port, creds, timeout=1.0)
    assert found == {"cp-1": "v1.12.0"}  # 127.0.0.2 is not in the certificate (and not listened on)
    assert talos_versions({}, api.port, creds) == {}


def test_generator_strips_only_google_rpc_status() -> None:
    common = (
        'syntax = "proto3";\npackage common;\nimport "google/protobuf/any.proto";\n'
        'import "google/rpc/status.proto";\n'
        "message Metadata {\n  string hostname = 1;\n  google.rpc.Status status = 3;\n}\n"
    )
    out = prepare("common", common)
    assert "bytes status = 3;" in out and "google/rpc" not in out
    assert 'import "google/protobuf/any.proto";' in out
    machine = 'package machine;\nimport "common/common.proto";\nimport "google/protobuf/empty.proto";\n'
    assert 'import "trellis/operators/talosdevice/_gen/common.proto";' in prepare("machine", machine)
    with pytest.raises(RuntimeError):
        prepare("common", "message X { google.rpc.Code code = 1; }\n")
