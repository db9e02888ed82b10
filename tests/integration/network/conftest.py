"""Fixtures shared by the network operator's integration tests."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest

from tests.support.kube import ControlPlane


@pytest.fixture(scope="module")
def system_ns(crds: ControlPlane) -> Iterator[str]:
    """The operator's own namespace for one module: Router Secrets and the managed dnsmasq go here."""
    name = f"trellis-net-{secrets.token_hex(3)}"
    crds.kubectl("create", "namespace", name)
    yield name
    crds.kubectl("delete", "namespace", name, "--wait=false", check=False)
