"""The Helm chart: lints, validates its values, and renders objects the real apiserver accepts."""

from __future__ import annotations

import json
import secrets
import subprocess
from collections.abc import Iterator

import pytest
import yaml

from tests.support.kube import BIN, REPO, ControlPlane

pytestmark = pytest.mark.integration
CHART = REPO / "charts" / "trellis"
HELM = BIN / "helm"


def _helm(*args: str, cp: ControlPlane | None = None) -> subprocess.CompletedProcess[str]:
    if not HELM.exists():
        pytest.fail(f"{HELM} is missing: run the tests through `make test`, which builds it")
    env = cp.env() if cp else None
    return subprocess.run(
        [str(HELM), *args], capture_output=True, text=True, timeout=120, check=False, env=env
    )


@pytest.fixture(scope="module")
def chart_namespace(crds: ControlPlane) -> Iterator[str]:
    """One namespace for the chart's dry runs (a fresh one per test costs a namespace deletion each)."""
    name = f"t-chart-{secrets.token_hex(3)}"
    crds.kubectl("create", "namespace", name)
    yield name
    crds.kubectl("delete", "namespace", name, "--wait=false", check=False)


def _server_version(cp: ControlPlane) -> str:
    return str(json.loads(cp.kubectl("version", "-o", "json").stdout)["serverVersion"]["gitVersion"])


def test_helm_lint() -> None:
    proc = _helm("lint", "--strict", str(CHART))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 chart(s) failed" in proc.stdout


def test_chart_crds_are_the_generated_ones() -> None:
    committed = {p.name: p.read_text() for p in (REPO / "crds").glob("*.yaml")}
    in_chart = {p.name: p.read_text() for p in (CHART / "crds").glob("*.yaml")}
    assert in_chart == committed


def test_rendered_chart_is_accepted_by_the_apiserver(crds: ControlPlane, chart_namespace: str) -> None:
    version = _server_version(crds)
    rendered = _helm(
        "template", "trellis", str(CHART), "--include-crds", "--kube-version", version, "-n", chart_namespace
    )
    assert rendered.returncode == 0, rendered.stderr
    docs = [d for d in yaml.safe_load_all(rendered.stdout) if d]
    kinds = {d["kind"] for d in docs}
    assert "CustomResourceDefinition" in kinds
    for doc in docs:
        if doc["kind"] != "CustomResourceDefinition":
            assert doc["metadata"]["labels"]["app.kubernetes.io/part-of"] == "trellis", doc["metadata"]
    applied = crds.kubectl(
        "apply", "--server-side", "--force-conflicts", "--dry-run=server", "-n", chart_namespace, "-f", "-",
        input=rendered.stdout,
        check=False,
    )  # fmt: skip
    assert applied.returncode == 0, applied.stderr
    assert applied.stdout.count("(server dry run)") == len(docs)


def test_install_dry_run_against_the_apiserver(crds: ControlPlane, chart_namespace: str) -> None:
    proc = _helm("install", "trellis", str(CHART), "--dry-run=server", "-n", chart_namespace, cp=crds)
    assert proc.returncode == 0, proc.stderr
    assert "kubectl get trellis -A" in proc.stdout
    assert "network        enabled" in proc.stdout


def test_component_can_be_disabled(crds: ControlPlane, chart_namespace: str) -> None:
    proc = _helm(
        "install",
        "trellis",
        str(CHART),
        "--dry-run=server",
        "-n",
        chart_namespace,
        "--set",
        "csi.enabled=false",
        cp=crds,
    )
    assert proc.returncode == 0, proc.stderr
    assert "csi            disabled" in proc.stdout


@pytest.mark.parametrize(
    ("setting", "complaint"),
    [
        ("network.replicas=-1", "/network/replicas"),
        ("global.image.pullPolicy=Sometimes", "/global/image/pullPolicy"),
        ("csi.enabled=maybe", "/csi/enabled"),
        ("registry.resources.requests=8", "/registry/resources/requests"),
    ],
)
def test_values_schema_rejects_bad_values(setting: str, complaint: str) -> None:
    proc = _helm("template", "trellis", str(CHART), "--kube-version", "v1.35.0", "--set", setting)
    assert proc.returncode != 0, f"{setting} was accepted"
    assert complaint in proc.stderr, proc.stderr


def test_old_kubernetes_is_refused() -> None:
    proc = _helm("template", "trellis", str(CHART), "--kube-version", "v1.29.0")
    assert proc.returncode != 0
    assert "kubeVersion" in proc.stderr
