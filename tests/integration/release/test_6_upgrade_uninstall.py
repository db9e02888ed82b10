"""Day-2 of the release itself: `helm upgrade` to a changed value rolls the affected component;
`helm uninstall` leaves nothing of the release behind and keeps the CRDs (as Helm does)."""

from __future__ import annotations

import pytest

from tests.integration.release.conftest import RELEASE, Release
from tests.support.kube import REPO
from tests.support.release import CHART, get_json, pod_summary, workloads_ready
from tests.support.wait import wait_for

pytestmark = pytest.mark.integration
INSTANCE = f"app.kubernetes.io/instance={RELEASE}"
CLUSTER_KINDS = (
    "clusterroles",
    "clusterrolebindings",
    "csidrivers",
    "storageclasses",
    "volumesnapshotclasses",
)
BUNDLE = "talos.trellis.dev/cluster=homelab"
NAMESPACED_KINDS = ("deployments", "daemonsets", "pods", "services", "serviceaccounts", "secrets", "roles")


def test_upgrade_with_a_changed_value_rolls_only_that_component(release: Release) -> None:
    def pods_by_component() -> dict[str, str]:
        pods = get_json(release.cp, "pods", "-n", release.namespace)["items"]
        return {p["metadata"]["labels"]["app.kubernetes.io/component"]: p["metadata"]["uid"] for p in pods}

    before = pods_by_component()
    release.helm(
        "upgrade", RELEASE, str(CHART), "-n", release.namespace, "-f", str(release.values_path),
        "--set", "network.resyncSeconds=120", "--wait", "--timeout", "5m",
    )  # fmt: skip
    wait_for(
        lambda: not workloads_ready(release.cp, release.namespace), timeout=120, what="release rolled out"
    )

    def rolled() -> dict[str, str] | None:
        after = pods_by_component()
        return (
            after
            if after.get("network") not in (None, before["network"]) and len(after) == len(before)
            else None
        )

    after = wait_for(rolled, timeout=120, what="the network operator Pod replaced")
    unchanged = {c for c in before if c != "network" and after.get(c) == before[c]}
    assert unchanged == set(before) - {"network"}, f"other components restarted: {set(before) - unchanged}"
    deployment = get_json(release.cp, "deployment", f"{RELEASE}-network", "-n", release.namespace)
    env = {e["name"]: e.get("value") for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["TRELLIS_NETWORK_RESYNC_SECONDS"] == "120"


def test_uninstall_leaves_no_orphans_and_keeps_the_crds(release: Release, namespace: str) -> None:
    release.cp.kubectl("apply", "-n", namespace, "-f", str(REPO / "docs/examples/talos-cluster.yaml"))
    release.cp.wait_condition("talosclusters", "homelab", "Ready", namespace=namespace, timeout=120)
    owned = get_json(release.cp, "secrets", "-n", namespace, "-l", BUNDLE)["items"]
    assert owned, "the operator (in its Pod) generated the cluster's secrets bundle"
    release.cp.kubectl("delete", "taloscluster", "homelab", "-n", namespace, "--wait=true", timeout=120)

    release.helm("uninstall", RELEASE, "-n", release.namespace, "--wait", "--timeout", "3m")
    # helm waits for the objects it deleted; their Pods then terminate within their grace period.
    wait_for(
        lambda: not get_json(release.cp, "pods", "-n", release.namespace, "-l", INSTANCE)["items"],
        timeout=120,
        what="the release's Pods gone",
    )
    for kind in NAMESPACED_KINDS:
        left = get_json(release.cp, kind, "-n", release.namespace, "-l", INSTANCE)["items"]
        assert not left, (
            f"{kind} left after uninstall: {[o['metadata']['name'] for o in left]}\n{pod_summary(release.cp)}"
        )
    for kind in CLUSTER_KINDS:
        left = get_json(release.cp, kind, "-l", INSTANCE)["items"]
        assert not left, f"{kind} left after uninstall: {[o['metadata']['name'] for o in left]}"
    crds = get_json(release.cp, "crds", "-l", "app.kubernetes.io/part-of=trellis")["items"]
    assert len(crds) == 8, "helm keeps the chart's CRDs"
    assert not get_json(release.cp, "secrets", "-n", namespace, "-l", BUNDLE)["items"]
