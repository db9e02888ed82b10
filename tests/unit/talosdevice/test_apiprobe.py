"""The "Talos API answers" probe: a mutual-TLS handshake that only this cluster's apid passes."""

from __future__ import annotations

import socket

import pytest

from tests.support.apid import FakeApid, self_signed_ca
from trellis.operators.talosdevice.apiprobe import (
    ClientCredentials,
    client_context,
    credentials_from_talosconfig,
    talos_api_answers,
)
from trellis.operators.talosdevice.bundle import (
    SecretsBundle,
    admin_client_certificate,
    generate_bundle,
    talosconfig,
)
from trellis.operators.talosdevice.contract import contract_for


@pytest.fixture(scope="module")
def bundle() -> SecretsBundle:
    return generate_bundle(contract_for("v1.12.0"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def credentials(bundle: SecretsBundle) -> ClientCredentials:
    client = admin_client_certificate(bundle)
    return ClientCredentials(bundle.os.crt, client.crt, client.key)


def test_apid_of_the_cluster_answers(bundle: SecretsBundle) -> None:
    port = free_port()
    with FakeApid(port, bundle.os.crt, bundle.os.key, client_ca=bundle.os.crt) as apid:
        assert talos_api_answers("127.0.0.1", port, client_context(credentials(bundle)))
    assert apid.handshakes == 1


def test_server_certificate_from_another_ca_is_refused(bundle: SecretsBundle) -> None:
    port = free_port()
    crt, key = self_signed_ca()
    with FakeApid(port, crt, key, client_ca=bundle.os.crt):
        assert not talos_api_answers("127.0.0.1", port, client_context(credentials(bundle)))


def test_apid_of_another_cluster_refuses_our_client(bundle: SecretsBundle) -> None:
    other = generate_bundle(contract_for("v1.12.0"))
    port = free_port()
    # The server certificate is fine for us, but the server trusts only its own cluster's clients.
    with FakeApid(port, bundle.os.crt, bundle.os.key, client_ca=other.os.crt) as apid:
        assert not talos_api_answers("127.0.0.1", port, client_context(credentials(bundle)))
    assert apid.handshakes == 0


def test_plain_tcp_and_closed_ports_do_not_count(bundle: SecretsBundle) -> None:
    context = client_context(credentials(bundle))
    port = free_port()
    assert not talos_api_answers("127.0.0.1", port, context, timeout=0.5)
    with socket.create_server(("127.0.0.1", port)):
        assert not talos_api_answers("127.0.0.1", port, context, timeout=0.5)


def test_credentials_come_from_a_talosconfig(bundle: SecretsBundle) -> None:
    client = admin_client_certificate(bundle)
    creds = credentials_from_talosconfig(talosconfig(bundle, "lab", ["10.0.0.1"], client))
    assert creds == ClientCredentials(bundle.os.crt, client.crt, client.key)
    assert credentials_from_talosconfig("context: x\n") is None
