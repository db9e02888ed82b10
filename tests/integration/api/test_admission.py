"""The CRDs on the real apiserver: established, explained, and enforcing their validation rules."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.api.cases import BASE, CASES, DELETE, NAMESPACED, Invalid, build
from tests.support.kube import REPO, ControlPlane
from tests.support.wait import wait_for
from trellis.api import BY_KIND

pytestmark = pytest.mark.integration
EXAMPLES = sorted((REPO / "docs" / "examples").glob("*.yaml"))
KINDS = {
    "baremetalhosts",
    "dhcpreservations",
    "isocdroms",
    "networks",
    "registries",
    "routers",
    "talosclusters",
    "talosdevices",
}


@pytest.fixture(scope="module")
def shared_namespace(crds: ControlPlane) -> Iterator[str]:
    """One namespace for the examples and the invalid-object table (one per case would be slow)."""
    name = f"t-admission-{secrets.token_hex(3)}"
    crds.kubectl("create", "namespace", name)
    yield name
    crds.kubectl("delete", "namespace", name, "--wait=false", check=False)


def _named(obj: dict[str, Any], base: str, namespace: str, suffix: str) -> dict[str, Any]:
    obj["metadata"] = {"name": f"{obj['metadata']['name']}-{suffix}"}
    if base in NAMESPACED:
        obj["metadata"]["namespace"] = namespace
    return obj


def _create(cp: ControlPlane, obj: dict[str, Any], dry_run: bool) -> Any:
    args = ["create", "-f", "-"] + (["--dry-run=server"] if dry_run else [])
    return cp.kubectl(*args, input=yaml.safe_dump(obj), check=False)


def test_every_crd_is_established(crds: ControlPlane) -> None:
    out = json.loads(
        crds.kubectl("get", "crd", "-l", "app.kubernetes.io/part-of=trellis", "-o", "json").stdout
    )
    established = {
        item["spec"]["names"]["plural"]
        for item in out["items"]
        if any(c["type"] == "Established" and c["status"] == "True" for c in item["status"]["conditions"])
    }
    assert established == KINDS
    files = {p.name for p in (REPO / "crds").glob("*.yaml")}
    assert files == {f"{k}.trellis.dev.yaml" for k in KINDS}
    # The category lists every kind at once (once discovery has caught up with the new CRDs).
    wait_for(
        lambda: crds.kubectl("get", "trellis", "-A", check=False).returncode == 0,
        timeout=30,
        what="the trellis category in discovery",
    )


@pytest.mark.parametrize(
    ("resource", "needle"),
    [
        ("baremetalhosts.spec.bmc.address", "redfish+https://"),
        ("networks.spec.dhcp.range", "Dynamic pool"),
        ("networks.spec.cidr", "immutable"),
        ("dhcpreservations.spec.ip", "lowest free address"),
        ("routers.spec.sshHostKey", "known_hosts"),
        ("isocdroms.status.phase", "Transferring"),
        ("talosdevices.spec.approval", "Pending"),
        ("talosclusters.spec.strictBoot", "iPXE exit"),
        ("registries.spec.managed.proxy", "Pull-through"),
    ],
)
def test_kubectl_explain(crds: ControlPlane, resource: str, needle: str) -> None:
    def explained() -> str | None:
        proc = crds.kubectl("explain", resource, "--api-version=trellis.dev/v1alpha1", check=False)
        return proc.stdout if proc.returncode == 0 else None

    # The apiserver publishes a new CRD's OpenAPI shortly after it is Established.
    text = wait_for(explained, timeout=30, what=f"kubectl explain {resource}")
    assert needle in " ".join(text.split())


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_example_is_accepted(crds: ControlPlane, shared_namespace: str, example: Path) -> None:
    proc = crds.kubectl(
        "apply", "--dry-run=server", "-n", shared_namespace, "-f", str(example), "-o", "json", check=False
    )
    assert proc.returncode == 0, f"{example.name} rejected:\n{proc.stderr}"
    # What the apiserver stored (with its defaults) parses into the models and serialises back
    # unchanged: the models' defaults and wire names agree with the CRDs.
    returned = json.loads(proc.stdout)
    for obj in returned.get("items", [returned]):
        model = BY_KIND.get(obj["kind"])
        if model is not None and obj["apiVersion"] == "trellis.dev/v1alpha1":
            assert model.model_validate(obj).to_k8s()["spec"] == obj["spec"], obj["metadata"]["name"]


@pytest.mark.parametrize("base", sorted(BASE))
def test_table_base_objects_are_valid(crds: ControlPlane, shared_namespace: str, base: str) -> None:
    """Each invalid case is one change away from an accepted object."""
    proc = _create(crds, _named(build(base, {}), base, shared_namespace, "valid"), dry_run=True)
    assert proc.returncode == 0, proc.stderr


def test_table_is_large_enough() -> None:
    assert len(CASES) >= 30
    assert len({c.id for c in CASES}) == len(CASES)
    assert {c.base for c in CASES} == set(BASE)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_invalid_object_is_rejected(crds: ControlPlane, shared_namespace: str, case: Invalid) -> None:
    suffix = secrets.token_hex(3)
    bad = _named(build(case.base, case.changes), case.base, shared_namespace, suffix)
    if case.update:
        good = _named(build(case.base, {}), case.base, shared_namespace, suffix)
        created = _create(crds, good, dry_run=False)
        assert created.returncode == 0, created.stderr
        try:
            proc = crds.kubectl("replace", "-f", "-", input=yaml.safe_dump(bad), check=False)
        finally:
            crds.kubectl("delete", "-f", "-", "--wait=false", input=yaml.safe_dump(good), check=False)
    else:
        proc = _create(crds, bad, dry_run=True)
    assert proc.returncode != 0, f"{case.id}: accepted by the apiserver"
    assert "is invalid" in proc.stderr, proc.stderr
    assert f"{case.field}:" in proc.stderr or f"{case.field}[" in proc.stderr, (
        f"{case.id}: error does not name {case.field}:\n{proc.stderr}"
    )
    assert case.message in proc.stderr, f"{case.id}: expected {case.message!r} in:\n{proc.stderr}"


@pytest.mark.parametrize(
    ("start", "end", "gateway", "accepted"),
    [
        # Numeric, not lexicographic, order: "10.20.0.9" sorts after "10.20.0.10" as text.
        ("10.20.0.9", "10.20.0.10", "10.20.0.1", True),
        ("10.20.0.10", "10.20.0.9", "10.20.0.1", False),
        ("10.20.0.50", "10.20.0.50", "10.20.0.1", True),
        ("10.20.0.255", "10.20.1.0", "10.20.0.1", True),
        ("10.20.1.0", "10.20.0.255", "10.20.0.1", False),
        ("10.20.0.100", "10.20.0.200", "10.20.0.100", False),
        ("10.20.0.100", "10.20.0.200", "10.20.0.200", False),
        ("10.20.0.100", "10.20.0.200", "10.20.0.201", True),
        ("10.20.0.100", "10.20.0.200", "10.20.0.99", True),
    ],
)
def test_dhcp_range_order_is_numeric(
    crds: ControlPlane, start: str, end: str, gateway: str, accepted: bool
) -> None:
    network = build(
        "network",
        {
            "metadata.name": f"range-{secrets.token_hex(3)}",
            "spec.cidr": "10.20.0.0/16",
            "spec.gateway": gateway,
            "spec.dhcp.range": {"start": start, "end": end},
            "spec.dnsmasq": DELETE,
        },
    )
    proc = _create(crds, network, dry_run=True)
    assert (proc.returncode == 0) == accepted, proc.stderr


def test_ipv6_network_without_dhcp_range_is_accepted(crds: ControlPlane) -> None:
    network = build(
        "network",
        {
            "metadata.name": f"v6-{secrets.token_hex(3)}",
            "spec.cidr": "fd00:20::/64",
            "spec.gateway": "fd00:20::1",
            "spec.dhcp": {"server": "none"},
            "spec.dnsmasq": DELETE,
        },
    )
    proc = _create(crds, network, dry_run=True)
    assert proc.returncode == 0, proc.stderr
