"""The BareMetalHost lifecycle: states, the transition table, and the next step for a host.

Everything here is pure. ``plan(view)`` looks at what the user asked for (spec, annotations)
and what was last observed (status, power) and returns exactly one ``Action``; the executor
performs it, records the result in the status and asks again. Progress inside a multi-step
state (Provisioning) is kept in ``status.provisioning.step``, so an operator restarted at any
point resumes from the status, and every step is safe to repeat: power commands are only sent
when the observed power differs from the target, and the install boot is the single power-on
after the host was seen off with its boot device configured.

Error is not a state (as in metal3): a failed action keeps the host in its state, sets
errorType/errorMessage/errorCount and is retried with exponential backoff.

    Registering ──registered──► Inspecting ──inventory read──► Available
         │  └────────registered, inspection disabled──────────► Available
         └──────────registered, externallyProvisioned─────────► ExternallyProvisioned
    Available ──bootSource set──► Provisioning ──booted (or left off)──► Provisioned
    Available ──inspect annotation──► Inspecting
    Provisioning / Provisioned ──bootSource removed or changed──► Deprovisioning ──► Available
    Available ◄──externallyProvisioned cleared── ExternallyProvisioned
    deletion: PoweringOffBeforeDelete ──off (or retries used up)──► Deleting
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from trellis.operators.baremetalhost.bmc import BootDevice


class State(enum.StrEnum):
    REGISTERING = "Registering"
    INSPECTING = "Inspecting"
    AVAILABLE = "Available"
    PROVISIONING = "Provisioning"
    PROVISIONED = "Provisioned"
    EXTERNALLY_PROVISIONED = "ExternallyProvisioned"
    DEPROVISIONING = "Deprovisioning"
    POWERING_OFF_BEFORE_DELETE = "PoweringOffBeforeDelete"
    DELETING = "Deleting"


class Event(enum.StrEnum):
    CREATED = "Created"
    REGISTERED = "Registered"
    REGISTERED_NO_INSPECTION = "RegisteredInspectionDisabled"
    REGISTERED_EXTERNAL = "RegisteredExternallyProvisioned"
    INSPECTED = "Inspected"
    INSPECT_REQUESTED = "InspectRequested"
    BOOT_SOURCE_SET = "BootSourceSet"
    BOOT_SOURCE_CLEARED = "BootSourceCleared"
    BOOT_SOURCE_CHANGED = "BootSourceChanged"
    PROVISIONED = "ProvisioningDone"
    DEPROVISIONED = "DeprovisioningDone"
    EXTERNAL_SET = "ExternallyProvisionedSet"
    EXTERNAL_CLEARED = "ExternallyProvisionedCleared"
    DELETE_REQUESTED = "DeleteRequested"
    POWERED_OFF_FOR_DELETE = "PoweredOffForDelete"


S, E = State, Event
TRANSITIONS: dict[tuple[State | None, Event], State] = {
    (None, E.CREATED): S.REGISTERING,
    (S.REGISTERING, E.REGISTERED): S.INSPECTING,
    (S.REGISTERING, E.REGISTERED_NO_INSPECTION): S.AVAILABLE,
    (S.REGISTERING, E.REGISTERED_EXTERNAL): S.EXTERNALLY_PROVISIONED,
    (S.INSPECTING, E.INSPECTED): S.AVAILABLE,
    (S.AVAILABLE, E.INSPECT_REQUESTED): S.INSPECTING,
    (S.AVAILABLE, E.BOOT_SOURCE_SET): S.PROVISIONING,
    (S.AVAILABLE, E.EXTERNAL_SET): S.EXTERNALLY_PROVISIONED,
    (S.EXTERNALLY_PROVISIONED, E.EXTERNAL_CLEARED): S.AVAILABLE,
    (S.PROVISIONING, E.PROVISIONED): S.PROVISIONED,
    (S.PROVISIONING, E.BOOT_SOURCE_CLEARED): S.DEPROVISIONING,
    (S.PROVISIONING, E.BOOT_SOURCE_CHANGED): S.DEPROVISIONING,
    (S.PROVISIONED, E.BOOT_SOURCE_CLEARED): S.DEPROVISIONING,
    (S.PROVISIONED, E.BOOT_SOURCE_CHANGED): S.DEPROVISIONING,
    (S.DEPROVISIONING, E.DEPROVISIONED): S.AVAILABLE,
    (S.POWERING_OFF_BEFORE_DELETE, E.POWERED_OFF_FOR_DELETE): S.DELETING,
}
# Deletion is allowed from everywhere; where the BMC was never usable there is nothing to power off.
for _state in State:
    if _state not in (S.POWERING_OFF_BEFORE_DELETE, S.DELETING):
        TRANSITIONS[(_state, E.DELETE_REQUESTED)] = S.POWERING_OFF_BEFORE_DELETE
TRANSITIONS[(None, E.DELETE_REQUESTED)] = S.DELETING

STEADY = frozenset({S.AVAILABLE, S.PROVISIONED, S.EXTERNALLY_PROVISIONED})
# Error type recorded when an action fails in a state (power actions in steady states are power errors).
ERROR_TYPES = {
    S.REGISTERING: "RegistrationError",
    S.INSPECTING: "InspectionError",
    S.PROVISIONING: "ProvisioningError",
    S.DEPROVISIONING: "DeprovisioningError",
    S.POWERING_OFF_BEFORE_DELETE: "PowerManagementError",
}


class InvalidTransition(Exception):
    pass


def transition(state: State | None, event: Event) -> State:
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        raise InvalidTransition(f"{event.value} is not valid in state {state}") from None


# Provisioning sub-steps, in order.
STEP_POWER_OFF = "PowerOff"
STEP_CONFIGURE_BOOT = "ConfigureBoot"
STEP_POWER_ON = "PowerOn"
# Inspecting / Provisioned markers.
STEP_INVENTORY_READ = "InventoryRead"
STEP_LOCAL_BOOT = "LocalBoot"


@dataclass(frozen=True)
class View:
    """What ``plan`` needs to know about one host."""

    state: State | None
    step: str | None = None
    online: bool = False
    boot_source: dict[str, Any] | None = None  # spec.bootSource
    applied_boot_source: dict[str, Any] | None = None  # status.provisioning.bootSource
    install_boot_observed: bool = False
    inspection_enabled: bool = True
    externally_provisioned: bool = False
    inspect_requested: bool = False
    reboot: str | None = None  # "soft" or "hard" while a reboot annotation is present
    registered: bool = False  # current address + credentials verified against the BMC
    powered_on: bool | None = None


# -- actions ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Action:
    reason: str = ""


@dataclass(frozen=True)
class Transition(Action):
    to: State = S.REGISTERING
    event: Event = E.CREATED
    clear_provisioning: bool = False
    install_boot_observed: bool | None = None


@dataclass(frozen=True)
class SetStep(Action):
    step: str = ""


@dataclass(frozen=True)
class Register(Action):
    """Read the credentials Secret and prove them against the BMC."""


@dataclass(frozen=True)
class Inspect(Action):
    """Read the inventory into status.hardware; consumes the inspect annotation."""


@dataclass(frozen=True)
class PowerOn(Action):
    pass


@dataclass(frozen=True)
class PowerOff(Action):
    hard: bool = False


@dataclass(frozen=True)
class ConfigureBoot(Action):
    """Attach the boot source (virtual media if any) and set the boot device; records it as applied."""

    device: BootDevice = BootDevice.DISK
    persistent: bool = True


@dataclass(frozen=True)
class SwitchToLocalDisk(Action):
    """bootSource mode once: after the install boot, boot the local disk from now on."""


@dataclass(frozen=True)
class Deprovision(Action):
    """Detach virtual media and make the local disk the boot device."""


@dataclass(frozen=True)
class MarkInstallBootObserved(Action):
    pass


@dataclass(frozen=True)
class FinishReboot(Action):
    """The host was seen off for a reboot request: drop the annotation (online brings it back)."""


@dataclass(frozen=True)
class Wait(Action):
    """Nothing to send now; look again soon (a power change is landing, or input is missing)."""


@dataclass(frozen=True)
class Idle(Action):
    """Converged: only the periodic power poll remains."""


@dataclass
class Plan:
    action: Action
    notes: list[str] = field(default_factory=list)


def boot_device_for(source: dict[str, Any]) -> BootDevice:
    kind = source.get("type")
    if kind == "pxe":
        return BootDevice.PXE
    if kind == "isocdrom":
        return BootDevice.CDROM if source.get("via") == "virtualMedia" else BootDevice.PXE
    return BootDevice.DISK


def _same_source(a: dict[str, Any] | None, b: dict[str, Any] | None) -> bool:
    def norm(src: dict[str, Any] | None) -> tuple[Any, ...] | None:
        if not src:
            return None
        return (src.get("type"), src.get("isocdromRef"), src.get("mode", "once"), src.get("via", "iscsi"))

    return norm(a) == norm(b)


def _power(view: View) -> Action:
    """Enforce spec.online (and a pending reboot request) in states where the BMC is ours."""
    if view.powered_on is None:
        return Wait(reason="PowerUnknown")
    if view.reboot is not None:
        if view.powered_on:
            return PowerOff(hard=view.reboot == "hard", reason="RebootRequested")
        return FinishReboot(reason="RebootPoweredOff")
    if view.online and not view.powered_on:
        return PowerOn(reason="OnlineTrue")
    if not view.online and view.powered_on:
        return PowerOff(hard=False, reason="OnlineFalse")
    return Idle()


def plan(view: View) -> Action:
    state = view.state
    if state is None:
        return Transition(to=transition(None, E.CREATED), event=E.CREATED, reason="HostCreated")
    if state in (S.POWERING_OFF_BEFORE_DELETE, S.DELETING):
        return Wait(reason="Deleting")
    if not view.registered:
        return Register(reason="CredentialsUnverified")

    if state == S.REGISTERING:
        if view.externally_provisioned:
            event = E.REGISTERED_EXTERNAL
        elif view.inspection_enabled:
            event = E.REGISTERED
        else:
            event = E.REGISTERED_NO_INSPECTION
        return Transition(to=transition(state, event), event=event, reason="Registered")

    if state == S.INSPECTING:
        if view.step == STEP_INVENTORY_READ:
            return Transition(to=transition(state, E.INSPECTED), event=E.INSPECTED, reason="InventoryRead")
        return Inspect(reason="Inspecting")

    if state == S.AVAILABLE:
        if view.externally_provisioned:
            return Transition(to=transition(state, E.EXTERNAL_SET), event=E.EXTERNAL_SET, reason="External")
        if view.inspect_requested:
            return Transition(
                to=transition(state, E.INSPECT_REQUESTED), event=E.INSPECT_REQUESTED, reason="Inspect"
            )
        if view.boot_source:
            return Transition(
                to=transition(state, E.BOOT_SOURCE_SET), event=E.BOOT_SOURCE_SET, reason="BootSource"
            )
        return _power(view)

    if state == S.EXTERNALLY_PROVISIONED:
        if not view.externally_provisioned:
            return Transition(
                to=transition(state, E.EXTERNAL_CLEARED), event=E.EXTERNAL_CLEARED, reason="Managed"
            )
        if view.inspect_requested:
            return Inspect(reason="Reinspect")
        return _power(view)

    if state in (S.PROVISIONING, S.PROVISIONED):
        if not view.boot_source:
            event = E.BOOT_SOURCE_CLEARED
            return Transition(to=transition(state, event), event=event, reason="BootSourceRemoved")
        if view.applied_boot_source and not _same_source(view.boot_source, view.applied_boot_source):
            event = E.BOOT_SOURCE_CHANGED
            return Transition(to=transition(state, event), event=event, reason="BootSourceChanged")

    if state == S.PROVISIONING:
        return _provisioning(view)

    if state == S.PROVISIONED:
        source = view.applied_boot_source or view.boot_source or {}
        if not view.install_boot_observed and view.powered_on:
            return MarkInstallBootObserved(reason="PoweredOnAfterProvisioning")
        once = source.get("mode", "once") == "once" and source.get("type") != "disk"
        if once and view.install_boot_observed and view.step != STEP_LOCAL_BOOT:
            return SwitchToLocalDisk(reason="InstallBootObserved")
        if view.inspect_requested:
            return Inspect(reason="Reinspect")
        return _power(view)

    if state == S.DEPROVISIONING:
        return Deprovision(reason="Deprovisioning")

    return Wait(reason=f"UnhandledState{state}")


def _provisioning(view: View) -> Action:
    source = view.boot_source or {}
    step = view.step or STEP_POWER_OFF
    if step == STEP_POWER_OFF:
        if view.powered_on is None:
            return Wait(reason="PowerUnknown")
        if view.powered_on:
            return PowerOff(hard=True, reason="PrepareInstallBoot")
        return SetStep(step=STEP_CONFIGURE_BOOT, reason="PoweredOff")
    if step == STEP_CONFIGURE_BOOT:
        persistent = source.get("mode", "once") == "always" or source.get("type") == "disk"
        return ConfigureBoot(device=boot_device_for(source), persistent=persistent, reason="ConfigureBoot")
    if step == STEP_POWER_ON:
        if not view.online:
            event = E.PROVISIONED
            return Transition(
                to=transition(S.PROVISIONING, event), event=event, reason="ProvisionedPoweredOff"
            )
        if view.powered_on:
            event = E.PROVISIONED
            return Transition(
                to=transition(S.PROVISIONING, event), event=event, reason="InstallBootStarted",
                install_boot_observed=True,
            )  # fmt: skip
        if view.powered_on is None:
            return Wait(reason="PowerUnknown")
        return PowerOn(reason="InstallBoot")
    return SetStep(step=STEP_POWER_OFF, reason=f"UnknownStep{step}")


def error_type(state: State | None, action: Action) -> str:
    """errorType for a failure of ``action`` in ``state``."""
    if state is None or isinstance(action, Register):
        return "RegistrationError"
    if isinstance(action, PowerOn | PowerOff | FinishReboot) and state not in ERROR_TYPES:
        return "PowerManagementError"
    return ERROR_TYPES.get(state, "PowerManagementError")


def backoff_seconds(error_count: int, base: float, cap: float) -> float:
    """Exponential backoff before retrying after ``error_count`` consecutive errors (no jitter)."""
    if error_count <= 0:
        return 0.0
    return float(min(cap, base * (2 ** min(error_count - 1, 30))))
