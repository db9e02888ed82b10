"""DHCPReservations a host owns: one per NIC in spec.nics, computed from the spec (pure).

* boot NIC: the host's name as hostname, the default gateway, and per-host PXE fields while an
  ISOCDROM is booted over iSCSI (root-path); the Network's own PXE options apply otherwise;
* bmc NIC: ``<host>-bmc`` on the BMC's Network, default gateway, no boot options (pxe.enabled false);
* secondary NICs: ``<host>-<nic>``, no default gateway, no boot options (pxe.enabled false).

Reservation objects are named ``<host>-<nic>``, labelled with the host and owned by it
(controller owner reference), so deleting the host removes them even if the operator is down.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

from trellis.api.common import normalize_mac

HOST_LABEL = "baremetalhost.trellis.dev/host"
MANAGED_BY = "trellis-baremetalhost-operator"
_IMMUTABLE = ("networkRef", "mac")
_SAFE_ROOT_PATH = re.compile(r"^[^\s;'\"`$\\]+$")
ISCSI_DEFAULT_PORT = 3260


@dataclass(frozen=True)
class Desired:
    nic: str
    name: str
    spec: dict[str, Any]


@dataclass(frozen=True)
class Op:
    kind: str  # create, replace, recreate, delete, conflict
    name: str
    spec: dict[str, Any] | None = None
    reason: str = ""


def reservation_name(host: str, nic: str) -> str:
    name = f"{host}-{nic}"
    if len(name) <= 253:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:10]
    return f"{name[:242]}-{digest}"


def iscsi_root_path(iqn: str, portal: str, port: int | None = None, lun: int | None = None) -> str:
    """RFC 4173 root-path iscsi:<server>:<protocol>:<port>:<lun>:<target> as iPXE sanboots it."""
    port_part = "" if port in (None, ISCSI_DEFAULT_PORT) else str(port)
    lun_part = str(lun) if lun else ""
    host = f"[{portal}]" if ":" in portal else portal
    path = f"iscsi:{host}::{port_part}:{lun_part}:{iqn}"
    if not _SAFE_ROOT_PATH.match(path) or len(path) > 512:
        raise ValueError(f"ISOCDROM export {iqn!r} at {portal!r} cannot be used as a DHCP root-path")
    return path


def desired_reservations(
    host: str,
    spec: dict[str, Any],
    root_path: str | None = None,
    skip_networks: frozenset[str] = frozenset(),
) -> list[Desired]:
    """Reservations for ``spec.nics``; NICs on a Network in ``skip_networks`` are left out."""
    result = []
    for nic in spec.get("nics") or []:
        if nic["networkRef"] in skip_networks:
            continue
        role = nic.get("role", "secondary")
        body: dict[str, Any] = {"networkRef": nic["networkRef"], "mac": normalize_mac(nic["mac"])}
        if nic.get("ip"):
            body["ip"] = nic["ip"]
        if role == "boot":
            body["hostname"] = nic.get("hostname") or host
            body["defaultGateway"] = True
            if root_path:
                body["pxe"] = {"rootPath": root_path}
        elif role == "bmc":
            body["hostname"] = nic.get("hostname") or f"{host}-bmc"
            body["defaultGateway"] = True
            body["pxe"] = {"enabled": False}
        else:
            body["hostname"] = nic.get("hostname") or f"{host}-{nic['name']}"
            body["defaultGateway"] = False
            body["pxe"] = {"enabled": False}
        result.append(Desired(nic["name"], reservation_name(host, nic["name"]), body))
    return result


def _comparable(spec: dict[str, Any]) -> dict[str, Any]:
    """A live spec with the API's defaults filled in, so it compares equal to what we asked for."""
    out = {k: v for k, v in spec.items() if v is not None}
    out.setdefault("defaultGateway", True)
    if out.get("allowInDynamicRange") is False:
        out.pop("allowInDynamicRange")
    if "mac" in out:
        out["mac"] = normalize_mac(out["mac"])
    pxe = out.get("pxe")
    if isinstance(pxe, dict) and pxe.get("enabled") is True:
        # The apiserver fills in the default.
        pxe = {k: v for k, v in pxe.items() if k != "enabled"}
        out["pxe"] = pxe
    if not pxe:
        out.pop("pxe", None)
    return out


def plan_reservations(desired: list[Desired], live: list[dict[str, Any]], owner_uid: str) -> list[Op]:
    """What to do so that the owned reservations are exactly ``desired``.

    ``live`` holds reservation objects that carry our host label or one of the desired names.
    An object with a desired name that another owner holds is reported as a conflict and never
    touched; owned objects no longer desired are deleted.
    """
    by_name = {obj["metadata"]["name"]: obj for obj in live}
    ops: list[Op] = []
    for want in desired:
        obj = by_name.pop(want.name, None)
        if obj is None:
            ops.append(Op("create", want.name, want.spec))
            continue
        if not _owned_by(obj, owner_uid):
            ops.append(
                Op("conflict", want.name, reason="a DHCPReservation with this name belongs to someone else")
            )
            continue
        have = _comparable(obj.get("spec") or {})
        if have == _comparable(want.spec):
            continue
        if any(have.get(k) != want.spec.get(k) for k in _IMMUTABLE):
            ops.append(Op("recreate", want.name, want.spec, reason="network or MAC changed"))
        else:
            ops.append(Op("replace", want.name, want.spec))
    for name, obj in sorted(by_name.items()):
        if _owned_by(obj, owner_uid):
            ops.append(Op("delete", name))
    return ops


def _owned_by(obj: dict[str, Any], uid: str) -> bool:
    return any(ref.get("uid") == uid for ref in obj.get("metadata", {}).get("ownerReferences") or [])


def reservation_object(namespace: str, host: str, host_uid: str, want: Desired) -> dict[str, Any]:
    return {
        "apiVersion": "trellis.dev/v1alpha1",
        "kind": "DHCPReservation",
        "metadata": {
            "name": want.name,
            "namespace": namespace,
            "labels": {HOST_LABEL: host, "app.kubernetes.io/managed-by": MANAGED_BY},
            "ownerReferences": [
                {
                    "apiVersion": "trellis.dev/v1alpha1",
                    "kind": "BareMetalHost",
                    "name": host,
                    "uid": host_uid,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": want.spec,
    }
