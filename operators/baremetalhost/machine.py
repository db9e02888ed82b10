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

    Unmanaged (no spec.bmc, e.g. discovered from DHCP) ──bmc set──► Registering
    Registering ──registered──► Inspecting ──inventory read──► Available
         │  └────────registered, inspection disabled──────────► Available
         └──────────registered, externallyProvisioned─────────► ExternallyProvisioned
    Available ──bootSource set──► Provisioning ──booted (or left off)──► Provisioned
        (a PXE install boot waits for the boot NIC's reservation; a host linked to a TalosDevice
         stays Provisioning until the device reports its install, retried after a timeout)
    Available ──inspect annotation──► Inspecting
    Provisioning / Provisioned ──bootSource removed or changed──► Deprovisioning ──► Available
    Provisioning / Provisioned ──reprovision annotation (new value)──► Provisioning (install boot again)
    Available ◄──externallyProvisioned cleared── ExternallyProvisioned
    deletion: PoweringOffBeforeDelete ──off (or retries used up)──► Deleting
"""

from __future__ import annotations

from typing import Any

# The vocabulary lives in ``actions``; it is re-exported so callers say ``machine.PowerOn``.
from trellis.operators.baremetalhost.actions import (
    STEP_AWAIT_INSTALL,
    STEP_CONFIGURE_BOOT,
    STEP_INVENTORY_READ,
    STEP_LOCAL_BOOT,
    STEP_POWER_OFF,
    STEP_POWER_ON,
    Action,
    ConfigureBoot,
    Deprovision,
    Event,
    FinishReboot,
    Idle,
    Inspect,
    InstallTimedOut,
    MarkDeviceConfigServed,
    MarkInstallBootObserved,
    PowerOff,
    PowerOn,
    Register,
    SetStep,
    State,
    SwitchToLocalDisk,
    Transition,
    View,
    Wait,
)
from trellis.operators.baremetalhost.bmc import BootDevice

S, E = State, Event
TRANSITIONS: dict[tuple[State | None, Event], State] = {
    (None, E.CREATED): S.REGISTERING,
    (S.UNMANAGED, E.ADOPTED): S.REGISTERING,
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
    (S.PROVISIONED, E.REPROVISION_REQUESTED): S.PROVISIONING,
    (S.PROVISIONING, E.REPROVISION_REQUESTED): S.PROVISIONING,
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
    if state == S.UNMANAGED:  # only planned once spec.bmc is set (host.py keeps it Unmanaged before)
        return Transition(to=transition(state, E.ADOPTED), event=E.ADOPTED, reason="BMCAdded")
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
        if view.reprovision:
            # The install boot again, from its first step (power off, boot device, power on).
            event = E.REPROVISION_REQUESTED
            return Transition(
                to=transition(state, event), event=event, reason="ReprovisionRequested",
                clear_provisioning=True, reprovision_for=view.reprovision,
            )  # fmt: skip

    if state == S.PROVISIONING:
        return _provisioning(view)

    if state == S.PROVISIONED:
        source = view.applied_boot_source or view.boot_source or {}
        if not view.install_boot_observed and view.powered_on:
            return MarkInstallBootObserved(reason="PoweredOnAfterProvisioning")
        if not view.install_boot_observed and view.online and view.reboot is None:
            gate = _reservation_gate(view, source)
            if gate is not None:
                return gate
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
            if view.device:
                return SetStep(step=STEP_AWAIT_INSTALL, reason="InstallBootStarted")
            event = E.PROVISIONED
            return Transition(
                to=transition(S.PROVISIONING, event), event=event, reason="InstallBootStarted",
                install_boot_observed=True,
            )  # fmt: skip
        if view.powered_on is None:
            return Wait(reason="PowerUnknown")
        return _reservation_gate(view, source) or PowerOn(reason="InstallBoot")
    if step == STEP_AWAIT_INSTALL:
        return _await_install(view)
    return SetStep(step=STEP_POWER_OFF, reason=f"UnknownStep{step}")


INSTALLED_PHASES = ("Installed", "Ready")


def _reservation_gate(view: View, source: dict[str, Any]) -> Wait | None:
    """A network install boot without a served reservation for the boot NIC gets no PXE options."""
    if boot_device_for(source) != BootDevice.PXE or view.boot_reservation_ready in (None, True):
        return None
    return Wait(
        reason="WaitingForBootReservation",
        message=f"install boot waits for {view.boot_reservation}; no power-on until it is Ready",
        watched=True,
    )


def _await_install(view: View) -> Action:
    event = E.PROVISIONED
    if not view.device:  # the link went away: the boot that was seen is all the evidence there is
        return Transition(
            to=transition(S.PROVISIONING, event), event=event, reason="InstallBootStarted",
            install_boot_observed=True,
        )  # fmt: skip
    phase = view.device_phase or "none"
    if view.device_phase == "ConfigServed" and not view.device_config_served:
        return MarkDeviceConfigServed(reason="DeviceConfigServed")
    # Installed/Ready left over from an earlier install is no evidence: the config must have been
    # served after this install boot.
    if view.device_phase in INSTALLED_PHASES and view.device_config_served:
        return Transition(
            to=transition(S.PROVISIONING, event), event=event, reason="DeviceInstalled",
            install_boot_observed=True,
        )  # fmt: skip
    age = view.install_boot_age or 0.0
    if age >= view.provisioning_timeout:
        return InstallTimedOut(
            reason="InstallTimedOut",
            message=f"TalosDevice {view.device} did not report Installed within "
            f"{view.provisioning_timeout:.0f}s of the install boot (phase {phase}); booting it again",
        )
    served = " after serving its config" if view.device_config_served else ""
    return Wait(
        reason="WaitingForInstall",
        message=f"waiting for TalosDevice {view.device} to report Installed{served} (phase {phase})",
        watched=True,
        recheck=view.provisioning_timeout - age,
    )


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
