"""What the Talos API says about a cluster's machines: which are installed, and their day-2 pass.

The calls block (talosapi.py); reconcile.py runs them from the cluster pass in a worker thread.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from trellis.api.talos import TalosClusterSpec
from trellis.operators.talosdevice.bundle import SecretsBundle
from trellis.operators.talosdevice.day2 import (
    RETRY_UPGRADE_ANNOTATION,
    Day2Pass,
    Day2Result,
    Machine,
    held,
    initial_config,
)
from trellis.operators.talosdevice.render import Rendered, config_hash
from trellis.operators.talosdevice.rules import DeviceFacts, Verdict
from trellis.operators.talosdevice.talosapi import (
    TALOS_API_PORT,
    ClientCredentials,
    TalosClient,
    talos_versions,
)

# Version during day 2 decides whether a machine is there; a loaded machine gets more time than the
# install probe's 3 s before it counts as down.
DAY2_TIMEOUT = 6.0


def api_port() -> int:
    return int(os.environ.get("TRELLIS_TALOS_API_PORT", str(TALOS_API_PORT)))


def run_day2(
    cluster: Mapping[str, Any],
    spec: TalosClusterSpec,
    bundle: SecretsBundle,
    items: list[dict[str, Any]],
    facts: list[DeviceFacts],
    verdicts: Mapping[str, Verdict],
    rendered: Mapping[str, Rendered],
) -> Day2Result:
    """Config drift and upgrades of the cluster's installed devices (day2.py decides, talosapi.py calls)."""
    machines = []
    for obj, fact in zip(items, facts, strict=True):
        status = obj.get("status") or {}
        verdict = verdicts.get(fact.name)
        if (
            status.get("phase") != "Installed"
            or verdict is None
            or not verdict.ok
            or fact.name not in rendered
        ):
            continue
        text = rendered[fact.name].to_yaml()
        address = min(fact.addresses) if fact.addresses else fact.boot_ip
        config = dict(
            status.get("config") or initial_config(status.get("servedConfigHash"), config_hash(text))
        )
        machines.append(
            Machine(
                name=fact.name,
                role=fact.role,
                address=address,
                held=held(obj["metadata"].get("annotations")),
                version=status.get("talosVersion"),
                desired_text=text,
                desired_hash=config_hash(text),
                config=dict(config),
                upgrade=status.get("upgrade"),
            )
        )
    annotations = cluster["metadata"].get("annotations") or {}
    client = TalosClient(ClientCredentials.admin_of(bundle), api_port(), DAY2_TIMEOUT)
    return Day2Pass(
        spec,
        (cluster.get("status") or {}).get("upgrade"),
        annotations.get(RETRY_UPGRADE_ANNOTATION),
        machines,
        client,
    ).run()


def installed_devices(
    items: list[dict[str, Any]],
    facts: list[DeviceFacts],
    verdicts: Mapping[str, Verdict],
    bundle: SecretsBundle | None,
) -> dict[str, tuple[str, str]]:
    """Devices whose config was served and whose Talos API now answers: ``{name: (address:port, version)}``.

    Only devices in phase ConfigServed are asked (MachineService.Version over mutual TLS with an
    admin client certificate of the cluster: talosapi.py), so an idle pass calls nothing; the
    Kubernetes node's readiness lives in the workload cluster and is not seen here.
    """
    port = api_port()
    targets: dict[str, str] = {}
    for obj, fact in zip(items, facts, strict=True):
        verdict = verdicts.get(fact.name)
        if (obj.get("status") or {}).get("phase") != "ConfigServed" or verdict is None or not verdict.ok:
            continue
        address = min(fact.addresses) if fact.addresses else fact.boot_ip
        if address:
            targets[fact.name] = address
    if not targets or bundle is None:
        return {}
    versions = talos_versions(targets, port, ClientCredentials.admin_of(bundle))
    return {name: (f"{targets[name]}:{port}", version) for name, version in versions.items()}
