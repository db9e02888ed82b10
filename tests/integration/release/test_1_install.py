"""`helm install` of the chart onto a real node: every component runs as a Pod from our images."""

from __future__ import annotations

import json

import pytest

from tests.integration.release.conftest import Release
from tests.support.release import DRIVER_NAME, get_json, pod_summary, workloads_ready
from tests.support.wait import wait_for

pytestmark = pytest.mark.integration
TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token"
COMPONENTS = {
    "network",
    "baremetalhost",
    "registry",
    "isocdrom",
    "talosdevice",
    "talosdevice-boot",
    "csi-controller",
    "csi-node",
}


def test_every_component_runs_as_a_ready_pod_from_our_images(release: Release) -> None:
    print(f"\n{pod_summary(release.cp)}")
    node = get_json(release.cp, "node", release.node.spec.name)
    info = node["status"]["nodeInfo"]
    kubelet, runtime = info["kubeletVersion"], info["containerRuntimeVersion"]
    print(f"node {release.node.spec.name}: kubelet {kubelet}, runtime {runtime}")
    assert not workloads_ready(release.cp, release.namespace)
    pods = get_json(release.cp, "pods", "-n", release.namespace)["items"]
    running = {
        p["metadata"]["labels"].get("app.kubernetes.io/component")
        for p in pods
        if p["status"].get("phase") == "Running"
    }
    assert running >= COMPONENTS, f"missing components: {COMPONENTS - running}"
    ours = {image.reference for image in release.images.values()}
    for p in pods:
        for status in p["status"]["containerStatuses"]:
            assert status["ready"], f"{p['metadata']['name']}/{status['name']} not ready"
            assert status["restartCount"] == 0, f"{p['metadata']['name']}/{status['name']} restarted"
            assert status["image"] in ours, f"{status['image']} is not an image `make image` built"


def test_operators_run_as_non_root_with_their_service_account_tokens(release: Release) -> None:
    pods = get_json(release.cp, "pods", "-n", release.namespace)["items"]
    for p in pods:
        component = p["metadata"]["labels"]["app.kubernetes.io/component"]
        if component == "csi-node":
            continue  # privileged by design: losetup/nvme, mounts (docs/operations.md)
        out = release.cp.kubectl(
            "exec", "-n", release.namespace, p["metadata"]["name"], "-c", p["spec"]["containers"][0]["name"],
            "--", "sh", "-c", f"id -u; test -s {TOKEN} && echo token",
        ).stdout.split()  # fmt: skip
        assert out[0] != "0", f"{component} runs as root"
        assert out[1:] == ["token"], f"{component} has no projected ServiceAccount token"


def test_csi_node_plugin_registered_with_kubelet(release: Release) -> None:
    def registered() -> dict[str, object] | None:
        csinode = get_json(release.cp, "csinode", release.node.spec.name)
        for driver in csinode["spec"].get("drivers") or []:
            if driver["name"] == DRIVER_NAME:
                return dict(driver)
        return None

    driver = wait_for(registered, timeout=60, what="CSINode lists the driver")
    assert driver["nodeID"] == release.node.spec.name
    assert "topology.rds.csi.trellis.dev/rds" in json.dumps(driver.get("topologyKeys"))


def test_boot_service_answers_through_its_node_port(release: Release) -> None:
    import urllib.request

    url = f"http://{release.node.spec.node_ip}:30847/healthz"

    def answers() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=3) as resp:
                return bool(resp.status == 200)
        except OSError:
            return False

    wait_for(answers, timeout=60, what=f"boot service at {url}")
