"""Status bookkeeping (pure): merge patches, inventory, errors and conditions."""

from __future__ import annotations

import datetime as dt
from typing import Any

from trellis.operators.baremetalhost.bmc import Inventory
from trellis.operators.baremetalhost.machine import STEADY, State
from trellis.opkit.conditions import set_condition


def now() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def merge_patch(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """RFC 7386 merge patch turning ``old`` into ``new`` (lists and scalars are replaced whole)."""
    patch: dict[str, Any] = {}
    for key in old.keys() - new.keys():
        if old[key] is not None:
            patch[key] = None
    for key, value in new.items():
        before = old.get(key)
        if isinstance(value, dict) and isinstance(before, dict):
            sub = merge_patch(before, value)
            if sub:
                patch[key] = sub
        elif value != before:
            patch[key] = value
    return patch


def hardware(inventory: Inventory) -> dict[str, Any]:
    out: dict[str, Any] = {
        "manufacturer": inventory.manufacturer,
        "model": inventory.model,
        "serialNumber": inventory.serial_number,
        "biosVersion": inventory.bios_version,
        "ramMebibytes": inventory.memory_mib,
    }
    cpu = {"model": inventory.cpu_model, "count": inventory.cpu_count}
    if any(v is not None for v in cpu.values()):
        out["cpu"] = {k: v for k, v in cpu.items() if v is not None}
    if inventory.nics:
        out["nics"] = [{"name": n.name[:256], "mac": n.mac} for n in inventory.nics[:64]]
    return {k: (v[:256] if isinstance(v, str) else v) for k, v in out.items() if v is not None}


def set_error(status: dict[str, Any], error_type: str, message: str, operational: str = "error") -> int:
    """Record a failure; returns the new errorCount."""
    count = int(status.get("errorCount") or 0) + 1
    status["errorType"] = error_type
    status["errorMessage"] = message[:4096]
    status["errorCount"] = count
    status["operationalStatus"] = operational
    return count


def clear_error(status: dict[str, Any]) -> None:
    for key in ("errorType", "errorMessage"):
        status.pop(key, None)
    status["errorCount"] = 0
    status["operationalStatus"] = "OK"


def set_unmanaged(status: dict[str, Any]) -> tuple[str, str, str]:
    """A host without spec.bmc: state Unmanaged, nothing observed; returns the BMCReachable condition."""
    status.update(provisioning={"state": State.UNMANAGED.value}, operationalStatus="discovered")
    for key in ("poweredOn", "errorType", "errorMessage", "errorCount"):
        status.pop(key, None)
    return ("False", "NoBMC", "spec.bmc is not set: add address and credentialsName")


def finish_conditions(
    status: dict[str, Any],
    generation: int,
    bmc: tuple[str, str, str],
    reservations: tuple[str, str, str],
    duplicate: tuple[str, str, str],
    provisioned: tuple[str, str, str] | None = None,
) -> None:
    """Ready, BMCReachable, ReservationsReady, DuplicateMAC and (while provisioning or provisioned)
    Provisioned, plus observedGeneration."""
    state = (status.get("provisioning") or {}).get("state")
    operational = status.get("operationalStatus")
    conds = status.get("conditions") or []
    if operational == "detached":
        ready = (False, "Detached", "the host is detached: the operator does not touch its BMC")
    elif state == "Unmanaged":
        ready = (False, "Unmanaged", "the host has no spec.bmc: set it to adopt the host")
    elif operational in ("error", "discovered"):
        ready = (False, status.get("errorType") or "Error", status.get("errorMessage") or "")
    elif state in {s.value for s in STEADY}:
        ready = (True, str(state), f"host is {state}")
    else:
        ready = (False, str(state or "Pending"), f"host is {state or 'being registered'}")
    conds = set_condition(conds, "Ready", ready[0], ready[1], ready[2], generation)
    conds = set_condition(conds, "BMCReachable", bmc[0], bmc[1], bmc[2], generation)
    conds = set_condition(conds, "ReservationsReady", *reservations, generation=generation)
    conds = set_condition(conds, "DuplicateMAC", *duplicate, generation=generation)
    if provisioned is None:
        conds = [c for c in conds if c.get("type") != "Provisioned"]
    else:
        conds = set_condition(conds, "Provisioned", *provisioned, generation=generation)
    status["conditions"] = conds
    status["observedGeneration"] = generation


def condition_of(status: dict[str, Any], cond_type: str) -> tuple[str, str, str] | None:
    for cond in status.get("conditions") or []:
        if cond.get("type") == cond_type:
            return str(cond.get("status")), str(cond.get("reason")), str(cond.get("message") or "")
    return None


def state_of(status: dict[str, Any]) -> State | None:
    raw = (status.get("provisioning") or {}).get("state")
    try:
        return State(raw) if raw else None
    except ValueError:
        return None
