"""The rack's files for `make up` (hack/up.d/85-rack.sh): the rack config and the objects to apply.

    python -m tests.support.rackup --node-json .run/node/node.json --assets-url http://HOST:PORT \\
        --ipmi-ports 16330,16331,16332 --redfish-port 16343 --out .run/rack

Writes OUT/rack.json (for `python -m rack serve`) and OUT/objects.yaml (for `kubectl apply`): the
same machines and objects as tests/integration/release/test_4_rack.py, on fixed ports.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml

from tests.support.rackboot import RACK_SERVERS, UNREGISTERED_SERVER, NodeAddresses, objects, rack_config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.support.rackup")
    parser.add_argument("--node-json", type=Path, required=True)
    parser.add_argument("--assets-url", required=True)
    parser.add_argument("--ipmi-ports", required=True, help="comma-separated UDP ports, one per IPMI machine")
    parser.add_argument(
        "--redfish-port", type=int, required=True, help="TCP port of the Redfish machine's BMC"
    )
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    info = json.loads(args.node_json.read_text())
    node = NodeAddresses(info["name"], info["node_ip"], info["host_ip"], info["netns"])
    ipmi = iter(int(p) for p in args.ipmi_ports.split(","))
    servers = [*RACK_SERVERS, UNREGISTERED_SERVER]
    ports = {s.name: (next(ipmi) if s.protocol == "ipmi" else args.redfish_port) for s in servers}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "rack.json").write_text(json.dumps(rack_config(node, servers, ports), indent=2))
    docs = objects(node, servers, args.assets_url, ports)
    (args.out / "objects.yaml").write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
