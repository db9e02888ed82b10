"""The lifecycle state machine: transition table and the next action for every situation."""

from __future__ import annotations

from dataclasses import replace

import pytest

from trellis.operators.baremetalhost import machine as m
from trellis.operators.baremetalhost.bmc import BootDevice
from trellis.operators.baremetalhost.machine import State, View

PXE_ONCE = {"type": "pxe", "mode": "once"}
REG = View(state=State.REGISTERING, registered=True, powered_on=False)


def test_every_transition_target_is_a_state_and_deletion_is_always_possible() -> None:
    for (source, event), target in m.TRANSITIONS.items():
        assert isinstance(target, State) and isinstance(event, m.Event)
        assert source is None or isinstance(source, State)
    for state in State:
        if state not in (State.POWERING_OFF_BEFORE_DELETE, State.DELETING):
            assert m.transition(state, m.Event.DELETE_REQUESTED) == State.POWERING_OFF_BEFORE_DELETE


def test_invalid_transition_is_refused() -> None:
    with pytest.raises(m.InvalidTransition):
        m.transition(State.AVAILABLE, m.Event.PROVISIONED)
    with pytest.raises(m.InvalidTransition):
        m.transition(State.REGISTERING, m.Event.BOOT_SOURCE_SET)


def test_new_host_starts_registering_and_registers_first() -> None:
    action = m.plan(View(state=None))
    assert isinstance(action, m.Transition) and action.to == State.REGISTERING
    assert isinstance(m.plan(View(state=State.REGISTERING)), m.Register)
    # even a provisioned host re-proves its credentials (rotation, operator restart) without leaving its state
    assert isinstance(m.plan(View(state=State.PROVISIONED, boot_source=PXE_ONCE)), m.Register)


@pytest.mark.parametrize(
    "view,target",
    [
        (REG, State.INSPECTING),
        (replace(REG, inspection_enabled=False), State.AVAILABLE),
        (replace(REG, externally_provisioned=True), State.EXTERNALLY_PROVISIONED),
    ],
)
def test_registration_outcomes(view: View, target: State) -> None:
    action = m.plan(view)
    assert isinstance(action, m.Transition) and action.to == target


def test_inspection_reads_inventory_then_becomes_available() -> None:
    inspecting = View(state=State.INSPECTING, registered=True, powered_on=False)
    assert isinstance(m.plan(inspecting), m.Inspect)
    done = m.plan(replace(inspecting, step=m.STEP_INVENTORY_READ))
    assert isinstance(done, m.Transition) and done.to == State.AVAILABLE


def test_available_enforces_online_both_ways() -> None:
    available = View(state=State.AVAILABLE, registered=True, powered_on=False, online=True)
    assert isinstance(m.plan(available), m.PowerOn)
    off = m.plan(replace(available, online=False, powered_on=True))
    assert isinstance(off, m.PowerOff) and not off.hard
    assert isinstance(m.plan(replace(available, online=False)), m.Idle)
    assert isinstance(m.plan(replace(available, powered_on=None)), m.Wait)


def test_online_is_enforced_right_after_registration_in_every_steady_state() -> None:
    for state in (State.AVAILABLE, State.EXTERNALLY_PROVISIONED):
        view = View(state=state, registered=True, powered_on=False, online=True, externally_provisioned=True)
        if state == State.AVAILABLE:
            view = replace(view, externally_provisioned=False)
        assert isinstance(m.plan(view), m.PowerOn)


def test_available_with_boot_source_starts_provisioning_and_inspect_annotation_reinspects() -> None:
    available = View(state=State.AVAILABLE, registered=True, powered_on=True, online=True)
    action = m.plan(replace(available, boot_source=PXE_ONCE))
    assert isinstance(action, m.Transition) and action.to == State.PROVISIONING
    action = m.plan(replace(available, inspect_requested=True, boot_source=PXE_ONCE))
    assert isinstance(action, m.Transition) and action.to == State.INSPECTING


def test_provisioning_powers_off_configures_boot_then_powers_on() -> None:
    prov = View(state=State.PROVISIONING, registered=True, powered_on=True, online=True, boot_source=PXE_ONCE)
    first = m.plan(prov)
    assert isinstance(first, m.PowerOff) and first.hard
    step = m.plan(replace(prov, powered_on=False))
    assert isinstance(step, m.SetStep) and step.step == m.STEP_CONFIGURE_BOOT
    configure = m.plan(replace(prov, powered_on=False, step=m.STEP_CONFIGURE_BOOT))
    assert isinstance(configure, m.ConfigureBoot)
    assert (configure.device, configure.persistent) == (BootDevice.PXE, False)
    applied = replace(prov, powered_on=False, step=m.STEP_POWER_ON, applied_boot_source=PXE_ONCE)
    assert isinstance(m.plan(applied), m.PowerOn)
    done = m.plan(replace(applied, powered_on=True))
    assert isinstance(done, m.Transition) and done.to == State.PROVISIONED and done.install_boot_observed


def test_provisioning_resumes_without_repeating_the_power_on() -> None:
    """Restarted after the power-on was sent: the host is seen on, so it is done, not powered on twice."""
    resumed = View(
        state=State.PROVISIONING, step=m.STEP_POWER_ON, registered=True, powered_on=True, online=True,
        boot_source=PXE_ONCE, applied_boot_source=PXE_ONCE,
    )  # fmt: skip
    action = m.plan(resumed)
    assert isinstance(action, m.Transition) and action.to == State.PROVISIONED


def test_provisioning_an_offline_host_leaves_it_off() -> None:
    view = View(
        state=State.PROVISIONING, step=m.STEP_POWER_ON, registered=True, powered_on=False, online=False,
        boot_source=PXE_ONCE, applied_boot_source=PXE_ONCE,
    )  # fmt: skip
    action = m.plan(view)
    assert isinstance(action, m.Transition) and action.to == State.PROVISIONED
    assert action.install_boot_observed is None


