"""Retire a deleted device: Talos reset when the machine answers, then its host powered off."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import kopf

from trellis.operators.talosdevice import objects as o
from trellis.operators.talosdevice.hardware import (
    HOSTS,
    RETIRE_ANNOTATION,
    hosts_in,
    linked_host,
    retire_wanted,
)
from trellis.operators.talosdevice.installed import api_port
from trellis.operators.talosdevice.kube import CLUSTERS, Kube
from trellis.operators.talosdevice.reconcile import (
    ClusterProblem,
    load_cluster_state,
    parse_cluster,
    render_for_rules,
)
from trellis.operators.talosdevice.render import Rendered
from trellis.operators.talosdevice.rules import addresses_of
from trellis.operators.talosdevice.talosapi import ClientCredentials, TalosApiError, TalosClient

RESET_TRIES = 3
# Answers after which retrying cannot help: nothing there, no Reset in this API, no answer in time.
UNRESETTABLE = frozenset({"UNAVAILABLE", "UNIMPLEMENTED", "DEADLINE_EXCEEDED"})


def device_api_target(kube: Kube, obj: Mapping[str, Any]) -> tuple[str, ClientCredentials] | None:
    """Where the device's Talos API answers and the cluster credentials to call it, if known."""
    meta, spec = obj["metadata"], obj.get("spec") or {}
    cluster = kube.get(CLUSTERS, meta["namespace"], spec.get("clusterRef") or "")
    if not spec.get("clusterRef") or cluster is None:
        return None
    try:
        state = load_cluster_state(kube, cluster, parse_cluster(cluster))
    except (ClusterProblem, ValueError):
        return None
    found = render_for_rules(state, cluster["metadata"]["name"], obj)
    addresses = sorted(addresses_of(found.documents)) if isinstance(found, Rendered) else []
    address = addresses[0] if addresses else o.device_facts(obj).boot_ip
    if not address:
        return None
    return address, ClientCredentials.admin_of(state.bundle)


def retire(k: Kube, obj: Mapping[str, Any], final_try: bool) -> list[tuple[str, str, bool]]:
    """Reset the machine through the Talos API (when it answers), then power its host off.

    A reset refused for another reason than being unreachable is retried a few times before the
    host is powered off anyway: deletion must not hang on a machine that will never agree.
    """
    meta, status = obj["metadata"], obj.get("status") or {}
    if not retire_wanted(obj):
        return [
            ("RetireSkipped", f"annotation {RETIRE_ANNOTATION} is false: the machine is left running", False)
        ]
    events: list[tuple[str, str, bool]] = []
    if status.get("phase") == "Installed":
        target = device_api_target(k, obj)
        if target is None:
            events.append(("ResetSkipped", "no cluster credentials or address to reach the Talos API", True))
        else:
            address, creds = target
            try:
                TalosClient(creds, api_port()).reset(address, reboot=False, graceful=True)
                events.append(("Reset", f"Talos reset at {address}: system disk wiped, halting", False))
            except TalosApiError as exc:
                if exc.code not in UNRESETTABLE and not final_try:
                    raise kopf.TemporaryError(
                        f"Talos refused the reset: {exc.code}: {exc.details}", delay=10
                    ) from None
                events.append(
                    ("ResetSkipped", f"Talos reset at {address} failed: {exc.code}: {exc.details}", True)
                )
    host = linked_host(obj, hosts_in(k, meta["namespace"]))
    if host is not None:
        k.patch(HOSTS, meta["namespace"], host["metadata"]["name"], {"spec": {"online": False}})
        events.append(("PoweredOff", f"BareMetalHost {host['metadata']['name']} set offline", False))
    return events
