"""The BMC side of a racked machine: credentials, reachability and counters, and the IPMI backend."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from rack.ipmi import BootFlags, Identity, SystemBackend
from rack.machine import Machine


@dataclass
class BmcSpec:
    protocol: str = "ipmi"  # ipmi or redfish
    port: int = 0
    username: str = "admin"
    password: str = "password"
    tls_cert: str | None = None  # redfish only: serve HTTPS with this certificate and key
    tls_key: str | None = None

    def __post_init__(self) -> None:
        if self.protocol not in ("ipmi", "redfish"):
            raise ValueError(f"bmc protocol must be ipmi or redfish, not {self.protocol!r}")
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ValueError("bmc tls_cert and tls_key go together")


@dataclass
class BmcState:
    """What tests change (unplugged) and read (request counters) through the control endpoint."""

    unplugged: bool = False
    commands: int = 0
    sessions: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def snapshot(self) -> dict[str, Any]:
        return {"unplugged": self.unplugged, "commands": self.commands, "sessions": self.sessions}


@dataclass
class Racked:
    machine: Machine
    bmc: BmcSpec
    state: BmcState = field(default_factory=BmcState)


class MachineBackend(SystemBackend):
    """IPMI chassis commands applied to a QEMU machine."""

    def __init__(self, racked: Racked) -> None:
        self.racked = racked
        self.machine = racked.machine

    def identity(self) -> Identity:
        spec = self.machine.spec
        return Identity(spec.name, spec.serial, self.machine.system_uuid, spec.manufacturer, spec.product)

    def unplugged(self) -> bool:
        return self.racked.state.unplugged

    def count(self, what: str) -> None:
        with self.racked.state.lock:
            setattr(self.racked.state, what, getattr(self.racked.state, what) + 1)

    def power(self) -> str:
        return self.machine.power

    def power_on(self) -> None:
        self.machine.power_on()

    def power_off(self) -> None:
        self.machine.power_off(reason="power off (IPMI)")

    def power_soft(self) -> None:
        self.machine.soft_off()

    def power_reset(self) -> bool:
        return self.machine.reset(cause="reset (IPMI)")

    def power_cycle(self) -> bool:
        return self.machine.reset(cause="power cycle (IPMI)")

    def boot_flags(self) -> BootFlags:
        override = self.machine.boot_override()
        if override.device is None:
            return BootFlags()
        return BootFlags(override.device, override.persistent, override.uefi, valid=True)

    def set_boot_flags(self, flags: BootFlags) -> None:
        device = flags.device if flags.valid and flags.device != "none" else None
        self.machine.set_boot_override(device, flags.persistent, flags.efi)
