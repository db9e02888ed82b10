"""One TalosDevice operator (all namespaces) per test module; object helpers."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.kube import ControlPlane
from tests.support.operators import OperatorProcess, free_port, running_operator
from tests.support.wait import wait_for

MODULE = "trellis.operators.talosdevice.handlers"


@pytest.fixture(scope="module")
def talos_operator(crds: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorProcess]:
    log_dir = tmp_path_factory.mktemp("talos-operator")
    api_port = free_port()  # stands in for Talos' apid (50000) in the install check
    env = {"TRELLIS_TALOS_RESYNC_SECONDS": "5", "TRELLIS_TALOS_API_PORT": str(api_port)}
    with running_operator(crds, MODULE, log_dir, env=env) as op:
        op.extra["talos_api_port"] = str(api_port)
        yield op


def cluster(name: str, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "endpoint": "https://10.0.0.10:6443",
        "talosVersion": "v1.12.0",
        "kubernetesVersion": "1.35.0",
        "installDisk": "/dev/sda",
    }
    body.update(spec)
    return {
        "apiVersion": "trellis.dev/v1alpha1",
        "kind": "TalosCluster",
        "metadata": {"name": name},
        "spec": body,
    }


def device(
    name: str,
    mac: str,
    cluster: str | None = "lab",
    role: str = "worker",
    approval: str = "Pending",
    addresses: list[str] | None = None,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {"mac": mac, "role": role, "approval": approval}
    if cluster:
        body["clusterRef"] = cluster
    if addresses:
        body["network"] = {"interfaces": [{"selector": {"hardwareAddr": mac}, "addresses": addresses}]}
    body.update(spec)
    meta: dict[str, Any] = {"name": name}
    if labels:
        meta["labels"] = labels
    if annotations:
        meta["annotations"] = annotations
    return {"apiVersion": "trellis.dev/v1alpha1", "kind": "TalosDevice", "metadata": meta, "spec": body}


def get(cp: ControlPlane, plural: str, name: str, namespace: str) -> dict[str, Any]:
    return dict(json.loads(cp.kubectl("-n", namespace, "get", plural, name, "-o", "json").stdout))


def ready(cp: ControlPlane, plural: str, name: str, namespace: str) -> dict[str, Any] | None:
    obj = get(cp, plural, name, namespace)
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond["type"] == "Ready":
            return dict(cond)
    return None


def wait_ready(
    cp: ControlPlane,
    plural: str,
    name: str,
    namespace: str,
    status: str,
    reason: str | None = None,
    timeout: float = 60,
) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        obj = get(cp, plural, name, namespace)
        generation = obj["metadata"].get("generation")
        for cond in (obj.get("status") or {}).get("conditions") or []:
            if (
                cond["type"] == "Ready"
                and cond["status"] == status
                and (reason is None or cond.get("reason") == reason)
                and cond.get("observedGeneration") == generation
            ):
                return obj
        return None

    return wait_for(probe, timeout=timeout, what=f"{plural}/{name} Ready={status} {reason or ''}")


def events(cp: ControlPlane, namespace: str, name: str, reason: str) -> list[dict[str, Any]]:
    out = cp.kubectl(
        "-n",
        namespace,
        "get",
        "events",
        "-o",
        "json",
        "--field-selector",
        f"involvedObject.name={name},reason={reason}",
    ).stdout
    return list(json.loads(out)["items"])


def patch(cp: ControlPlane, namespace: str, plural: str, name: str, body: dict[str, Any]) -> None:
    cp.kubectl("-n", namespace, "patch", plural, name, "--type=merge", "-p", json.dumps(body))
