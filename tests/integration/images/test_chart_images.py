"""The chart's default image references are exactly what `make image` builds (images.json); the only
others are the upstream sidecars that cannot be built here, and those can be left out."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support import images
from tests.support.rbac import render_chart
from trellis import __version__

pytestmark = [pytest.mark.integration, pytest.mark.images]
CSI = [
    "csi.enabled=true",
    "csi.rds.address=10.0.0.5",
    "csi.rds.knownHosts=10.0.0.5 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB",
    "csi.rds.password=secret",
    "talosdevice.bootService.enabled=true",
    "talosdevice.bootService.publicURL=http://10.20.0.5:8080",
]
# Not obtainable from the Go module proxy (docs/operations.md): the chart keeps the upstream image.
# (livenessprobe and node-driver-registrar are not needed: the plugins serve /healthz and register
# with kubelet themselves.)
UPSTREAM_ONLY = ("csi-resizer",)


def _containers(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for doc in docs:
        if doc.get("kind") in ("Deployment", "DaemonSet"):
            spec = doc["spec"]["template"]["spec"]
            out += spec.get("initContainers", []) + spec["containers"]
    return out


def _referenced(docs: list[dict[str, Any]]) -> set[str]:
    refs = set()
    for container in _containers(docs):
        refs.add(container["image"])
        for env in container.get("env", []):
            if env["name"] in ("TRELLIS_DNSMASQ_IMAGE", "TRELLIS_OPERATOR_IMAGE"):
                refs.add(env["value"])
    return refs


@pytest.fixture(scope="module")
def listing() -> dict[str, Any]:
    if not images.IMAGES_JSON.is_file():
        pytest.fail("build/images/images.json is missing: run `make image` (make test does)")
    return images.load()


def test_chart_defaults_reference_what_make_image_builds(listing: dict[str, Any]) -> None:
    built = {image["references"][0] for image in listing["images"]}
    referenced = _referenced(render_chart("trellis-system", sets=CSI))
    ours = {ref for ref in referenced if not any(f"/{name}:" in ref for name in UPSTREAM_ONLY)}
    assert ours <= built, ours - built
    # Everything built is used by the chart, except the snapshot-controller (a cluster add-on).
    unused = {ref.rsplit(":", 1)[0].rsplit("/", 1)[1] for ref in built - ours}
    assert unused == {"snapshot-controller"}
    assert f"ghcr.io/trellis-dev/trellis:{__version__}" in ours
    assert f"ghcr.io/trellis-dev/dnsmasq:{__version__}" in ours


def test_dnsmasq_image_follows_the_trellis_repository_and_tag() -> None:
    docs = render_chart(
        "t", sets=["global.image.repository=registry.lab:5000/rack/trellis", "global.image.tag=dev1"]
    )
    refs = _referenced(docs)
    assert "registry.lab:5000/rack/dnsmasq:dev1" in refs
    assert "registry.lab:5000/rack/trellis:dev1" in refs
    pinned = _referenced(render_chart("t", sets=["network.dnsmasqImage=example.org/dnsmasq:9"]))
    assert "example.org/dnsmasq:9" in pinned


def test_pull_policy_is_if_not_present_and_reaches_the_dnsmasq_workload() -> None:
    docs = render_chart("t", sets=CSI)
    ours = [c for c in _containers(docs) if "/trellis:" in c["image"]]
    assert ours and all(c["imagePullPolicy"] == "IfNotPresent" for c in ours)
    network = next(
        c
        for c in _containers(docs)
        if c["image"].endswith(f"/trellis:{__version__}")
        and "trellis-network-operator" in c.get("command", [])
    )
    env = {e["name"]: e.get("value") for e in network["env"]}
    assert env["TRELLIS_IMAGE_PULL_POLICY"] == "IfNotPresent"


def test_controller_runs_without_the_upstream_only_sidecars() -> None:
    docs = render_chart("t", sets=[*CSI, "csi.sidecars.resizer="])
    controller = next(
        d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"].endswith("csi-controller")
    )
    spec = controller["spec"]["template"]["spec"]
    names = [c["name"] for c in spec["containers"]]
    assert names == ["plugin", "csi-provisioner", "csi-snapshotter"]
    plugin = spec["containers"][0]
    assert plugin["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert spec["securityContext"]["runAsUser"] == 65532 and spec["securityContext"]["runAsNonRoot"]
    # With the defaults the resizer is there; a livenessprobe image brings the sidecar back.
    docs = render_chart("t", sets=[*CSI, "csi.sidecars.livenessprobe=example.org/livenessprobe:v2"])
    workloads = [
        d for d in docs if d["kind"] in ("Deployment", "DaemonSet") and "csi" in d["metadata"]["name"]
    ]
    assert len(workloads) == 2
    for workload in workloads:
        containers = workload["spec"]["template"]["spec"]["containers"]
        assert "liveness-probe" in [c["name"] for c in containers]
        assert containers[0]["livenessProbe"]["httpGet"]["port"] == "healthz"
    controller = next(d for d in workloads if d["kind"] == "Deployment")
    assert "csi-resizer" in [c["name"] for c in controller["spec"]["template"]["spec"]["containers"]]
