"""The QEMU rack (hack/rack): real QEMU (TCG) behind our IPMI and Redfish BMCs, driven by ipmitool
and the operator's own BMC drivers. Machines boot only as far as their firmware: enough to see
which device each boot used (SeaBIOS and iPXE print to the serial log) without an OS.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.bmc import FileServer, _http_json, free_tcp_port, free_udp_ports, self_signed_certificate
from tests.support.kube import REPO
from tests.support.wait import wait_for
from trellis.operators.baremetalhost.bmc import (
    AuthenticationError,
    BMCDriver,
    BootDevice,
    Credentials,
    DriverOptions,
    UnreachableError,
    connect,
)

pytestmark = pytest.mark.root

IPMI_CREDS = Credentials("admin", "ipmi-secret")
RF_CREDS = Credentials("root", "calvin")
BOOT_DEADLINE = 90  # seconds for firmware output under TCG on a loaded 2-core machine
ENV = dict(os.environ, PYTHONPATH=f"{REPO / 'hack'}:{REPO}")


class RackProcess:
    def __init__(self, workdir: Path, netns: str) -> None:
        self.workdir = workdir
        self.netns = netns
        self.control_port = free_tcp_port()
        self.ipmi_port = free_udp_ports(1)[0]
        self.redfish_port = free_tcp_port()
        self.cert, key = self_signed_certificate(workdir)
        self.uuids = {"vm-ipmi": str(uuid.uuid4()), "vm-rf": str(uuid.uuid4())}
        self.config = {
            "network": {"netns": netns, "bridge": "rackbr0", "address": "10.231.0.1/24"},
            "machines": [
                {
                    "name": "vm-ipmi", "mac": "52:54:00:5a:00:01", "serial": "SN-RACK-1",
                    "uuid": self.uuids["vm-ipmi"], "disk_size": "64M",
                    "bmc": {"protocol": "ipmi", "port": self.ipmi_port,
                            "username": IPMI_CREDS.username, "password": IPMI_CREDS.password},
                },
                {
                    "name": "vm-rf", "mac": "52:54:00:5a:00:02", "serial": "SN-RACK-2",
                    "uuid": self.uuids["vm-rf"], "disk_size": "64M",
                    "bmc": {"protocol": "redfish", "port": self.redfish_port,
                            "username": RF_CREDS.username, "password": RF_CREDS.password,
                            "tls_cert": str(self.cert), "tls_key": str(key)},
                },
            ],
        }  # fmt: skip
        (workdir / "rack.json").write_text(json.dumps(self.config))
        self.log = workdir / "rack.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        cmd = [
            sys.executable, "-m", "rack", "serve", "--config", str(self.workdir / "rack.json"),
            "--state-dir", str(self.workdir / "state"), "--control-port", str(self.control_port),
        ]  # fmt: skip
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(cmd, cwd=REPO, env=ENV, stdout=log, stderr=subprocess.STDOUT)

        def ready() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"rack exited:\n{self.log.read_text()[-3000:]}")
            try:
                return bool(self.machines())
            except OSError:
                return False

        wait_for(ready, timeout=30, what="rack control endpoint")

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        rc = self.proc.returncode
        self.proc = None
        return rc

    def machines(self) -> dict[str, Any]:
        result: dict[str, Any] = _http_json(f"http://127.0.0.1:{self.control_port}/machines")
        return result

    def machine(self, name: str) -> dict[str, Any]:
        return self.machines()[name]

    def post(self, name: str, **body: Any) -> dict[str, Any]:
        result: dict[str, Any] = _http_json(f"http://127.0.0.1:{self.control_port}/machines/{name}", body)
        return result

    def block(self, name: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = _http_json(
            f"http://127.0.0.1:{self.control_port}/machines/{name}/block"
        )
        return result

    def serial_since(self, name: str, boot: dict[str, Any]) -> str:
        path = Path(self.machine(name)["serial_log"])
        with open(path, "rb") as f:
            f.seek(boot["serial_offset"])
            return f.read().decode(errors="replace")

    def ipmitool(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = dict(os.environ, IPMI_PASSWORD=IPMI_CREDS.password)
        cmd = ["ipmitool", "-I", "lanplus", "-H", "127.0.0.1", "-p", str(self.ipmi_port), "-U", "admin", "-E"]
        return subprocess.run([*cmd, *args], capture_output=True, text=True, env=env, timeout=60, check=False)

    def ipmi_address(self) -> str:
        return f"ipmi://127.0.0.1:{self.ipmi_port}"

    def redfish(self, credentials: Credentials) -> BMCDriver:
        return connect(self.redfish_address(), credentials, DriverOptions(ca_file=str(self.cert)))

    def redfish_address(self) -> str:
        return f"redfish+https://127.0.0.1:{self.redfish_port}/redfish/v1/Systems/{self.uuids['vm-rf']}"


def _pid_gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] == "Z"
    except OSError:
        return True


def _wait_booted(rack: RackProcess, name: str, count: int) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        m = rack.machine(name)
        return m["boots"][count - 1] if len(m["boots"]) >= count and m["pid"] else None

    return wait_for(probe, timeout=30, what=f"boot #{count} of {name}")


def _wait_serial(rack: RackProcess, name: str, boot: dict[str, Any], *texts: str) -> str:
    return wait_for(
        lambda: (lambda s: s if all(t in s for t in texts) else None)(rack.serial_since(name, boot)),
        timeout=BOOT_DEADLINE,
        interval=0.5,
        what=f"{texts} on the serial console of {name}",
    )


@pytest.fixture(scope="module")
def rack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RackProcess]:
    if os.geteuid() != 0:
        pytest.skip("the rack needs root (network namespaces, tap devices)")
    check = subprocess.run(
        [sys.executable, "-m", "rack", "check"],
        cwd=REPO,
        env=ENV,
        capture_output=True,
        text=True,
        check=False,
    )
    if check.returncode != 0:
        pytest.skip(f"QEMU cannot run here: {check.stdout.strip() or check.stderr.strip()}")
    netns = f"trrack{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", netns], check=True)
    process = RackProcess(Path(tmp_path_factory.mktemp("rack")), netns)
    try:
        process.start()
        yield process
    finally:
        process.stop()
        subprocess.run(["ip", "netns", "del", netns], check=False)


def test_ipmitool_power_on_starts_qemu_in_the_namespace(rack: RackProcess) -> None:
    assert "Chassis Power is off" in rack.ipmitool("power", "status").stdout
    assert rack.machine("vm-ipmi")["pid"] is None
    assert rack.ipmitool("power", "on").returncode == 0
    boot = _wait_booted(rack, "vm-ipmi", 1)
    pid = boot["pid"]
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    assert Path(cmdline[0].decode()).name == "qemu-system-x86_64"
    assert b"tcg" in cmdline and b"-no-reboot" in cmdline
    assert os.stat(f"/proc/{pid}/ns/net").st_ino == os.stat(f"/run/netns/{rack.netns}").st_ino
    assert "Chassis Power is on" in rack.ipmitool("power", "status").stdout
    assert boot["device"] == "disk" and boot["override"] is None
    _wait_serial(rack, "vm-ipmi", boot, "SeaBIOS", "Booting from Hard Disk")


def test_pxe_once_boots_from_the_nic_exactly_once(rack: RackProcess) -> None:
    assert rack.ipmitool("chassis", "bootdev", "pxe").returncode == 0
    assert "Force PXE" in rack.ipmitool("chassis", "bootparam", "get", "5").stdout
    before = len(rack.machine("vm-ipmi")["boots"])
    old_pid = rack.machine("vm-ipmi")["pid"]
    assert rack.ipmitool("power", "reset").returncode == 0
    pxe = _wait_booted(rack, "vm-ipmi", before + 1)
    assert pxe["device"] == "pxe" and pxe["pid"] != old_pid
    wait_for(lambda: _pid_gone(old_pid), timeout=10, what="the old QEMU to be gone")
    # Consumed by this boot: the BMC no longer reports an override.
    assert "Force PXE" not in rack.ipmitool("chassis", "bootparam", "get", "5").stdout
    # iPXE (the NIC's option ROM) runs first; with no DHCP server on the bridge it waits for one.
    text = _wait_serial(rack, "vm-ipmi", pxe, "Booting from ROM", "iPXE initialising devices")
    assert "Booting from Hard Disk" not in text.split("Booting from ROM")[0]

    # A reset the guest way (QEMU exits under -no-reboot); the rack restarts it with the disk first.
    rack.post("vm-ipmi", guest_reset=True)
    after = _wait_booted(rack, "vm-ipmi", before + 2)
    assert after["device"] == "disk" and after["cause"] == "host-qmp-system-reset"
    text = _wait_serial(rack, "vm-ipmi", after, "Booting from Hard Disk")
    assert "Booting from ROM" not in text.split("Booting from Hard Disk")[0]
    boots = rack.machine("vm-ipmi")["boots"]
    assert [b["device"] for b in boots].count("pxe") == 1
    assert rack.machine("vm-ipmi")["power"] == "on"


def test_ipmi_driver_inventory_and_hard_power_off(rack: RackProcess) -> None:
    async def scenario() -> tuple[Any, bool, bool]:
        bmc = connect(rack.ipmi_address(), IPMI_CREDS)
        inventory = await bmc.inventory()
        on = await bmc.power_state()
        await bmc.power_off(hard=True)
        return inventory, on, await bmc.power_state()

    pid = rack.machine("vm-ipmi")["pid"]
    inventory, on, off = asyncio.run(scenario())
    assert inventory.serial_number == "SN-RACK-1"
    assert inventory.system_uuid.lower() == rack.uuids["vm-ipmi"]
    assert on and not off
    assert _pid_gone(pid)
    assert rack.machine("vm-ipmi")["pid"] is None


def test_redfish_over_tls_auth_power_and_inventory(rack: RackProcess) -> None:
    async def bad() -> None:
        bmc = rack.redfish(Credentials("root", "wrong"))
        try:
            await bmc.power_state()
        finally:
            await bmc.close()

    with pytest.raises(AuthenticationError):
        asyncio.run(bad())

    async def scenario() -> Any:
        bmc = rack.redfish(RF_CREDS)
        try:
            assert not await bmc.power_state()
            await bmc.power_on()
            assert await bmc.power_state()
            return await bmc.inventory()
        finally:
            await bmc.close()

    inventory = asyncio.run(scenario())
    assert inventory.serial_number == "SN-RACK-2"
    assert inventory.system_uuid == rack.uuids["vm-rf"]
    assert [n.mac for n in inventory.nics] == ["52:54:00:5a:00:02"]
    assert rack.machine("vm-rf")["pid"]


def test_redfish_virtual_media_boot_and_eject(rack: RackProcess, tmp_path: Path) -> None:
    (tmp_path / "iso").mkdir()
    (tmp_path / "iso" / "hello.txt").write_text("hello from the rack\n")
    iso = tmp_path / "www" / "tiny.iso"
    iso.parent.mkdir()
    subprocess.run(
        ["xorriso", "-as", "mkisofs", "-quiet", "-V", "RACKTEST", "-o", str(iso), str(tmp_path / "iso")],
        check=True,
        capture_output=True,
    )

    def cd() -> dict[str, Any]:
        return next(b for b in rack.block("vm-rf") if b["device"] == "cd0")

    with FileServer(iso.parent) as files:
        url = files.url("tiny.iso")

        async def insert() -> None:
            bmc = rack.redfish(RF_CREDS)
            try:
                await bmc.insert_virtual_media(url)
                await bmc.set_boot_device(BootDevice.CDROM, persistent=False, uefi=False)
                await bmc.reset(hard=True)
            finally:
                await bmc.close()

        before = len(rack.machine("vm-rf")["boots"])
        asyncio.run(insert())
    inserted = cd()["inserted"]
    assert inserted["file"].endswith("tiny.iso") and inserted["ro"]
    assert rack.machine("vm-rf")["media"] == url
    boot = _wait_booted(rack, "vm-rf", before + 1)
    assert boot["device"] == "cdrom"
    _wait_serial(rack, "vm-rf", boot, "Booting from DVD/CD")

    async def eject_and_off() -> None:
        bmc = rack.redfish(RF_CREDS)
        try:
            await bmc.eject_virtual_media()
            await bmc.power_off(hard=True)
        finally:
            await bmc.close()

    pid = rack.machine("vm-rf")["pid"]

    # Eject while running: QEMU's own view of the drive changes.
    async def eject() -> None:
        bmc = rack.redfish(RF_CREDS)
        try:
            await bmc.eject_virtual_media()
        finally:
            await bmc.close()

    asyncio.run(eject())
    assert "inserted" not in cd()
    asyncio.run(eject_and_off())
    assert _pid_gone(pid)


def test_unplugged_bmc_and_power_lost_behind_the_operators_back(rack: RackProcess) -> None:
    options = DriverOptions(ipmi_timeout=1, ipmi_retries=1)  # -R 0 makes ipmitool wait 20 s
    rack.post("vm-ipmi", unplugged=True)

    async def state() -> bool:
        return await connect(rack.ipmi_address(), IPMI_CREDS, options).power_state()

    with pytest.raises(UnreachableError):
        asyncio.run(state())
    rack.post("vm-ipmi", unplugged=False)
    assert rack.ipmitool("power", "on").returncode == 0
    pid = _wait_booted(rack, "vm-ipmi", len(rack.machine("vm-ipmi")["boots"]))["pid"]
    rack.post("vm-ipmi", kill=True)
    wait_for(lambda: rack.machine("vm-ipmi")["power"] == "off", timeout=15, what="power off after a crash")
    assert _pid_gone(pid)
    assert rack.machine("vm-ipmi")["last_exit"] == "killed by signal 9"
    assert not asyncio.run(state())


def test_sigterm_leaves_no_qemu_and_removes_its_interfaces(rack: RackProcess) -> None:
    assert rack.ipmitool("power", "on").returncode == 0
    pids = [_wait_booted(rack, "vm-ipmi", len(rack.machine("vm-ipmi")["boots"]))["pid"]]
    assert rack.stop() == 0
    assert all(_pid_gone(pid) for pid in pids)
    links = subprocess.run(["ip", "-n", rack.netns, "-o", "link"], capture_output=True, text=True, check=True)
    assert "rackbr0" not in links.stdout and "rk0" not in links.stdout
