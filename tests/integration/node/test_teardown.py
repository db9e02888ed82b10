"""Teardown of a node leaves nothing: checked on a second, throw-away node with a running Pod."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from labnode import Node, NodeSpec, leftovers
from labnode import system as node_system

from tests.support.kube import ControlPlane
from tests.support.node import pause_pod, pick_host_address, wait_default_service_account, wait_pod
from tests.support.wait import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.root]

TAINT = "trellis.io/teardown-test=true:NoSchedule"


def test_teardown_leaves_nothing(
    control_plane: ControlPlane, node: Node, namespace: str, tmp_path: Path
) -> None:
    base = NodeSpec.for_control_plane(
        control_plane.kubeconfig, tmp_path / "node", name="trellis-node-teardown"
    )
    # Own /30 and a taint, so nothing of the session lands on it.
    spec = NodeSpec(**{**base.__dict__, "host_ip": pick_host_address(), "taints": (TAINT,)})
    throwaway = Node(spec, control_plane.kubeconfig)
    started = time.monotonic()
    throwaway.up()
    print(f"\nthrow-away node up in {time.monotonic() - started:.1f}s: {throwaway.timings}")
    try:
        wait_default_service_account(control_plane, namespace)
        pod = pause_pod(
            "pinned",
            nodeName=spec.name,
            tolerations=[{"key": "trellis.io/teardown-test", "operator": "Exists"}],
            container={"volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}]},
            volumes=[{"name": "scratch", "emptyDir": {"medium": "Memory"}}],
        )
        control_plane.apply(pod, namespace=namespace)
        wait_pod(control_plane, namespace, "pinned")
        assert node_system.mounts_under([spec.kubelet_dir, spec.containerd_state]), "a running Pod has mounts"
        assert node_system.cgroup_pids(spec.cgroup), "a running Pod has processes in the node's cgroup"
    finally:
        started = time.monotonic()
        left = throwaway.down()
        print(f"throw-away node down in {time.monotonic() - started:.1f}s")
    assert left == []
    assert leftovers(spec) == []
    assert not node_system.netns_exists(spec.netns)
    assert not node_system.link_exists(spec.host_if)
    assert not node_system.cgroup_dirs(spec.cgroup)
    assert not node_system.mounts_under([spec.dir])
    assert not node_system.pids_with_arg(str(spec.dir))
    assert not (spec.dir / "state.json").exists()
    assert (spec.logs / "kubelet.log").exists(), "logs are kept for the post-mortem"

    def node_gone() -> bool:
        return control_plane.kubectl("get", "node", spec.name, check=False).returncode != 0

    wait_for(node_gone, timeout=20, what=f"Node {spec.name} deleted")
    # The session's node is untouched.
    assert control_plane.kubectl("get", "node", node.spec.name).returncode == 0
