"""Deleting a host: power it off first (bounded retries), then remove its reservations.

The finalizer is released afterwards even when the BMC never answered: a dead BMC must not make
a host undeletable (the Events say that the power-off was given up).
"""

from __future__ import annotations

import asyncio
import copy
import time
from typing import Any

from trellis.operators.baremetalhost import machine as m
from trellis.operators.baremetalhost import status as st
from trellis.operators.baremetalhost.bmc import AddressError, BMCError
from trellis.operators.baremetalhost.context import info, warn
from trellis.operators.baremetalhost.host import DETACHED, HostRunner
from trellis.operators.baremetalhost.kube import SecretProblem


async def _power_off(runner: HostRunner, spec: dict[str, Any]) -> None:
    """Hard power-off, confirmed by the BMC within power_timeout."""
    s = runner.ctx.settings
    await runner._ensure_driver(spec)
    driver = runner.driver
    assert driver is not None
    async with runner.ctx.bmc_slots:
        if not await driver.power_state():
            return
        await driver.power_off(hard=True)
    deadline = time.monotonic() + s.power_timeout
    while time.monotonic() < deadline:
        await asyncio.sleep(s.fast_poll)
        async with runner.ctx.bmc_slots:
            if not await driver.power_state():
                return
    raise BMCError(f"the BMC still reports power on {s.power_timeout:.0f}s after a hard power-off")


async def delete_host(runner: HostRunner, body: dict[str, Any]) -> None:
    ctx, s = runner.ctx, runner.ctx.settings
    spec, meta = body["spec"], body["metadata"]
    old = runner.status if runner.status is not None else copy.deepcopy(body.get("status") or {})
    new = copy.deepcopy(old)
    prov = new.setdefault("provisioning", {})
    state = st.state_of(old)
    detached = DETACHED in (meta.get("annotations") or {})
    ever_registered = bool(old.get("goodCredentials"))
    if not detached and ever_registered and spec.get("bmc"):
        prov["state"] = m.transition(state, m.Event.DELETE_REQUESTED).value
        await runner._write(old, new)
        old, new = new, copy.deepcopy(new)
        for attempt in range(1, s.delete_power_off_attempts + 1):
            try:
                await _power_off(runner, spec)
                new["poweredOn"] = False
                info(body, reason="PoweredOffForDelete", message="host is off; releasing it")
                break
            except (BMCError, SecretProblem, AddressError) as exc:
                warn(
                    body,
                    reason="PowerManagementError",
                    message=f"power-off before delete, attempt {attempt}: {exc}",
                )
                if attempt < s.delete_power_off_attempts:
                    await asyncio.sleep(min(s.backoff_cap, s.fast_poll * 2**attempt))
        else:
            warn(body, reason="PowerOffGivenUp", message="deleting without a confirmed power-off")
        prov = new.setdefault("provisioning", {})
        prov["state"] = m.transition(m.State.POWERING_OFF_BEFORE_DELETE, m.Event.POWERED_OFF_FOR_DELETE).value
    else:
        prov["state"] = m.State.DELETING.value
    await runner._write(old, new)
    for obj in await ctx.kube.reservations_of(runner.namespace, runner.name, []):
        refs = obj["metadata"].get("ownerReferences") or []
        if any(ref.get("uid") == runner.uid for ref in refs):
            await ctx.kube.delete_reservation(
                runner.namespace, obj["metadata"]["name"], obj["metadata"].get("uid")
            )
    await runner.close()
