"""The Redfish driver against sushy-tools' fake driver (plain HTTP with basic auth, and HTTPS).

sushy's fake systems apply power changes 1-11 s after the request: every check polls.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.bmc import FileServer, RedfishSystem, SushyEmulator, free_tcp_port
from tests.support.wait import wait_for
from trellis.operators.baremetalhost.bmc import (
    AuthenticationError,
    BootDevice,
    CertificateError,
    Credentials,
    DriverOptions,
    ProtocolError,
    UnreachableError,
    connect,
)

USERS = {"root": "calvin"}
GOOD = Credentials("root", "calvin")


@pytest.fixture(scope="module")
def sushy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SushyEmulator]:
    systems = [
        RedfishSystem("rf0", nics=[{"mac": "52:54:00:aa:00:01", "ip": "10.0.0.10"}]),
        RedfishSystem("rf1"),
    ]
    with SushyEmulator(Path(tmp_path_factory.mktemp("sushy")), systems, users=USERS) as emulator:
        yield emulator


@pytest.fixture(scope="module")
def sushy_tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SushyEmulator]:
    with SushyEmulator(
        Path(tmp_path_factory.mktemp("sushy-tls")), [RedfishSystem("only")], tls=True
    ) as emulator:
        yield emulator


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def test_power_on_off_lands_eventually(sushy: SushyEmulator) -> None:
    address = sushy.address("rf0")

    async def power(action: str) -> None:
        bmc = connect(address, GOOD)
        try:
            if action == "on":
                await bmc.power_on()
            else:
                await bmc.power_off(hard=action == "hard-off")
        finally:
            await bmc.close()

    async def state() -> bool:
        bmc = connect(address, GOOD)
        try:
            return await bmc.power_state()
        finally:
            await bmc.close()

    run(power("on"))
    wait_for(lambda: run(state()), timeout=30, interval=0.5, what="rf0 on")
    assert sushy.power("rf0") == "On"
    run(power("hard-off"))
    wait_for(lambda: not run(state()), timeout=30, interval=0.5, what="rf0 off")


def test_boot_override_and_inventory(sushy: SushyEmulator) -> None:
    async def scenario():  # type: ignore[no-untyped-def]
        bmc = connect(sushy.address("rf0"), GOOD)
        try:
            await bmc.set_boot_device(BootDevice.PXE, persistent=True, uefi=True)
            override = await bmc.boot_override()
            inventory = await bmc.inventory()
            return override, inventory
        finally:
            await bmc.close()

    override, inventory = run(scenario())
    assert override.device == BootDevice.PXE and override.persistent
    assert sushy.system("rf0")["Boot"]["BootSourceOverrideTarget"] == "Pxe"
    assert inventory.manufacturer == "Sushy Emulator"
    assert inventory.system_uuid == sushy.systems["rf0"].uuid
    assert [n.mac for n in inventory.nics] == ["52:54:00:aa:00:01"]


def test_virtual_media_insert_and_eject(sushy: SushyEmulator, tmp_path: Path) -> None:
    (tmp_path / "install.iso").write_bytes(b"\0" * 4096)
    with FileServer(tmp_path) as files:
        url = files.url("install.iso")

        async def scenario(insert: bool) -> None:
            bmc = connect(sushy.address("rf1"), GOOD)
            try:
                if insert:
                    await bmc.insert_virtual_media(url)
                    await bmc.insert_virtual_media(url)  # idempotent: already inserted
                else:
                    await bmc.eject_virtual_media()
            finally:
                await bmc.close()

        run(scenario(True))
        cd = sushy.virtual_cd("rf1")
        assert cd["Inserted"] is True and cd["Image"] == url
        run(scenario(False))
        assert sushy.virtual_cd("rf1")["Inserted"] is False


def test_wrong_password_is_an_authentication_error(sushy: SushyEmulator) -> None:
    with pytest.raises(AuthenticationError):
        run(connect(sushy.address("rf0"), Credentials("root", "wrong")).power_state())


def test_address_without_system_needs_exactly_one_system(
    sushy: SushyEmulator, sushy_tls: SushyEmulator
) -> None:
    with pytest.raises(ProtocolError, match="2 systems"):
        run(connect(f"redfish+http://127.0.0.1:{sushy.port}", GOOD).power_state())
    options = DriverOptions(ca_file=str(sushy_tls.cert))
    bmc = connect(f"redfish://127.0.0.1:{sushy_tls.port}", Credentials("any", "any"), options)
    assert run(bmc.power_state()) is False


def test_certificates_are_verified_by_default(sushy_tls: SushyEmulator) -> None:
    address = sushy_tls.address("only")
    with pytest.raises(CertificateError):
        run(connect(address, Credentials("any", "any")).power_state())
    insecure = DriverOptions(verify_certificate=False)
    assert run(connect(address, Credentials("any", "any"), insecure).power_state()) is False
    trusted = DriverOptions(ca_file=str(sushy_tls.cert))
    assert run(connect(address, Credentials("any", "any"), trusted).power_state()) is False


def test_nothing_listening_is_unreachable() -> None:
    port = free_tcp_port()
    with pytest.raises(UnreachableError):
        run(connect(f"redfish+http://127.0.0.1:{port}/redfish/v1/Systems/x", GOOD).power_state())