@pytest.mark.parametrize(
    "source,device,persistent",
    [
        ({"type": "pxe", "mode": "always"}, BootDevice.PXE, True),
        ({"type": "disk"}, BootDevice.DISK, True),
        ({"type": "isocdrom", "isocdromRef": "talos", "via": "iscsi"}, BootDevice.PXE, False),
        ({"type": "isocdrom", "isocdromRef": "talos", "via": "virtualMedia"}, BootDevice.CDROM, False),
    ],
)
def test_boot_device_per_source(source: dict[str, str], device: BootDevice, persistent: bool) -> None:
    view = View(state=State.PROVISIONING, step=m.STEP_CONFIGURE_BOOT, registered=True, powered_on=False,
                boot_source=source)  # fmt: skip
    action = m.plan(view)
    assert isinstance(action, m.ConfigureBoot) and (action.device, action.persistent) == (device, persistent)


def test_once_switches_to_local_disk_after_the_install_boot_and_always_does_not() -> None:
    provisioned = View(
        state=State.PROVISIONED, registered=True, powered_on=True, online=True,
        boot_source=PXE_ONCE, applied_boot_source=PXE_ONCE, install_boot_observed=True,
    )  # fmt: skip
    assert isinstance(m.plan(provisioned), m.SwitchToLocalDisk)
    assert isinstance(m.plan(replace(provisioned, step=m.STEP_LOCAL_BOOT)), m.Idle)
    always = {"type": "pxe", "mode": "always"}
    assert isinstance(m.plan(replace(provisioned, boot_source=always, applied_boot_source=always)), m.Idle)


def test_power_on_after_offline_provisioning_counts_as_the_install_boot() -> None:
    provisioned = View(
        state=State.PROVISIONED, registered=True, powered_on=False, online=True,
        boot_source=PXE_ONCE, applied_boot_source=PXE_ONCE,
    )  # fmt: skip
    assert isinstance(m.plan(provisioned), m.PowerOn)
    assert isinstance(m.plan(replace(provisioned, powered_on=True)), m.MarkInstallBootObserved)


def test_removing_or_changing_the_boot_source_deprovisions() -> None:
    provisioned = View(state=State.PROVISIONED, registered=True, powered_on=True, online=True,
                       applied_boot_source=PXE_ONCE)  # fmt: skip
    removed = m.plan(provisioned)
    assert isinstance(removed, m.Transition) and removed.to == State.DEPROVISIONING
    changed = m.plan(replace(provisioned, boot_source={"type": "pxe", "mode": "always"}))
    assert isinstance(changed, m.Transition) and changed.to == State.DEPROVISIONING
    assert isinstance(m.plan(View(state=State.DEPROVISIONING, registered=True)), m.Deprovision)


def test_reboot_request_powers_off_then_finishes_and_online_powers_back_on() -> None:
    running = View(
        state=State.PROVISIONED, registered=True, powered_on=True, online=True, boot_source=PXE_ONCE,
        applied_boot_source=PXE_ONCE, install_boot_observed=True, step=m.STEP_LOCAL_BOOT,
    )  # fmt: skip
    hard = m.plan(replace(running, reboot="hard"))
    assert isinstance(hard, m.PowerOff) and hard.hard
    soft = m.plan(replace(running, reboot="soft"))
    assert isinstance(soft, m.PowerOff) and not soft.hard
    assert isinstance(m.plan(replace(running, reboot="hard", powered_on=False)), m.FinishReboot)
    assert isinstance(m.plan(replace(running, powered_on=False)), m.PowerOn)


def test_externally_provisioned_only_manages_power() -> None:
    ext = View(state=State.EXTERNALLY_PROVISIONED, registered=True, powered_on=False, online=False,
               externally_provisioned=True, boot_source=PXE_ONCE)  # fmt: skip
    assert isinstance(m.plan(ext), m.Idle)
    cleared = m.plan(replace(ext, externally_provisioned=False))
    assert isinstance(cleared, m.Transition) and cleared.to == State.AVAILABLE


def test_error_types_and_backoff() -> None:
    assert m.error_type(State.REGISTERING, m.Register()) == "RegistrationError"
    assert m.error_type(State.PROVISIONED, m.Register()) == "RegistrationError"
    assert m.error_type(State.PROVISIONING, m.PowerOn()) == "ProvisioningError"
    assert m.error_type(State.AVAILABLE, m.PowerOff()) == "PowerManagementError"
    assert m.error_type(State.INSPECTING, m.Inspect()) == "InspectionError"
    assert [m.backoff_seconds(n, 10, 600) for n in range(0, 9)] == [0, 10, 20, 40, 80, 160, 320, 600, 600]


def test_reprovision_request_runs_the_install_boot_again() -> None:
    provisioned = View(
        state=State.PROVISIONED,
        registered=True,
        powered_on=True,
        online=True,
        boot_source=PXE_ONCE,
        applied_boot_source=PXE_ONCE,
        install_boot_observed=True,
        step=m.STEP_LOCAL_BOOT,
    )
    assert isinstance(m.plan(provisioned), m.Idle)
    action = m.plan(replace(provisioned, reprovision="uid/1"))
    assert isinstance(action, m.Transition) and action.to == State.PROVISIONING
    assert action.clear_provisioning and action.reprovision_for == "uid/1"
    # Back in Provisioning the first step powers the machine off for the install boot.
    again = replace(provisioned, state=State.PROVISIONING, step=None, install_boot_observed=False)
    assert isinstance(m.plan(again), m.PowerOff)
