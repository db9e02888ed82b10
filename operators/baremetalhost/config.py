"""Operator tunables, read once from the environment (the chart sets them from values.yaml)."""

from __future__ import annotations

import os
from dataclasses import dataclass

PREFIX = "TRELLIS_BMH_"


def _float(name: str, default: float) -> float:
    raw = os.environ.get(PREFIX + name)
    return float(raw) if raw not in (None, "") else default


@dataclass(frozen=True)
class Settings:
    poll_interval: float = 60.0  # seconds between power polls of a converged host
    poll_jitter: float = 0.2  # +/- fraction of the interval, so hosts do not poll in lockstep
    fast_poll: float = 2.0  # while a power change or a step is landing
    backoff_base: float = 10.0  # first retry after an error; doubles per consecutive error
    backoff_cap: float = 600.0
    power_timeout: float = 60.0  # a power change not observed by then is sent again
    soft_off_timeout: float = 120.0  # a soft power-off not done by then becomes a hard one
    delete_power_off_attempts: int = 3
    resync_interval: float = 300.0  # full reservation / credentials re-check
    max_concurrent_bmc: int = 32  # BMC operations in flight across all hosts
    ipmi_timeout: float = 2.0
    ipmi_retries: int = 1
    redfish_timeout: float = 15.0
    redfish_auth: str = "auto"

    @classmethod
    def from_env(cls) -> Settings:
        d = cls()
        return cls(
            poll_interval=_float("POLL_INTERVAL", d.poll_interval),
            poll_jitter=_float("POLL_JITTER", d.poll_jitter),
            fast_poll=_float("FAST_POLL", d.fast_poll),
            backoff_base=_float("BACKOFF_BASE", d.backoff_base),
            backoff_cap=_float("BACKOFF_CAP", d.backoff_cap),
            power_timeout=_float("POWER_TIMEOUT", d.power_timeout),
            soft_off_timeout=_float("SOFT_OFF_TIMEOUT", d.soft_off_timeout),
            delete_power_off_attempts=int(_float("DELETE_POWER_OFF_ATTEMPTS", d.delete_power_off_attempts)),
            resync_interval=_float("RESYNC_INTERVAL", d.resync_interval),
            max_concurrent_bmc=int(_float("MAX_CONCURRENT_BMC", d.max_concurrent_bmc)),
            ipmi_timeout=_float("IPMI_TIMEOUT", d.ipmi_timeout),
            ipmi_retries=int(_float("IPMI_RETRIES", d.ipmi_retries)),
            redfish_timeout=_float("REDFISH_TIMEOUT", d.redfish_timeout),
            redfish_auth=os.environ.get(PREFIX + "REDFISH_AUTH", d.redfish_auth),
        )
