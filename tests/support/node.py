"""The session's test node (hack/labnode) and small helpers for tests that run Pods on it."""

from __future__ import annotations

import json
import os
import random
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from labnode import PAUSE_IMAGE, Node, NodeSpec, free_link
from labnode import system as node_system

from tests.support.kube import BIN, REPO, ControlPlane
from tests.support.wait import wait_for

# `make up` keeps its node here (hack/up.d); TRELLIS_KUBECONFIG sessions reuse it when it runs.
MAKE_UP_NODE_DIR = REPO / ".run" / "node"


def pick_host_address() -> str:
    """A free /30 for this session's node, at a random place so parallel sessions do not collide."""
    return free_link(f"10.199.{random.randint(0, 255)}.{4 * random.randint(0, 63) + 1}")


def missing_prerequisites() -> str | None:
    if os.geteuid() != 0:
        return "the test node needs root (network namespaces, mounts, cgroups)"
    for tool in ("containerd", "runc", "ctr", "nsenter", "iptables", "buildah", "go"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed: run `make sysdeps`"
    if not (BIN / "trellis-node").exists():
        return f"{BIN / 'trellis-node'} is missing: run `make tools`"
    return None


def _reusable(node_dir: Path) -> Node | None:
    if not (node_dir / "node.json").exists() or not (node_dir / "state.json").exists():
        return None
    node = Node.load(node_dir)
    roles = ("containerd", "kubelet", "kube-proxy", "apiserver-relay")
    return node if all(r in node.pids and node_system.alive(node.pids[r]) for r in roles) else None


@contextmanager
def session_node(cp: ControlPlane) -> Iterator[Node]:
    reason = missing_prerequisites()
    if reason:
        pytest.fail(reason)
    if os.environ.get("TRELLIS_KUBECONFIG"):
        running = _reusable(MAKE_UP_NODE_DIR)
        if running:
            yield running
            return
    spec = NodeSpec.for_control_plane(cp.kubeconfig, cp.kubeconfig.parent / "node")
    node = Node(spec, cp.kubeconfig)
    node.up()
    try:
        yield node
    finally:
        left = node.down()
        if left:
            raise AssertionError(f"the test node left things behind: {left}")


def describe(cp: ControlPlane, node: Node) -> str:
    wide = cp.kubectl("get", "nodes", "-o", "wide").stdout
    versions = json.dumps(node.info()["versions"], indent=2)
    return f"{wide}node versions: {versions}\nnode timings (s): {node.timings}"


def wait_default_service_account(cp: ControlPlane, namespace: str) -> None:
    """Pods are rejected until the ServiceAccount controller made ``default`` in a new namespace."""

    def exists() -> bool:
        return cp.kubectl("get", "serviceaccount", "default", "-n", namespace, check=False).returncode == 0

    wait_for(exists, timeout=30, what=f"ServiceAccount default in {namespace}")


def pause_pod(name: str, args: list[str] | None = None, **spec: Any) -> dict[str, Any]:
    """A Pod running the lab's pause image (no shell in it: see hack/labnode/pause/main.go)."""
    container: dict[str, Any] = {"name": "main", "image": PAUSE_IMAGE, "imagePullPolicy": "Never"}
    if args:
        container["args"] = args
    container.update(spec.pop("container", {}))
    pod_spec: dict[str, Any] = {"terminationGracePeriodSeconds": 1, "containers": [container]}
    pod_spec.update(spec)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": pod_spec}


def wait_pod(
    cp: ControlPlane, namespace: str, name: str, *, phase: str | None = None, timeout: float = 60
) -> dict[str, Any]:
    """Wait until the Pod is Ready (default) or reached ``phase``; return it."""

    def probe() -> dict[str, Any] | None:
        pod = json.loads(cp.kubectl("get", "pod", name, "-n", namespace, "-o", "json").stdout)
        status = pod.get("status", {})
        if phase:
            if status.get("phase") == "Failed" and phase != "Failed":
                raise AssertionError(f"pod {name} failed: {status}")
            return pod if status.get("phase") == phase else None
        ready = [c for c in status.get("conditions", []) if c["type"] == "Ready"]
        return pod if ready and ready[0]["status"] == "True" else None

    try:
        return wait_for(probe, timeout=timeout, interval=0.3, what=f"pod {namespace}/{name}")
    except AssertionError:
        print(cp.kubectl("describe", "pod", name, "-n", namespace, check=False).stdout)
        raise
