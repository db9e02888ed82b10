"""python -m labnode up|down|status|import — the test node for `make up` and for debugging.

python -m labnode up --dir .run/node --kubeconfig .run/testenv/kubeconfig
python -m labnode import --dir .run/node build/images/trellis.tar
python -m labnode down --dir .run/node
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from labnode.node import Node, NodeError, leftovers
from labnode.spec import NodeSpec


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m labnode")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="bring the node up (idempotent: an existing node is kept)")
    up.add_argument("--dir", type=Path, required=True)
    up.add_argument("--kubeconfig", type=Path, required=True, help="trellis-testenv's admin kubeconfig")
    up.add_argument("--name", default="trellis-node")
    up.add_argument("--retain", action="store_true", help="keep what was made when bring-up fails")
    down = sub.add_parser("down", help="stop the node and remove every trace of it")
    down.add_argument("--dir", type=Path, required=True)
    status = sub.add_parser("status", help="print node.json, or what a stopped node left behind")
    status.add_argument("--dir", type=Path, required=True)
    imp = sub.add_parser("import", help="import OCI archives into the node's containerd")
    imp.add_argument("--dir", type=Path, required=True)
    imp.add_argument("archives", type=Path, nargs="+")
    args = parser.parse_args(argv)

    try:
        if args.command == "up":
            if (args.dir / "state.json").exists() and (args.dir / "node.json").exists():
                node = Node.load(args.dir)
                if all(_alive(node, r) for r in ("containerd", "kubelet", "kube-proxy", "apiserver-relay")):
                    print(f"node {node.spec.name}: running ({args.dir / 'node.json'})")
                    return 0
                print("node: stale state, tearing down first")
                node.down()
            started = time.monotonic()
            node = Node(
                NodeSpec.for_control_plane(args.kubeconfig, args.dir, args.name), args.kubeconfig.resolve()
            )
            node.up(retain=args.retain)
            took = time.monotonic() - started
            print(f"node {node.spec.name}: Ready in {took:.1f}s ({args.dir / 'node.json'})")
            return 0
        if args.command == "down":
            if not (args.dir / "state.json").exists():
                print(f"node: nothing at {args.dir}")
                return 0
            node = Node.load(args.dir)
            left = node.down()
            if left:
                print("node: left behind:\n  " + "\n  ".join(left), file=sys.stderr)
                return 1
            print(f"node {node.spec.name}: removed")
            return 0
        if args.command == "status":
            info = args.dir / "node.json"
            if (args.dir / "state.json").exists():
                node = Node.load(args.dir)
                print(info.read_text() if info.exists() else "node: not up")
                # For a running node: what down() will remove; for a stopped one: what it left.
                print("on this machine: " + json.dumps(leftovers(node.spec)))
            else:
                print("node: not running")
            return 0
        node = Node.load(args.dir)
        for archive in args.archives:
            print(node.import_image(archive.resolve()), end="")
        return 0
    except NodeError as exc:
        print(exc, file=sys.stderr)
        return 1


def _alive(node: Node, role: str) -> bool:
    from labnode import system

    return role in node.pids and system.alive(node.pids[role])


if __name__ == "__main__":
    sys.exit(main())
