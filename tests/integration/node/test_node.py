"""The lab node runs real Pods: scheduling, workloads, Service routing with projected tokens,
kubectl logs/exec through the kubelet's authenticated API, volumes and host-side services."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from labnode import Node
from labnode.node import GUARD_CHAIN
from labnode.system import in_netns, run

from tests.support.kube import ControlPlane
from tests.support.node import describe, pause_pod, wait_default_service_account, wait_pod
from tests.support.wait import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.root]


@pytest.fixture
def ns(control_plane: ControlPlane, node: Node, namespace: str) -> str:
    wait_default_service_account(control_plane, namespace)
    return namespace


def test_node_is_ready_with_versions(control_plane: ControlPlane, node: Node) -> None:
    print("\n" + describe(control_plane, node))
    info = json.loads(control_plane.kubectl("get", "node", node.spec.name, "-o", "json").stdout)["status"]
    assert info["nodeInfo"]["kubeletVersion"] == "v1.35.4"
    assert info["nodeInfo"]["containerRuntimeVersion"].startswith("containerd://1.6")
    assert {"type": "InternalIP", "address": node.spec.node_ip} in info["addresses"]
    versions = node.info()["versions"]
    assert isinstance(versions, dict) and "runc" in versions["runc"]
    written = json.loads((node.spec.dir / "node.json").read_text())
    assert written["host_ip"] == node.spec.host_ip and written["kubelet_root_dir"] == str(
        node.spec.kubelet_dir
    )


def test_plain_pod_runs_and_is_ready(control_plane: ControlPlane, ns: str) -> None:
    control_plane.apply(pause_pod("plain"), namespace=ns)
    pod = wait_pod(control_plane, ns, "plain")
    assert pod["status"]["podIP"].startswith("10.244.")


def test_deployment_gets_its_pods(control_plane: ControlPlane, ns: str) -> None:
    labels = {"app": "lab"}
    template = {"metadata": {"labels": labels}, "spec": pause_pod("ignored")["spec"]}
    control_plane.apply(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "lab"},
            "spec": {"replicas": 2, "selector": {"matchLabels": labels}, "template": template},
        },
        namespace=ns,
    )
    control_plane.kubectl("rollout", "status", "deployment/lab", "-n", ns, "--timeout=60s", timeout=70)
    pods = control_plane.kubectl("get", "pods", "-n", ns, "-l", "app=lab", "-o", "name").stdout.split()
    assert len(pods) == 2


def test_pod_reaches_apiserver_through_service_with_projected_token(
    control_plane: ControlPlane, ns: str
) -> None:
    control_plane.apply(pause_pod("apicheck", ["apicheck"], restartPolicy="Never"), namespace=ns)
    wait_pod(control_plane, ns, "apicheck", phase="Succeeded")
    logs = control_plane.kubectl("logs", "apicheck", "-n", ns).stdout
    assert "https://10.0.0.1:443/" in logs and "201 Created" in logs
    assert f"system:serviceaccount:{ns}:default" in logs


def test_kubectl_logs_and_exec(control_plane: ControlPlane, ns: str) -> None:
    control_plane.apply(pause_pod("talker", ["serve", "hello from the lab"]), namespace=ns)
    wait_pod(control_plane, ns, "talker")
    assert "hello from the lab" in control_plane.kubectl("logs", "talker", "-n", ns).stdout
    out = control_plane.kubectl("exec", "talker", "-n", ns, "--", "/pause", "echo", "exec works").stdout
    assert out.strip() == "exec works"


def test_emptydir_and_hostpath_volumes(control_plane: ControlPlane, ns: str, tmp_path: Path) -> None:
    host_dir = tmp_path / "hostpath"
    pod = pause_pod(
        "volumes",
        container={
            "volumeMounts": [
                {"name": "scratch", "mountPath": "/scratch"},
                {"name": "host", "mountPath": "/host"},
            ],
            # The image runs as 65535; the hostPath directory is root's.
            "securityContext": {"runAsUser": 0},
        },
        volumes=[
            {"name": "scratch", "emptyDir": {}},
            {"name": "host", "hostPath": {"path": str(host_dir), "type": "DirectoryOrCreate"}},
        ],
    )
    control_plane.apply(pod, namespace=ns)
    wait_pod(control_plane, ns, "volumes")

    def exec_(*args: str) -> str:
        return control_plane.kubectl("exec", "volumes", "-n", ns, "--", "/pause", *args).stdout

    exec_("write", "/scratch/a", "scratch data")
    assert exec_("cat", "/scratch/a") == "scratch data"
    exec_("write", "/host/b", "host data")
    assert (host_dir / "b").read_text() == "host data"


@pytest.fixture
def host_service(node: Node) -> Iterator[str]:
    """An HTTP server on the host end of the veth: where device simulators will listen."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"hello from the host side"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer((node.spec.host_ip, 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://{node.spec.host_ip}:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def test_pod_reaches_host_side_service(control_plane: ControlPlane, ns: str, host_service: str) -> None:
    control_plane.apply(pause_pod("fetch", ["fetch", host_service], restartPolicy="Never"), namespace=ns)
    wait_pod(control_plane, ns, "fetch", phase="Succeeded")
    assert "hello from the host side" in control_plane.kubectl("logs", "fetch", "-n", ns).stdout


def test_node_namespace_only_talks_to_the_host_end(node: Node) -> None:
    rules = run(in_netns(node.spec.netns, ["iptables-save", "-t", "filter"])).stdout
    assert f"-A OUTPUT -o eth0 -j {GUARD_CHAIN}" in rules and f"-A FORWARD -o eth0 -j {GUARD_CHAIN}" in rules
    assert f"-A {GUARD_CHAIN} -d {node.spec.host_ip}/32 -j RETURN" in rules
    routes = run(["ip", "-n", node.spec.netns, "route"]).stdout
    assert "default" not in routes


def test_kube_proxy_programs_services(node: Node) -> None:
    def rules() -> bool:
        return (
            "KUBE-SVC-NPX46M4PTMTKRN6Y"
            in run(in_netns(node.spec.netns, ["iptables-save", "-t", "nat"])).stdout
        )

    # The `kubernetes` Service's chain: its hash is fixed by namespace/name/port name.
    wait_for(rules, timeout=20, what="kube-proxy chain for default/kubernetes:https")
