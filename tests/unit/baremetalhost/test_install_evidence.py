"""Provisioning on evidence: the install boot waits for the boot reservation, a linked TalosDevice
ends Provisioning, an install that is not reported in time is an error and a new install boot."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

from trellis.operators.baremetalhost import install
from trellis.operators.baremetalhost import machine as m
from trellis.operators.baremetalhost.config import Settings
from trellis.operators.baremetalhost.context import Context
from trellis.operators.baremetalhost.machine import State, View

PXE_ONCE = {"type": "pxe", "mode": "once"}
READY_TO_BOOT = View(
    state=State.PROVISIONING, step=m.STEP_POWER_ON, registered=True, powered_on=False, online=True,
    boot_source=PXE_ONCE, applied_boot_source=PXE_ONCE,
)  # fmt: skip
AWAITING = replace(
    READY_TO_BOOT, step=m.STEP_AWAIT_INSTALL, powered_on=True, device="w-1", device_phase="Approved",
    install_boot_age=10.0, provisioning_timeout=600.0, boot_reservation_ready=True,
)  # fmt: skip


def test_install_boot_waits_for_the_boot_reservation_without_powering_on() -> None:
    waiting = replace(
        READY_TO_BOOT,
        boot_reservation_ready=False,
        boot_reservation="DHCPReservation s-eno1 on Network lab (the Network does not exist)",
    )
    action = m.plan(waiting)
    assert isinstance(action, m.Wait) and action.watched
    assert action.reason == "WaitingForBootReservation" and "s-eno1 on Network lab" in action.message
    assert isinstance(m.plan(replace(waiting, boot_reservation_ready=True)), m.PowerOn)
    # No boot NIC on a Network: nothing to wait for (today's behaviour).
    assert isinstance(m.plan(replace(waiting, boot_reservation_ready=None)), m.PowerOn)


def test_only_network_boots_wait_for_the_reservation() -> None:
    waiting = replace(READY_TO_BOOT, boot_reservation_ready=False)
    for source in ({"type": "disk"}, {"type": "isocdrom", "isocdromRef": "t", "via": "virtualMedia"}):
        assert isinstance(m.plan(replace(waiting, boot_source=source, applied_boot_source=source)), m.PowerOn)
    iscsi = {"type": "isocdrom", "isocdromRef": "t", "via": "iscsi"}
    assert isinstance(m.plan(replace(waiting, boot_source=iscsi, applied_boot_source=iscsi)), m.Wait)


def test_offline_provisioned_host_waits_for_the_reservation_before_its_first_power_on() -> None:
    provisioned = View(
        state=State.PROVISIONED, registered=True, powered_on=False, online=True, boot_source=PXE_ONCE,
        applied_boot_source=PXE_ONCE, boot_reservation_ready=False,
    )  # fmt: skip
    assert isinstance(m.plan(provisioned), m.Wait)
    assert isinstance(m.plan(replace(provisioned, boot_reservation_ready=True)), m.PowerOn)
    booted = replace(provisioned, install_boot_observed=True, step=m.STEP_LOCAL_BOOT)
    assert isinstance(m.plan(booted), m.PowerOn)  # later power-ons are no install boot


def test_unlinked_host_is_provisioned_by_the_observed_boot_and_a_linked_one_waits() -> None:
    booted = replace(READY_TO_BOOT, powered_on=True)
    done = m.plan(booted)
    assert isinstance(done, m.Transition) and done.to == State.PROVISIONED and done.install_boot_observed
    step = m.plan(replace(booted, device="w-1"))
    assert isinstance(step, m.SetStep) and step.step == m.STEP_AWAIT_INSTALL


def test_linked_host_waits_for_the_device_to_report_its_install() -> None:
    wait = m.plan(AWAITING)
    assert isinstance(wait, m.Wait) and wait.reason == "WaitingForInstall" and wait.watched
    assert "TalosDevice w-1" in wait.message and "phase Approved" in wait.message
    assert wait.recheck == 590.0
    assert isinstance(m.plan(replace(AWAITING, device_phase="ConfigServed")), m.MarkDeviceConfigServed)
    served = replace(AWAITING, device_phase="ConfigServed", device_config_served=True)
    assert isinstance(m.plan(served), m.Wait)
    for phase in ("Installed", "Ready"):
        done = m.plan(replace(served, device_phase=phase))
        assert isinstance(done, m.Transition) and done.to == State.PROVISIONED
        assert done.reason == "DeviceInstalled" and done.install_boot_observed


def test_an_install_reported_before_this_boot_is_no_evidence() -> None:
    stale = replace(AWAITING, device_phase="Ready", device_config_served=False)
    assert isinstance(m.plan(stale), m.Wait)


def test_link_removed_while_waiting_falls_back_to_the_observed_boot() -> None:
    done = m.plan(replace(AWAITING, device=None))
    assert isinstance(done, m.Transition) and done.to == State.PROVISIONED


def test_install_timeout_is_an_error_then_one_new_install_boot() -> None:
    late = replace(AWAITING, install_boot_age=601.0)
    action = m.plan(late)
    assert isinstance(action, m.InstallTimedOut) and "w-1" in action.message
    assert m.error_type(State.PROVISIONING, action) == "ProvisioningError"
    prov = {"state": "Provisioning", "step": m.STEP_AWAIT_INSTALL, "installBootTime": "2024-01-01T00:00:00Z"}
    try:
        install.record(action, {}, prov)
        raise AssertionError("a timeout must be raised as an error")
    except install.InstallTimeout:
        pass
    assert prov == {"state": "Provisioning", "step": m.STEP_POWER_OFF, "installTimeouts": 1}
    assert install.keeps_error({"provisioning": prov, "errorType": "ProvisioningError"})
    # The retry: a running host is powered off (hard), configured, powered on exactly once.
    retry = replace(late, step=prov["step"], install_boot_age=None)
    assert isinstance(m.plan(retry), m.PowerOff)
    assert isinstance(m.plan(replace(retry, powered_on=False)), m.SetStep)


def test_provisioned_condition_says_what_provisioning_waits_for() -> None:
    wait = m.plan(AWAITING)
    assert install.condition(State.PROVISIONING, wait, None) == ("False", "WaitingForInstall", wait.message)
    done = m.plan(replace(AWAITING, device_phase="Installed", device_config_served=True))
    assert install.condition(State.PROVISIONING, done, None)[:2] == ("True", "DeviceInstalled")
    assert install.condition(State.PROVISIONED, None, ("True", "X", "y")) == ("True", "X", "y")
    assert install.condition(State.AVAILABLE, None, ("True", "X", "y")) is None
    deprov = m.Transition(to=State.DEPROVISIONING, event=m.Event.BOOT_SOURCE_CLEARED)
    assert install.condition(State.PROVISIONED, deprov, ("True", "X", "y")) is None


def _ctx() -> Context:
    return Context(kube=None, settings=Settings(), bmc_slots=None)  # type: ignore[arg-type]


def test_a_device_links_by_ref_first_then_by_boot_mac() -> None:
    ctx = _ctx()
    spec = {"bootMACAddress": "52:54:00:AA:00:01"}
    ctx.devices[("rack", "by-mac")] = {"mac": "52:54:00:aa:00:01", "ref": None, "phase": "Approved"}
    ctx.devices[("other", "elsewhere")] = {"mac": "52:54:00:aa:00:01", "ref": "srv", "phase": "Ready"}
    assert install.linked_device(ctx, "rack", "srv", spec) == ("by-mac", ctx.devices[("rack", "by-mac")])
    ctx.devices[("rack", "z-ref")] = {"mac": "52:54:00:bb:00:01", "ref": "srv", "phase": "Pending"}
    assert install.linked_device(ctx, "rack", "srv", spec)[0] == "z-ref"
    # A device naming another host is not linked by its MAC.
    ctx.devices.pop(("rack", "z-ref"))
    ctx.devices[("rack", "by-mac")]["ref"] = "srv2"
    assert install.linked_device(ctx, "rack", "srv", spec) is None


def test_a_config_fetch_after_the_boot_counts_as_served() -> None:
    ctx = _ctx()
    boot = dt.datetime(2025, 1, 1, 12, 0, tzinfo=dt.UTC)
    prov = {"installBootTime": boot.isoformat().replace("+00:00", "Z")}
    spec = {"bootMACAddress": "52:54:00:aa:00:01", "provisioningTimeoutSeconds": 60}
    dev = {"mac": "52:54:00:aa:00:01", "ref": None, "phase": "Installed"}
    ctx.devices[("rack", "w-1")] = {**dev, "lastConfigFetch": "2025-01-01T11:00:00Z"}
    inputs = install.view_inputs(ctx, "rack", "srv", spec, prov, (True, "r"))
    assert inputs["device"] == "w-1" and not inputs["device_config_served"]
    assert inputs["provisioning_timeout"] == 60.0 and inputs["install_boot_age"] > 0
    ctx.devices[("rack", "w-1")] = {**dev, "lastConfigFetch": "2025-01-01T12:00:05Z"}
    assert install.view_inputs(ctx, "rack", "srv", spec, prov, (True, "r"))["device_config_served"]
    assert install.view_inputs(ctx, "rack", "srv", spec, {"deviceConfigServed": True}, (True, "r"))[
        "device_config_served"
    ]
