"""--iscsi-portal: exported file disks are real iSCSI targets (tgtd), read with QEMU's libiscsi."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.rossim import RosSim, start_rossim
from tests.support.wait import wait_for
from trellis.operators.isocdrom.rds import RDSExports
from trellis.routeros.cli import RouterOSCli
from trellis.routeros.ssh import SSHConfig, SSHPool


def _qemu_has_iscsi() -> bool:
    if shutil.which("qemu-img") is None:
        return False
    out = subprocess.run(["qemu-img", "--help"], capture_output=True, text=True, check=False).stdout
    return " iscsi" in out


pytestmark = pytest.mark.skipif(
    shutil.which("tgtd") is None
    or shutil.which("xorriso") is None
    or not _qemu_has_iscsi()
    or os.getuid() != 0,
    reason="needs root, tgt, xorriso and qemu-utils + qemu-block-extra (hack/install-deps.sh)",
)
IQN = "iqn.2000-02.com.mikrotik:"


def free_port(address: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((address, 0))
        return int(s.getsockname()[1])


def start(data_dir: Path, portal: str) -> RosSim:
    return start_rossim(data_dir, tls=False, extra_args=["--iscsi-portal", portal])


@pytest.fixture(scope="module")
def iso(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("iso")
    (base / "tree").mkdir()
    (base / "tree" / "hello.txt").write_bytes(os.urandom(70_000))
    out = base / "boot.iso"
    subprocess.run(
        ["xorriso", "-as", "mkisofs", "-quiet", "-V", "TRELLIS", "-o", str(out), str(base / "tree")],
        check=True,
        capture_output=True,
    )
    return out


@pytest.fixture(scope="module")
def isim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RosSim]:
    sim = start(Path(tmp_path_factory.mktemp("rossim-iscsi")) / "rds", f"127.0.0.1:{free_port()}")
    try:
        yield sim
    finally:
        sim.stop()


@pytest.fixture
def fresh(isim: RosSim) -> RosSim:
    isim.control.reset()
    return isim


def portal(sim: RosSim) -> str:
    return str(sim.control.info()["iscsi_portal"])


def url(sim: RosSim, slot: str) -> str:
    return f"iscsi://{portal(sim)}/{IQN}{slot}/1"


def upload(sim: RosSim, source: Path, name: str = "boot.iso") -> str:
    client = sim.ssh_client()
    try:
        sftp = client.open_sftp()
        with contextlib.suppress(OSError):  # already there
            sftp.mkdir("/storage-pool/isos")
        sftp.put(str(source), f"/storage-pool/isos/{name}")
        sftp.close()
    finally:
        client.close()
    return f"storage-pool/isos/{name}"


def lun_bytes(target: str, tmp_path: Path) -> bytes:
    out = tmp_path / "lun.raw"
    done = subprocess.run(
        ["qemu-img", "convert", "-O", "raw", target, str(out)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    return out.read_bytes()


def readable(target: str) -> bool:
    done = subprocess.run(["qemu-img", "info", target], capture_output=True, timeout=60, check=False)
    return done.returncode == 0


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def tgtd_pids(control_port: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if argv[0].endswith(b"tgtd") and str(control_port).encode() in argv and state != "Z":
            pids.append(int(entry.name))
    return pids


def test_export_over_ssh_serves_the_file_bytes(fresh: RosSim, iso: Path, tmp_path: Path) -> None:
    path = upload(fresh, iso)
    assert fresh.ssh_exec(f"/disk add type=file file-path={path} slot=boot") == ""
    assert not readable(url(fresh, "boot"))
    assert fresh.ssh_exec("/disk set [find slot=boot] iscsi-export=yes") == ""
    assert sha(lun_bytes(url(fresh, "boot"), tmp_path)) == sha(iso.read_bytes())
    # clients read the port to dial back from the disk, as they would from a real RDS
    port = portal(fresh).rsplit(":", 1)[1]
    assert fresh.ssh_exec(":put [/disk get [find slot=boot] iscsi-server-port]") == f"{port}\n"
    assert fresh.control.exports()[0]["port"] == int(port)


def test_iso_lun_is_read_only_and_an_image_is_writable(fresh: RosSim, iso: Path) -> None:
    if shutil.which("qemu-io") is None:
        pytest.skip("qemu-io missing")
    path = upload(fresh, iso)
    fresh.ssh_exec(f"/disk add type=file file-path={path} slot=boot iscsi-export=yes")
    fresh.ssh_exec("/disk add type=file file-path=storage-pool/rw.img file-size=1M slot=rw iscsi-export=yes")
    for slot, ok in (("boot", False), ("rw", True)):
        done = subprocess.run(
            ["qemu-io", "-f", "raw", "-c", "write -P 0x5a 0 4k", url(fresh, slot)],
            capture_output=True,
            text=True,
            check=False,
        )
        wrote = done.returncode == 0 and "error" not in (done.stdout + done.stderr).lower()
        assert wrote == ok, done.stdout + done.stderr
    backing = Path(fresh.control.disk("rw")["backing_path"]).read_bytes()
    assert backing[:4096] == b"\x5a" * 4096
    assert sha(Path(fresh.control.disk("boot")["backing_path"]).read_bytes()) == sha(iso.read_bytes())


def test_export_off_and_remove_drop_the_target(fresh: RosSim, iso: Path) -> None:
    path = upload(fresh, iso)
    fresh.ssh_exec(f"/disk add type=file file-path={path} slot=boot iscsi-export=yes")
    assert readable(url(fresh, "boot"))
    assert fresh.ssh_exec("/disk set [find slot=boot] iscsi-export=no") == ""
    assert not readable(url(fresh, "boot"))
    fresh.ssh_exec("/disk set [find slot=boot] iscsi-export=yes")
    assert readable(url(fresh, "boot"))
    assert fresh.ssh_exec("/disk remove [find slot=boot]") == ""
    assert not readable(url(fresh, "boot"))
    # a disabled disk is not served either
    fresh.ssh_exec(f"/disk add type=file file-path={path} slot=again iscsi-export=yes")
    fresh.ssh_exec("/disk disable [find slot=again]")
    assert not readable(url(fresh, "again"))


def test_renaming_the_iqn_moves_the_target(fresh: RosSim, iso: Path) -> None:
    path = upload(fresh, iso)
    fresh.ssh_exec(f"/disk add type=file file-path={path} slot=boot iscsi-export=yes")
    fresh.ssh_exec('/disk set [find slot=boot] iscsi-server-iqn="iqn.2024-01.lab.trellis:boot"')
    assert not readable(url(fresh, "boot"))
    assert readable(f"iscsi://{portal(fresh)}/iqn.2024-01.lab.trellis:boot/1")
    # `unset` bypasses the disk hooks; the change feed still brings the target back
    assert fresh.ssh_exec("/disk unset [find slot=boot] value-name=iscsi-server-iqn") == ""
    assert readable(url(fresh, "boot"))


def test_failures_surface_on_the_command(fresh: RosSim, iso: Path) -> None:
    path = upload(fresh, iso)
    other = int(portal(fresh).rsplit(":", 1)[1]) + 1
    out = fresh.ssh_exec(
        f"/disk add type=file file-path={path} slot=boot iscsi-export=yes iscsi-server-port={other}"
    )
    assert out.startswith("failure: iscsi-server-port must be")
    assert fresh.ssh_exec(":put [/disk find slot=boot]") == "\n"
    fresh.ssh_exec(f"/disk add type=file file-path={path} slot=boot iscsi-export=yes")
    out = fresh.ssh_exec(
        f'/disk add type=file file-path=storage-pool/b.img file-size=1M slot=b iscsi-server-iqn="{IQN}boot" '
        "iscsi-export=yes"
    )
    assert out == "failure: already have such entry\n"
    assert readable(url(fresh, "boot"))


def test_simulated_reboot_drops_targets_until_exports_return(fresh: RosSim, iso: Path) -> None:
    path = upload(fresh, iso)
    fresh.ssh_exec(f"/disk add type=file file-path={path} slot=boot iscsi-export=yes")
    fresh.control.reboot(down_seconds=0.5, exports_delay_seconds=1.0)
    assert not readable(url(fresh, "boot"))
    wait_for(lambda: readable(url(fresh, "boot")), timeout=15, interval=0.3, what="target back after reboot")


def test_isocdrom_client_turns_the_export_on(fresh: RosSim, iso: Path, tmp_path: Path) -> None:
    path = upload(fresh, iso)
    pool = SSHPool(
        SSHConfig(
            host=fresh.host,
            port=fresh.ssh_port,
            username=fresh.username,
            known_hosts=fresh.known_hosts_line,
            private_key=fresh.client_key_path.read_text(),
        )
    )
    try:
        exports = RDSExports(RouterOSCli(pool))
        export = exports.ensure("isocdrom-boot", "/" + path)
        assert export.exported and export.iqn == f"{IQN}isocdrom-boot"
        target = f"iscsi://127.0.0.1:{export.port}/{export.iqn}/1"
        assert sha(lun_bytes(target, tmp_path)) == sha(iso.read_bytes())
        exports.remove("isocdrom-boot")
        assert not readable(target)
    finally:
        pool.close()


def test_restart_restores_targets_and_stop_leaves_no_tgtd(tmp_path: Path, iso: Path) -> None:
    sim = start(tmp_path / "rds", f"127.0.0.1:{free_port()}")
    try:
        path = upload(sim, iso)
        sim.ssh_exec(f"/disk add type=file file-path={path} slot=boot iscsi-export=yes")
        sim.ssh_exec("/disk add type=file file-path=storage-pool/off.img file-size=1M slot=off")
        control_port = int(sim.control.info()["iscsi_control_port"])
        assert len(tgtd_pids(control_port)) == 1
        sim.restart()
        assert sim.control.info()["iscsi_control_port"] == control_port
        assert readable(url(sim, "boot"))
        assert not readable(url(sim, "off"))
        assert len(tgtd_pids(control_port)) == 1
    finally:
        sim.stop()
    assert tgtd_pids(control_port) == []
    assert not Path(f"/var/run/tgtd/socket.{control_port}").exists()
    # SIGKILL of the simulator takes its tgtd along (parent-death signal)
    sim.restart()
    try:
        assert readable(url(sim, "boot"))
    finally:
        sim.kill()
    wait_for(lambda: tgtd_pids(control_port) == [], timeout=10, interval=0.1, what="tgtd gone after SIGKILL")
    # nobody was left to remove tgtd's socket files; the next start on this portal would reuse them
    for suffix in ("", ".lock"):
        Path(f"/var/run/tgtd/socket.{control_port}{suffix}").unlink(missing_ok=True)


def test_two_simulators_on_different_addresses_coexist(tmp_path: Path, iso: Path) -> None:
    port = free_port("127.0.0.2")
    a = start(tmp_path / "a", f"127.0.0.2:{port}")
    try:
        b = start(tmp_path / "b", f"127.0.0.3:{port}")
        try:
            assert a.control.info()["iscsi_control_port"] != b.control.info()["iscsi_control_port"]
            upload(a, iso)
            a.ssh_exec("/disk add type=file file-path=storage-pool/isos/boot.iso slot=boot iscsi-export=yes")
            b.ssh_exec(
                "/disk add type=file file-path=storage-pool/data.img file-size=64K slot=boot iscsi-export=yes"
            )
            assert sha(lun_bytes(url(a, "boot"), tmp_path)) == sha(iso.read_bytes())
            assert lun_bytes(url(b, "boot"), tmp_path) == b"\0" * 65536
        finally:
            b.stop()
        assert readable(url(a, "boot"))
    finally:
        a.stop()


def test_wildcard_portal_is_refused(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[3] / "hack"))
    argv = [sys.executable, "-m", "rossim", "--data-dir", str(tmp_path), "--iscsi-portal", "0.0.0.0:3260"]
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60, check=False)
    assert done.returncode == 2
    assert "not 0.0.0.0" in done.stderr
