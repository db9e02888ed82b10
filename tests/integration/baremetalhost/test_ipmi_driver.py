"""The IPMI driver (ipmitool) against the pyghmi-based BMC emulator, cross-checked with ipmitool itself.

No control plane needed: these exercise the BMC boundary only.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.bmc import EmulatedSystem, IpmiEmulator, free_udp_ports
from trellis.operators.baremetalhost.bmc import (
    AuthenticationError,
    BootDevice,
    Credentials,
    UnreachableError,
    UnsupportedError,
    connect,
)


@pytest.fixture(scope="module")
def ipmi(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IpmiEmulator]:
    systems = [EmulatedSystem(f"node{i}", serial=f"SER{i:03d}") for i in range(4)]
    with IpmiEmulator(Path(tmp_path_factory.mktemp("ipmi")), systems) as emulator:
        yield emulator


def driver(ipmi: IpmiEmulator, name: str, password: str = "password", user: str = "admin"):  # type: ignore[no-untyped-def]
    return connect(ipmi.address(name), Credentials(user, password))


def test_emulator_answers_real_ipmitool(ipmi: IpmiEmulator) -> None:
    assert "Chassis Power is off" in ipmi.ipmitool("node0", "power", "status").stdout
    assert ipmi.ipmitool("node0", "power", "on").returncode == 0
    assert "Chassis Power is on" in ipmi.ipmitool("node0", "power", "status").stdout
    assert ipmi.ipmitool("node0", "chassis", "bootdev", "pxe", "options=persistent,efiboot").returncode == 0
    flags = ipmi.ipmitool("node0", "chassis", "bootparam", "get", "5").stdout
    assert "Force PXE" in flags and "all future boots" in flags and "BIOS EFI boot" in flags
    fru = ipmi.ipmitool("node0", "fru", "print", "0").stdout
    assert "Product Serial        : SER000" in fru
    assert ipmi.system("node0")["boot_device"] == "pxe"
    bad = ipmi.ipmitool("node0", "-v", "power", "status", password="wrong")
    assert bad.returncode != 0 and "RAKP 2 HMAC is invalid" in bad.stderr
    ipmi.ipmitool("node0", "power", "off")
    assert ipmi.system("node0")["power"] == "off"


def test_power_cycle_through_driver(ipmi: IpmiEmulator) -> None:
    async def scenario() -> list[bool]:
        bmc = driver(ipmi, "node1")
        seen = [await bmc.power_state()]
        await bmc.power_on()
        seen.append(await bmc.power_state())
        await bmc.reset(hard=True)
        seen.append(await bmc.power_state())
        await bmc.power_off(hard=False)
        seen.append(await bmc.power_state())
        return seen

    assert asyncio.run(scenario()) == [False, True, True, False]
    assert len(ipmi.system("node1")["boots"]) == 2  # power on + reset


def test_one_time_boot_override_is_consumed_by_the_next_boot(ipmi: IpmiEmulator) -> None:
    async def scenario() -> tuple[object, object, object]:
        bmc = driver(ipmi, "node2")
        await bmc.set_boot_device(BootDevice.PXE, persistent=False, uefi=True)
        before = await bmc.boot_override()
        await bmc.power_on()
        after = await bmc.boot_override()
        await bmc.set_boot_device(BootDevice.DISK, persistent=True, uefi=False)
        persistent = await bmc.boot_override()
        await bmc.power_off(hard=True)
        return before, after, persistent

    before, after, persistent = asyncio.run(scenario())
    assert (before.device, before.persistent, before.uefi) == (BootDevice.PXE, False, True)  # type: ignore[attr-defined]
    assert after.device is None  # type: ignore[attr-defined]
    assert (persistent.device, persistent.persistent, persistent.uefi) == (BootDevice.DISK, True, False)  # type: ignore[attr-defined]
    assert ipmi.system("node2")["boots"][-1]["device"] == "pxe"


def test_inventory_from_fru_and_guid(ipmi: IpmiEmulator) -> None:
    inventory = asyncio.run(driver(ipmi, "node3").inventory())
    assert inventory.serial_number == "SER003"
    assert inventory.manufacturer == "Trellis Labs"
    assert inventory.model == "Emulated Server"
    assert inventory.system_uuid == ipmi.system("node3")["uuid"]


def test_wrong_password_and_unknown_user_are_authentication_errors(ipmi: IpmiEmulator) -> None:
    with pytest.raises(AuthenticationError):
        asyncio.run(driver(ipmi, "node0", password="wrong").power_state())
    with pytest.raises(AuthenticationError):
        asyncio.run(driver(ipmi, "node0", user="intruder").power_state())


def test_silent_bmc_is_unreachable(ipmi: IpmiEmulator) -> None:
    ipmi.set("node3", unplugged=True)
    try:
        with pytest.raises(UnreachableError):
            asyncio.run(driver(ipmi, "node3").power_state())
    finally:
        ipmi.set("node3", unplugged=False)
    (port,) = free_udp_ports(1)
    with pytest.raises(UnreachableError):
        asyncio.run(connect(f"ipmi://127.0.0.1:{port}", Credentials("admin", "password")).power_state())


def test_ipmi_has_no_http_boot_or_virtual_media(ipmi: IpmiEmulator) -> None:
    bmc = driver(ipmi, "node0")
    with pytest.raises(UnsupportedError):
        asyncio.run(bmc.set_boot_device(BootDevice.UEFI_HTTP, persistent=False))
    with pytest.raises(UnsupportedError):
        asyncio.run(bmc.insert_virtual_media("http://127.0.0.1/x.iso"))


def test_password_never_on_the_command_line(ipmi: IpmiEmulator) -> None:
    bmc = connect(ipmi.address("node0"), Credentials("admin", "s3cret-value"))
    argv = bmc._argv("power", "status")  # type: ignore[attr-defined]
    assert "s3cret-value" not in " ".join(argv)
    assert "s3cret-value" not in repr(Credentials("admin", "s3cret-value"))
