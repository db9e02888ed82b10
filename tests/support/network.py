"""Helpers for the network operator's integration tests: objects, router reads, waits."""

from __future__ import annotations

import json
import secrets
from typing import Any

from tests.support.kube import ControlPlane
from tests.support.rossim import RosSim
from tests.support.wait import wait_for

API = "trellis.dev/v1alpha1"
MENUS = (
    "interface/bridge",
    "interface/vlan",
    "interface/bridge/port",
    "ip/address",
    "ip/pool",
    "ip/dhcp-server",
    "ip/dhcp-server/network",
    "ip/dhcp-relay",
    "ip/dhcp-server/option",
    "ip/dhcp-server/lease",
    "ip/dns/static",
)


def unique(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(3)}"


def router_objects(sim: RosSim, name: str, namespace: str) -> list[dict[str, Any]]:
    """A Router pointing at the simulator and its credentials Secret."""
    return [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": f"{name}-creds", "namespace": namespace},
            "stringData": {"username": sim.username, "password": sim.password},
        },
        {
            "apiVersion": API,
            "kind": "Router",
            "metadata": {"name": name},
            "spec": {
                "address": sim.host,
                "apiPort": sim.api_port,
                "credentialsSecretRef": {"name": f"{name}-creds", "namespace": namespace},
                "probeIntervalSeconds": 5,
            },
        },
    ]


def network(name: str, cidr: str, router: str | None, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"cidr": cidr, **spec}
    if router:
        body["router"] = router
    return {"apiVersion": API, "kind": "Network", "metadata": {"name": name}, "spec": body}


def reservation(name: str, net: str, mac: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "DHCPReservation",
        "metadata": {"name": name},
        "spec": {"networkRef": net, "mac": mac, **spec},
    }


def tagged(sim: RosSim, network_name: str) -> dict[str, list[dict[str, str]]]:
    """Every router row tagged for ``network_name``, by menu."""
    prefix = f"trellis:{network_name}:"
    return {m: [r for r in sim.control.menu(m) if r.get("comment", "").startswith(prefix)] for m in MENUS}


def snapshot(sim: RosSim) -> dict[str, list[dict[str, str]]]:
    return {m: sim.control.menu(m) for m in MENUS}


def reservation_status(cp: ControlPlane, namespace: str, name: str) -> dict[str, Any]:
    return dict(cp.get("dhcpreservations", name, namespace).get("status") or {})


def wait_ready(cp: ControlPlane, namespace: str, names: list[str], timeout: float = 90) -> None:
    def all_ready() -> bool:
        out = cp.kubectl("get", "dhcpreservations.trellis.dev", "-n", namespace, "-o", "json").stdout
        items = {i["metadata"]["name"]: i for i in json.loads(out)["items"]}
        for n in names:
            conds = (items.get(n, {}).get("status") or {}).get("conditions") or []
            if not any(c["type"] == "Ready" and c["status"] == "True" for c in conds):
                return False
        return True

    wait_for(all_ready, timeout=timeout, interval=0.5, what=f"{len(names)} reservations Ready")


def events_for(cp: ControlPlane, namespace: str | None, name: str) -> list[dict[str, Any]]:
    args = ["get", "events", "-o", "json", "--field-selector", f"involvedObject.name={name}"]
    args += ["-n", namespace] if namespace else ["-A"]
    return list(json.loads(cp.kubectl(*args).stdout)["items"])


def writes_since(sim: RosSim, seq: int) -> list[dict[str, Any]]:
    return [e for e in sim.control.log(seq) if e.get("write") and e.get("protocol") == "api"]
