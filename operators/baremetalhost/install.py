"""Evidence that an install boot did its job: the boot NIC's reservation before it, the linked
TalosDevice's report after it. Turns the operator's caches into ``View`` inputs and records the
install steps in the status; the decisions themselves are ``machine.plan``'s.

A host is linked to the TalosDevice in its namespace whose ``spec.bareMetalHostRef`` names it or,
when no device names it, to a device without a ref whose ``spec.mac`` is the host's boot MAC.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from trellis.api.common import normalize_mac
from trellis.operators.baremetalhost import machine as m
from trellis.operators.baremetalhost import status as st
from trellis.operators.baremetalhost.context import Context, info

DEFAULT_TIMEOUT = 1800.0


class InstallTimeout(Exception):
    """The linked device did not report its install in time (an error, not a BMC problem)."""


def device_facts(obj: dict[str, Any]) -> dict[str, Any]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    return {
        "mac": spec.get("mac"),
        "ref": spec.get("bareMetalHostRef"),
        "phase": status.get("phase"),
        "lastConfigFetch": status.get("lastConfigFetch"),
    }


async def ensure_devices(ctx: Context, namespace: str) -> None:
    """Read a namespace's TalosDevices once: right after a start the watch may not have delivered
    them yet, and "no linked device" would end a linked host's provisioning without evidence."""
    if namespace in ctx.devices_listed:
        return
    for obj in await ctx.kube.talos_devices(namespace):
        ctx.devices.setdefault((namespace, obj["metadata"]["name"]), device_facts(obj))
    ctx.devices_listed.add(namespace)


def linked_device(
    ctx: Context, namespace: str, host: str, spec: dict[str, Any]
) -> tuple[str, dict[str, Any]] | None:
    mine = sorted((name, dev) for (ns, name), dev in ctx.devices.items() if ns == namespace)
    for name, dev in mine:
        if dev.get("ref") == host:
            return name, dev
    boot_mac = normalize_mac(spec.get("bootMACAddress") or "")
    for name, dev in mine:
        if not dev.get("ref") and dev.get("mac") and normalize_mac(dev["mac"]) == boot_mac:
            return name, dev
    return None


def _parse(stamp: Any) -> dt.datetime | None:
    try:
        return dt.datetime.fromisoformat(str(stamp).replace("Z", "+00:00")) if stamp else None
    except ValueError:
        return None


def view_inputs(
    ctx: Context,
    namespace: str,
    host: str,
    spec: dict[str, Any],
    prov: dict[str, Any],
    boot: tuple[bool | None, str],
) -> dict[str, Any]:
    """The evidence fields of ``machine.View`` for one host."""
    out: dict[str, Any] = {
        "boot_reservation_ready": boot[0],
        "boot_reservation": boot[1],
        "provisioning_timeout": float(spec.get("provisioningTimeoutSeconds") or DEFAULT_TIMEOUT),
    }
    booted = _parse(prov.get("installBootTime"))
    if booted is not None:
        out["install_boot_age"] = max(0.0, (dt.datetime.now(dt.UTC) - booted).total_seconds())
    link = linked_device(ctx, namespace, host, spec)
    if link is not None:
        name, dev = link
        fetched = _parse(dev.get("lastConfigFetch"))
        # The boot service stamps lastConfigFetch when it serves the config; a watch may never show
        # the short ConfigServed phase (operator down), so a fetch after the boot is evidence too.
        fresh = fetched is not None and booted is not None and fetched >= booted
        out.update(
            device=name,
            device_phase=dev.get("phase"),
            device_config_served=bool(prov.get("deviceConfigServed")) or fresh,
        )
    return out


def record(action: m.Action, body: dict[str, Any], prov: dict[str, Any]) -> bool:
    """Perform the install bookkeeping actions; False when ``action`` is not one of them."""
    if isinstance(action, m.SetStep) and action.step == m.STEP_AWAIT_INSTALL:
        prov["step"] = m.STEP_AWAIT_INSTALL
        prov["installBootTime"] = st.now()
        prov.pop("deviceConfigServed", None)
        info(body, reason="InstallBootStarted", message="the host powered on for its install boot")
        return True
    if isinstance(action, m.MarkDeviceConfigServed):
        prov["deviceConfigServed"] = True
        info(body, reason="DeviceConfigServed", message="the linked TalosDevice fetched its machine config")
        return True
    if isinstance(action, m.InstallTimedOut):
        # Back to the first step: the retry is one power-off, boot configuration and power-on.
        prov["step"] = m.STEP_POWER_OFF
        prov["installTimeouts"] = int(prov.get("installTimeouts") or 0) + 1
        prov.pop("installBootTime", None)
        prov.pop("deviceConfigServed", None)
        raise InstallTimeout(action.message)
    return False


def forget_attempts(prov: dict[str, Any]) -> None:
    """A state change ends the provisioning attempt these fields describe."""
    for key in ("installBootTime", "deviceConfigServed", "installTimeouts"):
        prov.pop(key, None)


def keeps_error(status: dict[str, Any]) -> bool:
    """A timed-out install stays an error until the retry succeeds, so repeated timeouts back off."""
    prov = status.get("provisioning") or {}
    return st.state_of(status) == m.State.PROVISIONING and bool(prov.get("installTimeouts"))


PROVISIONED_REASONS = {
    "InstallBootStarted": "the host powered on with its install boot source",
    "DeviceInstalled": "the linked TalosDevice reported its install",
    "ProvisionedPoweredOff": "boot configured; the first power-on is the install boot",
}


def condition(
    state: m.State | None, action: m.Action | None, previous: tuple[str, str, str] | None
) -> tuple[str, str, str] | None:
    """The ``Provisioned`` condition after ``action``; None removes it (outside provisioning)."""
    if isinstance(action, m.Transition):
        if action.to == m.State.PROVISIONED:
            return "True", action.reason, PROVISIONED_REASONS.get(action.reason, "provisioned")
        state, previous = action.to, None
    if state == m.State.PROVISIONED:
        return previous or ("True", "Provisioned", "provisioned")
    if state != m.State.PROVISIONING:
        return None
    if isinstance(action, m.Wait) and action.message:
        return "False", action.reason, action.message
    if isinstance(action, m.InstallTimedOut):
        return "False", "InstallTimedOut", action.message
    if action is None or isinstance(action, m.Wait | m.Transition):
        return previous or ("False", "InProgress", "provisioning has started")
    return "False", "InProgress", f"provisioning: {type(action).__name__}"
