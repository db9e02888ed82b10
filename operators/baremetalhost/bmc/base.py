"""The one interface every BMC driver implements, and the errors drivers raise.

Drivers are async and keep no state that matters across calls except connection reuse: the
state machine above them decides what to do and records progress in the host's status.
"""

from __future__ import annotations

import abc
import enum
from dataclasses import dataclass, field


class BootDevice(enum.StrEnum):
    PXE = "pxe"
    DISK = "disk"
    CDROM = "cdrom"
    UEFI_HTTP = "uefihttp"
    BIOS = "bios"


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str = field(repr=False)

    def __repr__(self) -> str:  # never let a password reach a log line through repr()
        return f"Credentials(username={self.username!r}, password=<hidden>)"


@dataclass(frozen=True)
class BootOverride:
    """What the BMC will boot next: None when no override is set."""

    device: BootDevice | None
    persistent: bool = False
    uefi: bool = False


@dataclass(frozen=True)
class NIC:
    name: str
    mac: str


@dataclass(frozen=True)
class Inventory:
    manufacturer: str | None = None
    model: str | None = None
    serial_number: str | None = None
    system_uuid: str | None = None
    bios_version: str | None = None
    cpu_count: int | None = None
    cpu_model: str | None = None
    memory_mib: int | None = None
    nics: tuple[NIC, ...] = ()


class BMCError(Exception):
    """Base of driver errors. ``kind`` classifies the failure for status and backoff."""

    kind = "protocol"


class AuthenticationError(BMCError):
    kind = "authentication"


class UnreachableError(BMCError):
    kind = "unreachable"


class CertificateError(BMCError):
    kind = "certificate"


class UnsupportedError(BMCError):
    kind = "unsupported"


class ProtocolError(BMCError):
    kind = "protocol"


class BMCDriver(abc.ABC):
    """Out-of-band control of one server."""

    name: str = "bmc"
    supports_virtual_media: bool = False

    @abc.abstractmethod
    async def power_state(self) -> bool:
        """True when the server is powered on."""

    @abc.abstractmethod
    async def power_on(self) -> None: ...

    @abc.abstractmethod
    async def power_off(self, hard: bool) -> None:
        """Soft: ask the OS to shut down (ACPI). Hard: cut power."""

    @abc.abstractmethod
    async def reset(self, hard: bool) -> None:
        """Restart a running server: soft = graceful restart, hard = reset button."""

    @abc.abstractmethod
    async def set_boot_device(self, device: BootDevice, persistent: bool, uefi: bool = True) -> None: ...

    @abc.abstractmethod
    async def boot_override(self) -> BootOverride: ...

    @abc.abstractmethod
    async def inventory(self) -> Inventory: ...

    async def insert_virtual_media(self, url: str) -> None:
        raise UnsupportedError(f"{self.name} has no virtual media")

    async def eject_virtual_media(self) -> None:
        raise UnsupportedError(f"{self.name} has no virtual media")

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections (sessions, sockets)."""
