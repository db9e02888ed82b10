"""IPMI 2.0 LAN+ (RMCP+) driver built on the ipmitool CLI.

Why ipmitool rather than an in-process library: every operation runs in its own process that the
event loop awaits (no worker threads, no shared session state that a wedged BMC can corrupt), it
is killed on timeout, it negotiates cipher suites and vendor quirks the way administrators'
own troubleshooting does, and it is what Ironic relies on. The password reaches ipmitool through
the IPMI_PASSWORD environment variable (``-E``), never through its command line. The cost is one
RMCP+ session per call; calls that belong together are batched into one session with ``exec``.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil

from trellis.operators.baremetalhost.bmc.address import BMCAddress
from trellis.operators.baremetalhost.bmc.base import (
    AuthenticationError,
    BMCDriver,
    BootDevice,
    BootOverride,
    Credentials,
    Inventory,
    ProtocolError,
    UnreachableError,
    UnsupportedError,
)

_BOOT_ARGS = {
    BootDevice.PXE: "pxe",
    BootDevice.DISK: "disk",
    BootDevice.CDROM: "cdrom",
    BootDevice.BIOS: "bios",
}
_SELECTORS = {
    "Force PXE": BootDevice.PXE,
    "Force Boot from default Hard-Drive": BootDevice.DISK,
    "Force Boot from default Hard-Drive, request Safe-Mode": BootDevice.DISK,
    "Force Boot from CD/DVD": BootDevice.CDROM,
    "Force Boot into BIOS Setup": BootDevice.BIOS,
}
# ipmitool -v messages that mean the BMC answered but refused the credentials.
_AUTH_MARKERS = (
    "RAKP 2 HMAC is invalid",
    "unauthorized name",
    "Unauthorized name",
    "invalid user name",
    "Insufficient privilege",
    "Unauthorized role",
    "Invalid role",
)
_UNREACHABLE_MARKERS = (
    "Get Auth Capabilities error",
    "No response from remote controller",
    "Error issuing Get Channel Authentication Capabilities",
    "Unable to establish IPMI v2",
    "Address lookup",
)
_NOT_IN_STATE = "not supported in present state"


class IpmitoolDriver(BMCDriver):
    name = "ipmi"

    def __init__(
        self,
        address: BMCAddress,
        credentials: Credentials,
        timeout: float = 2.0,
        retries: int = 1,
        binary: str | None = None,
    ) -> None:
        self._address = address
        self._credentials = credentials
        self._timeout = timeout
        self._retries = retries
        self._binary = binary or shutil.which("ipmitool") or "ipmitool"

    def _argv(self, *command: str) -> list[str]:
        return [
            self._binary, "-v", "-I", "lanplus",
            "-H", self._address.host, "-p", str(self._address.port),
            "-U", self._credentials.username, "-E",
            "-L", self._address.privilege,
            "-N", str(max(1, round(self._timeout))), "-R", str(self._retries),
            *command,
        ]  # fmt: skip

    async def run(self, *command: str, stdin: str | None = None) -> str:
        """Run one ipmitool command (or ``exec /dev/stdin`` with a batch); return its stdout."""
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "IPMI_PASSWORD": self._credentials.password}
        try:
            proc = await asyncio.create_subprocess_exec(
                *self._argv(*command),
                stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=env,
            )
        except FileNotFoundError as exc:
            raise UnsupportedError("ipmitool is not installed") from exc
        # ipmitool's own timeout is per packet; bound the whole exchange as well.
        limit = self._timeout * (self._retries + 1) * 8 + 10
        try:
            out, err = await asyncio.wait_for(proc.communicate(stdin.encode() if stdin else None), limit)
        except TimeoutError as exc:
            proc.kill()
            await proc.wait()
            raise UnreachableError(f"ipmitool did not finish within {limit:.0f}s") from exc
        stdout, stderr = out.decode(errors="replace"), err.decode(errors="replace")
        if proc.returncode != 0:
            raise classify_failure(stderr)
        return stdout

    async def power_state(self) -> bool:
        out = await self.run("power", "status")
        match = re.search(r"Chassis Power is (on|off)", out)
        if not match:
            raise ProtocolError(f"unexpected power status output: {out.strip()[:200]!r}")
        return match.group(1) == "on"

    async def power_on(self) -> None:
        await self.run("power", "on")

    async def power_off(self, hard: bool) -> None:
        await self.run("power", "off" if hard else "soft")

    async def reset(self, hard: bool) -> None:
        # IPMI has no graceful restart: soft is a power cycle (off, then on), hard the reset line.
        await self.run("power", "reset" if hard else "cycle")

    async def set_boot_device(self, device: BootDevice, persistent: bool, uefi: bool = True) -> None:
        if device not in _BOOT_ARGS:
            raise UnsupportedError(f"IPMI cannot select boot device {device.value}")
        options = [o for o, on in (("persistent", persistent), ("efiboot", uefi)) if on]
        args = ["chassis", "bootdev", _BOOT_ARGS[device]]
        if options:
            args.append("options=" + ",".join(options))
        await self.run(*args)

    async def boot_override(self) -> BootOverride:
        return parse_boot_flags(await self.run("chassis", "bootparam", "get", "5"))

    async def inventory(self) -> Inventory:
        # One session for all three reads.
        out = await self.run("exec", "/dev/stdin", stdin="mc info\nmc guid\nfru print 0\n")
        return parse_inventory(out)


def classify_failure(stderr: str) -> Exception:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    last = next((line for line in reversed(lines) if not line.startswith("Loading IANA")), "ipmitool failed")
    if any(marker in stderr for marker in _AUTH_MARKERS):
        return AuthenticationError(f"BMC refused the credentials ({_first_marker(stderr, _AUTH_MARKERS)})")
    if _NOT_IN_STATE in stderr:
        return ProtocolError(f"BMC refused the command in the current power state: {last}")
    if any(marker in stderr for marker in _UNREACHABLE_MARKERS):
        return UnreachableError(f"no answer from the BMC: {last}")
    return ProtocolError(last)


def _first_marker(text: str, markers: tuple[str, ...]) -> str:
    return next(m for m in markers if m in text)


def parse_boot_flags(out: str) -> BootOverride:
    if "Boot Flag Valid" not in out:
        return BootOverride(None)
    selector = re.search(r"Boot Device Selector\s*:\s*(.+)", out)
    device = _SELECTORS.get(selector.group(1).strip()) if selector else None
    return BootOverride(
        device,
        persistent="Options apply to all future boots" in out,
        uefi="BIOS EFI boot" in out,
    )


def _field(out: str, label: str, indent: str) -> str | None:
    """One "label : value" line; FRU lines are indented by one space, mc info lines are not."""
    match = re.search(rf"^{indent}{re.escape(label)}\s*:\s*(.*?)\s*$", out, re.MULTILINE)
    value = match.group(1) if match else None
    if not value or value in ("Unspecified", "Not Available") or value.startswith("Unknown"):
        return None
    return value


def parse_inventory(out: str) -> Inventory:
    """Inventory from ``mc info``, ``mc guid`` and ``fru print 0`` output (FRU wins where both exist)."""
    return Inventory(
        manufacturer=_field(out, "Product Manufacturer", " ")
        or _field(out, "Board Mfg", " ")
        or _field(out, "Manufacturer Name", ""),
        model=_field(out, "Product Name", " ") or _field(out, "Board Product", " "),
        serial_number=_field(out, "Product Serial", " ") or _field(out, "Board Serial", " "),
        system_uuid=_field(out, "System GUID", ""),
        nics=(),
    )
