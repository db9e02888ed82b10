"""labnode: a real Kubernetes node for the Trellis test cluster, on this machine.

containerd (Debian), kubelet and kube-proxy (built from the same Kubernetes module set as
trellis-testenv) in a network namespace of their own, joined to the host by one veth pair.
Used by the pytest ``node`` fixture and by ``make up`` (``python -m labnode up|down|import``).
See docs/development.md, "The test node".
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from labnode.node import Node, NodeError, leftovers, versions
from labnode.spec import PAUSE_IMAGE, NodeSpec, free_link

__all__ = [
    "PAUSE_IMAGE",
    "Node",
    "NodeError",
    "NodeSpec",
    "free_link",
    "leftovers",
    "running_node",
    "versions",
]


@contextmanager
def running_node(spec: NodeSpec, kubeconfig: Path, retain: bool = False) -> Iterator[Node]:
    """A node that is Ready inside the block and gone (checked) after it."""
    node = Node(spec, kubeconfig)
    node.up(retain=retain)
    try:
        yield node
    finally:
        left = node.down()
        if left:
            raise NodeError(f"node {spec.name} left things behind: {left}")
