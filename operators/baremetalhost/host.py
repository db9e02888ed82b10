"""Drives one BareMetalHost: observe, ask ``machine.plan`` for the next action, perform it, record it.

A ``HostRunner`` lives as long as the host's kopf daemon. It is the only writer of the host's
status, so it keeps the status it last wrote (from the API's answer) instead of trusting a
watch event that may not have arrived yet.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import random
import time
from dataclasses import dataclass
from typing import Any

from trellis.operators.baremetalhost import install
from trellis.operators.baremetalhost import machine as m
from trellis.operators.baremetalhost import status as st
from trellis.operators.baremetalhost.bmc import (
    AddressError,
    AuthenticationError,
    BMCDriver,
    BMCError,
    BootDevice,
    Credentials,
    DriverOptions,
    connect,
)
from trellis.operators.baremetalhost.context import Context, info, warn
from trellis.operators.baremetalhost.kube import SecretProblem
from trellis.operators.baremetalhost.sync import ReservationSync, WaitingFor

ANN = "baremetalhost.trellis.dev/"
PAUSED, DETACHED, REBOOT, INSPECT = ANN + "paused", ANN + "detached", ANN + "reboot", ANN + "inspect"
REPROVISION = ANN + "reprovision"
log = logging.getLogger(__name__)


@dataclass
class PendingPower:
    target: bool
    hard: bool
    issued: float
    first_issued: float


def _unhonoured(request: str | None, honoured: str | None) -> str | None:
    return request if request and request != honoured else None


def reboot_mode(value: str | None) -> str | None:
    if value is None:
        return None
    text = value.strip().lower()
    return "hard" if "hard" in text else "soft"


class HostRunner:
    def __init__(self, ctx: Context, namespace: str, name: str, uid: str) -> None:
        self.ctx, self.namespace, self.name, self.uid = ctx, namespace, name, uid
        self.driver: BMCDriver | None = None
        self.driver_key: tuple[Any, ...] | None = None
        self.registered = False
        self.credentials_read = 0.0
        self.status: dict[str, Any] | None = None
        self.pending: PendingPower | None = None
        self.next_poll = 0.0
        self.polled_at = 0.0
        self.retry_at = 0.0
        self.removed_annotations: dict[str, str] = {}
        self.bmc_condition = ("Unknown", "NotConnected", "the BMC has not been contacted yet")
        self.sync = ReservationSync(ctx, namespace, name, uid)
        self.provisioned: tuple[str, str, str] | None = None  # the Provisioned condition
        self.lock = asyncio.Lock()  # one pass (or the deletion) at a time

    # -- the loop body -----------------------------------------------------------------------------
    async def step(self, body: dict[str, Any], index: Any) -> float:
        """One pass; returns how long to wait before the next one (unless woken earlier)."""
        meta, spec = body["metadata"], body["spec"]
        annotations = self._annotations(meta)
        if PAUSED in annotations:
            return self.ctx.settings.poll_interval
        old = self.status if self.status is not None else copy.deepcopy(body.get("status") or {})
        new = copy.deepcopy(old)
        delay = self.ctx.settings.poll_interval
        if DETACHED in annotations:
            await self.close()
            new["operationalStatus"] = "detached"
            self.bmc_condition = (
                "Unknown",
                "Detached",
                "the operator does not contact the BMC of a detached host",
            )
        elif not spec.get("bmc"):
            await self.sync.run(body, new, index)  # NIC reservations and duplicate MACs as for any host
            delay = await self._unmanaged(new)
        else:
            await self.sync.run(body, new, index)
            delay = await self._manage(body, spec, annotations, new)
        st.finish_conditions(
            new,
            int(meta.get("generation") or 0),
            self.bmc_condition,
            self.sync.condition,
            self.sync.duplicate,
            self.provisioned,
        )
        await self._write(old, new)
        return delay

    async def _manage(
        self, body: dict[str, Any], spec: dict[str, Any], annotations: dict[str, str], new: dict[str, Any]
    ) -> float:
        now = time.monotonic()
        action: m.Action | None = None
        state = st.state_of(new)
        self.provisioned = install.condition(state, None, st.condition_of(new, "Provisioned"))
        if now < self.retry_at:
            return self.retry_at - now
        try:
            if state is not None:
                await self._ensure_driver(spec)
                if self.registered and (now >= self.next_poll or self.pending):
                    await self._poll(new)
            if state == m.State.PROVISIONING:
                await install.ensure_devices(self.ctx, self.namespace)
            action = m.plan(self._view(spec, annotations, new))
            self.provisioned = install.condition(state, action, self.provisioned)
            delay = await self._execute(action, body, spec, annotations, new)
            if not install.keeps_error(new):
                st.clear_error(new)
            self.retry_at = 0.0
            return delay
        except WaitingFor as exc:
            self.sync.note_waiting(str(exc))
            return max(5.0, self.ctx.settings.fast_poll)
        except (BMCError, SecretProblem, AddressError, install.InstallTimeout) as exc:
            return self._failed(body, state, action, exc, new)

    async def _unmanaged(self, new: dict[str, Any]) -> float:
        """No BMC to talk to (a discovered host, or bmc removed): stay Unmanaged until spec.bmc is set."""
        await self.close()
        self.pending, self.provisioned = None, None
        self.bmc_condition = st.set_unmanaged(new)
        return self.ctx.settings.resync_interval

    def _failed(
        self,
        body: dict[str, Any],
        state: m.State | None,
        action: m.Action | None,
        exc: Exception,
        new: dict[str, Any],
    ) -> float:
        if isinstance(exc, AuthenticationError | SecretProblem | AddressError):
            self.registered = False
            self.driver_key = None  # read the Secret again before the next attempt
        if not isinstance(exc, install.InstallTimeout):
            self._bmc_failed(exc)
        error_type = m.error_type(state, action if action is not None else m.PowerOn())
        if not self.registered and not isinstance(action, m.Transition):
            error_type = "RegistrationError"
        operational = "discovered" if isinstance(exc, SecretProblem) else "error"
        count = st.set_error(new, error_type, str(exc), operational)
        delay = m.backoff_seconds(count, self.ctx.settings.backoff_base, self.ctx.settings.backoff_cap)
        delay *= random.uniform(0.75, 1.0)
        self.retry_at = time.monotonic() + delay
        self.pending = None
        warn(body, reason=error_type, message=f"{exc} (attempt {count}; next try in {delay:.0f}s)")
        return delay

    def _bmc_failed(self, exc: Exception) -> None:
        reason = {
            "authentication": "AuthenticationFailed",
            "unreachable": "Unreachable",
            "certificate": "CertificateNotTrusted",
            "unsupported": "Unsupported",
        }.get(getattr(exc, "kind", ""), "CredentialsMissing" if isinstance(exc, SecretProblem) else "Error")
        if isinstance(exc, AddressError):
            reason = "InvalidAddress"
        self.bmc_condition = ("False", reason, str(exc))

    # -- observation -------------------------------------------------------------------------------
    def _annotations(self, meta: dict[str, Any]) -> dict[str, str]:
        """Live annotations minus those we removed and whose removal has not reached the watch yet."""
        live = dict(meta.get("annotations") or {})
        for key, value in list(self.removed_annotations.items()):
            if live.get(key) == value:
                live.pop(key)
            else:
                self.removed_annotations.pop(key)  # gone, or a new request with another value
        return live

    async def _ensure_driver(self, spec: dict[str, Any]) -> None:
        bmc = spec["bmc"]
        stale = time.monotonic() - self.credentials_read > self.ctx.settings.resync_interval
        key_base = (bmc["address"], bmc["credentialsName"], bool(bmc.get("disableCertificateVerification")))
        if self.driver is not None and self.driver_key and self.driver_key[:3] == key_base and not stale:
            return
        user, password, version = await self.ctx.kube.credentials(self.namespace, bmc["credentialsName"])
        self.credentials_read = time.monotonic()
        key = (*key_base, version)
        if key == self.driver_key and self.driver is not None:
            return
        await self.close()
        s = self.ctx.settings
        options = DriverOptions(
            verify_certificate=not bmc.get("disableCertificateVerification", False),
            redfish_auth=s.redfish_auth, ipmi_timeout=s.ipmi_timeout, ipmi_retries=s.ipmi_retries,
            redfish_timeout=s.redfish_timeout,
        )  # fmt: skip
        self.driver = connect(bmc["address"], Credentials(user, password), options)
        self.driver_key = key
        self.registered = False

    async def _poll(self, new: dict[str, Any]) -> None:
        assert self.driver is not None
        async with self.ctx.bmc_slots:
            powered = await self.driver.power_state()
        self._observed(new, powered)

    def _observed(self, new: dict[str, Any], powered: bool) -> None:
        s = self.ctx.settings
        jitter = 1 + random.uniform(-s.poll_jitter, s.poll_jitter)
        self.polled_at = time.monotonic()
        self.next_poll = self.polled_at + s.poll_interval * jitter
        if new.get("poweredOn") != powered:
            new["poweredOn"] = powered
            new["lastPowerCheck"] = st.now()
        if self.pending and self.pending.target == powered:
            self.pending = None
        protocol = {"ipmi": "IPMI", "redfish": "Redfish"}.get(self.driver.name if self.driver else "", "")
        self.bmc_condition = ("True", "Connected", f"the {protocol} BMC answers".replace("  ", " "))

    def _view(self, spec: dict[str, Any], annotations: dict[str, str], new: dict[str, Any]) -> m.View:
        prov = new.get("provisioning") or {}
        return m.View(
            state=st.state_of(new),
            step=prov.get("step"),
            online=bool(spec.get("online", False)),
            boot_source=spec.get("bootSource"),
            applied_boot_source=prov.get("bootSource"),
            install_boot_observed=bool(prov.get("installBootObserved")),
            inspection_enabled=spec.get("inspectionMode", "bmc") != "disabled",
            externally_provisioned=bool(spec.get("externallyProvisioned")),
            inspect_requested=INSPECT in annotations,
            reboot=reboot_mode(annotations.get(REBOOT)),
            registered=self.registered,
            powered_on=new.get("poweredOn"),
            reprovision=_unhonoured(annotations.get(REPROVISION), prov.get("reprovisionedFor")),
            **install.view_inputs(self.ctx, self.namespace, self.name, spec, prov, self.sync.boot),
        )

    # -- actions -----------------------------------------------------------------------------------
    async def _execute(
        self,
        action: m.Action,
        body: dict[str, Any],
        spec: dict[str, Any],
        annotations: dict[str, str],
        new: dict[str, Any],
    ) -> float:
        s = self.ctx.settings
        prov = new.setdefault("provisioning", {})
        if isinstance(action, m.Transition):
            before = prov.get("state")
            prov["state"] = action.to.value
            prov.pop("step", None)
            install.forget_attempts(prov)
            if action.clear_provisioning or action.to == m.State.AVAILABLE:
                prov.pop("bootSource", None)
                prov.pop("installBootObserved", None)
            if action.install_boot_observed is not None:
                prov["installBootObserved"] = action.install_boot_observed
            if action.reprovision_for is not None:
                prov["reprovisionedFor"] = action.reprovision_for
            info(body, reason=action.event.value, message=f"{before or 'new'} -> {action.to.value}")
            return 0.0
        if install.record(action, body, prov):
            return 0.0
        if isinstance(action, m.SetStep):
            prov["step"] = action.step
            return 0.0
        if isinstance(action, m.Wait) and action.watched:
            # A watch event wakes the host; until then only the power poll (or the timeout) is due.
            due = self.next_poll - time.monotonic()
            return max(0.5, min(due, action.recheck) if action.recheck is not None else due)
        if isinstance(action, m.Wait):
            return s.fast_poll
        if isinstance(action, m.Idle):
            return max(0.5, self.next_poll - time.monotonic())
        if isinstance(action, m.MarkInstallBootObserved):
            prov["installBootObserved"] = True
            info(
                body, reason="InstallBootObserved", message="the host powered on with its install boot source"
            )
            return 0.0
        if isinstance(action, m.FinishReboot):
            await self._remove_annotation(annotations, REBOOT)
            info(body, reason="Rebooted", message="host was powered off for the reboot request")
            return 0.0
        assert self.driver is not None
        async with self.ctx.bmc_slots:
            return await self._bmc_action(action, body, spec, annotations, new, prov)

    async def _bmc_action(
        self,
        action: m.Action,
        body: dict[str, Any],
        spec: dict[str, Any],
        annotations: dict[str, str],
        new: dict[str, Any],
        prov: dict[str, Any],
    ) -> float:
        driver = self.driver
        assert driver is not None
        uefi = spec.get("bootMode", "UEFI") != "legacy"
        if isinstance(action, m.Register):
            powered = await driver.power_state()
            self.registered = True
            assert self.driver_key is not None
            new["goodCredentials"] = {
                "name": spec["bmc"]["credentialsName"],
                "resourceVersion": self.driver_key[-1],
            }
            self._observed(new, powered)
            return 0.0
        if isinstance(action, m.Inspect):
            new["hardware"] = st.hardware(await driver.inventory())
            if st.state_of(new) == m.State.INSPECTING:
                prov["step"] = m.STEP_INVENTORY_READ
            if INSPECT in annotations:
                await self._remove_annotation(annotations, INSPECT)
            return 0.0
        if isinstance(action, m.PowerOn | m.PowerOff):
            return await self._power(action, body, new)
        if isinstance(action, m.ConfigureBoot):
            source = spec.get("bootSource") or {}
            if source.get("type") == "isocdrom" and source.get("via") == "virtualMedia":
                await driver.insert_virtual_media(await self.sync.virtual_media_url(source["isocdromRef"]))
            elif source.get("type") == "isocdrom":
                await self.sync.require_iscsi_export(source["isocdromRef"])
            await driver.set_boot_device(action.device, persistent=action.persistent, uefi=uefi)
            prov["bootSource"] = copy.deepcopy(source)
            prov["step"] = m.STEP_POWER_ON
            info(body, reason="BootConfigured", message=f"boot device {action.device.value}")
            return 0.0
        if isinstance(action, m.SwitchToLocalDisk):
            await driver.set_boot_device(BootDevice.DISK, persistent=True, uefi=uefi)
            prov["step"] = m.STEP_LOCAL_BOOT
            info(body, reason="LocalBoot", message="install boot seen; booting the local disk from now on")
            return 0.0
        if isinstance(action, m.Deprovision):
            applied = prov.get("bootSource") or {}
            if applied.get("via") == "virtualMedia" and applied.get("type") == "isocdrom":
                await driver.eject_virtual_media()
            await driver.set_boot_device(BootDevice.DISK, persistent=True, uefi=uefi)
            done = m.Transition(
                to=m.transition(m.State.DEPROVISIONING, m.Event.DEPROVISIONED), event=m.Event.DEPROVISIONED
            )
            return await self._execute(done, body, spec, annotations, new)
        raise AssertionError(f"unhandled action {action!r}")

    async def _power(
        self, action: m.PowerOn | m.PowerOff, body: dict[str, Any], new: dict[str, Any]
    ) -> float:
        """Send a power change unless one to the same target is still landing (then just poll)."""
        s = self.ctx.settings
        driver = self.driver
        assert driver is not None
        target = isinstance(action, m.PowerOn)
        hard = isinstance(action, m.PowerOff) and action.hard
        now = time.monotonic()
        pending = self.pending if self.pending and self.pending.target == target else None
        if pending:
            escalate = not target and not pending.hard and now - pending.first_issued > s.soft_off_timeout
            if escalate:
                hard = True
            elif now - pending.issued < s.power_timeout and (pending.hard or not hard):
                return s.fast_poll
        if time.monotonic() - self.polled_at > 1.0:
            self._observed(new, await driver.power_state())
        if new.get("poweredOn") == target:
            return 0.0
        if target:
            await driver.power_on()
        else:
            await driver.power_off(hard=hard)
        self.pending = PendingPower(target, hard, now, pending.first_issued if pending else now)
        verb = "on" if target else ("off (hard)" if hard else "off (soft)")
        info(body, reason="PowerOn" if target else "PowerOff", message=f"power {verb}: {action.reason}")
        return s.fast_poll

    async def _remove_annotation(self, annotations: dict[str, str], key: str) -> None:
        if key in annotations:
            self.removed_annotations[key] = annotations[key]
        await self.ctx.kube.patch_annotations(self.namespace, self.name, {key: None})

    async def _write(self, old: dict[str, Any], new: dict[str, Any]) -> None:
        patch = st.merge_patch(old, new)
        if not patch:
            self.status = new
            return
        patch["lastUpdated"] = st.now()
        new["lastUpdated"] = patch["lastUpdated"]
        await self.ctx.kube.patch_status(self.namespace, self.name, patch)
        self.status = new

    async def close(self) -> None:
        if self.driver is not None:
            await self.driver.close()
        self.driver = None
        self.driver_key = None
        self.registered = False
