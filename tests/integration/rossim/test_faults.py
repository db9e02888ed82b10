"""Fault injection through the control API, reboots, and state that survives a restart."""

from __future__ import annotations

import os
import time

import paramiko
import pytest
from librouteros.exceptions import ConnectionClosed, TrapError

from tests.support.rossim import RosSim, wait_until_up
from tests.support.wait import wait_for


def test_fail_next_command_over_ssh_and_api(fresh: RosSim) -> None:
    fresh.control.fail_next("failure: execution error", menu="/disk", verb="add")
    out = fresh.ssh_exec("/disk add type=file file-path=storage-pool/a.img file-size=1G slot=a")
    assert out == "failure: execution error\n"
    assert fresh.ssh_exec(":put [/disk find slot=a]") == "\n"
    assert fresh.ssh_exec("/disk add type=file file-path=storage-pool/a.img file-size=1G slot=a") == ""
    fresh.control.fail_next("failure: not enough space", protocol="api", count=2)
    api = fresh.api()
    for _ in range(2):
        with pytest.raises(TrapError, match="not enough space"):
            list(api.path("ip", "pool"))
    assert list(api.path("ip", "pool")) == []
    api.close()


def test_latency_is_added_per_command(fresh: RosSim) -> None:
    fresh.control.set_latency(300)
    try:
        started = time.monotonic()
        fresh.ssh_exec("/system identity print; /system identity print")
        elapsed = time.monotonic() - started
    finally:
        fresh.control.set_latency(0)
    assert elapsed >= 0.6


def exec_dropped(sim: RosSim, client: paramiko.SSHClient, command: str) -> None:
    """The command is accepted, then the connection dies: no output, no exit status."""
    _, stdout, _ = client.exec_command(command)
    assert stdout.read() == b""
    assert stdout.channel.recv_exit_status() == -1
    assert not client.get_transport().is_active()  # type: ignore[union-attr]


def test_drop_before_leaves_nothing_drop_after_applies(fresh: RosSim) -> None:
    fresh.control.drop_after(0, protocol="ssh", when="before")
    client = fresh.ssh_client()
    exec_dropped(fresh, client, "/disk add type=file file-path=storage-pool/x.img file-size=1G slot=x")
    client.close()
    assert fresh.ssh_exec(":put [/disk find slot=x]") == "\n"
    fresh.control.drop_after(1, protocol="ssh", when="after")
    client = fresh.ssh_client()
    _, stdout, _ = client.exec_command("/system identity print")
    assert stdout.read() == b"  name: MikroTik\n"
    exec_dropped(fresh, client, "/disk add type=file file-path=storage-pool/y.img file-size=1G slot=y")
    client.close()
    assert fresh.ssh_exec(":put [/disk find slot=y]") == "*2\n", "executed, only the reply was lost"
    log = fresh.control.log(menu="/disk", verb="add")
    assert [e["error"] for e in log] == ["dropped", None]


def test_api_drop_closes_the_socket(fresh: RosSim) -> None:
    api = fresh.api()
    fresh.control.drop_after(0, protocol="api")
    with pytest.raises((ConnectionClosed, ConnectionError, OSError)):
        list(api.path("ip", "address"))


def test_pool_full_refuses_disk_add(fresh: RosSim) -> None:
    fresh.control.pool_full(True)
    try:
        out = fresh.ssh_exec("/disk add type=file file-path=storage-pool/a.img file-size=1G slot=a")
        assert out == "failure: not enough space\n"
        assert "free=0 use=100%" in fresh.ssh_exec("/disk print detail where slot=storage-pool")
    finally:
        fresh.control.pool_full(False)
    fresh.control.settings(pool_size=3 << 30)
    try:
        fresh.ssh_exec("/disk add type=file file-path=storage-pool/a.img file-size=2G slot=a")
        assert fresh.ssh_exec("/disk set a file-size=4G") == "failure: not enough space\n"
        assert fresh.ssh_exec("/disk set a file-size=3G") == ""
    finally:
        fresh.control.settings(pool_size=1 << 40)


def test_reboot_drops_connections_and_exports_return_later(fresh: RosSim) -> None:
    fresh.ssh_exec("/disk add type=file file-path=storage-pool/a.img file-size=1G slot=a nvme-tcp-export=yes")
    assert [e["nqn"] for e in fresh.control.exports()] == ["a"]
    api = fresh.api()
    fresh.control.reboot(down_seconds=1.0, exports_delay_seconds=1.0)
    with pytest.raises((ConnectionClosed, ConnectionError, OSError)):
        list(api.path("system", "identity"))
    assert fresh.control.exports() == []
    with pytest.raises((paramiko.SSHException, EOFError, OSError)):
        fresh.ssh_exec("/system identity print")
    wait_until_up(fresh)
    assert fresh.control.exports() == []
    wait_for(lambda: fresh.control.exports(), timeout=10, what="exports back")
    assert fresh.ssh_exec(":put [/disk find slot=a]") == "*2\n"


def test_reboot_can_lose_file_disks_but_keeps_files(fresh: RosSim) -> None:
    fresh.ssh_exec("/disk add type=file file-path=storage-pool/a.img file-size=1G slot=a iscsi-export=yes")
    path = fresh.control.disk("a")["backing_path"]
    fresh.control.reboot(down_seconds=0.2, drop_file_disks=True)
    wait_until_up(fresh)
    assert fresh.ssh_exec(":put [/disk find type=file]") == "\n"
    assert os.path.exists(path)


def test_state_and_host_key_survive_restart(fresh: RosSim) -> None:
    fresh.ssh_exec(
        "/disk add type=file file-path=storage-pool/keep.img file-size=1G slot=keep nvme-tcp-export=yes"
    )
    api = fresh.api()
    br = api.path("interface", "bridge").add(name="br-keep", comment="trellis:x")
    api.close()
    host_key = fresh.host_key
    fresh.restart()
    wait_until_up(fresh)
    assert fresh.control.info()["host_key"] == host_key
    out = fresh.ssh_exec(":put [/disk get keep nvme-tcp-export]")  # pinned host key still accepted
    assert out == "true\n"
    api = fresh.api()
    (bridge,) = api.path("interface", "bridge")
    assert (bridge[".id"], bridge["comment"]) == (br, "trellis:x")
    assert api.path("interface", "bridge").add(name="br-next") != br, "ids are not reused after restart"
    api.close()


def test_killed_simulator_keeps_flushed_state(fresh: RosSim) -> None:
    fresh.ssh_exec("/ip dns static add name=before-kill address=10.0.0.1")
    fresh.control.flush()
    fresh.kill()
    fresh.restart()
    wait_until_up(fresh)
    assert fresh.ssh_exec(":put [/ip dns static get [find] name]") == "before-kill\n"


def test_command_log_counts_writes_per_protocol(fresh: RosSim) -> None:
    since = fresh.control.last_seq()
    api = fresh.api()
    pool = api.path("ip", "pool").add(name="p", ranges="10.0.0.1-10.0.0.5")
    list(api.path("ip", "pool"))
    api.path("ip", "pool").update(**{".id": pool, "comment": "x"})
    api.close()
    fresh.ssh_exec("/ip pool print; /ip pool remove p")
    writes = fresh.control.writes(since)
    assert [(e["protocol"], e["menu"], e["verb"]) for e in writes] == [
        ("api", "/ip/pool", "add"),
        ("api", "/ip/pool", "set"),
        ("ssh", "/ip/pool", "remove"),
    ]
    assert len(fresh.control.log(since, verb="print")) == 2


def test_sftp_upload_can_be_cut_off_mid_transfer(fresh: RosSim) -> None:
    fresh.control.drop_after(8, protocol="sftp")
    client = fresh.ssh_client()
    sftp = client.open_sftp()
    with (
        pytest.raises((OSError, EOFError, paramiko.SSHException)),
        sftp.open("/storage-pool/cut.iso", "wb") as fh,
    ):
        for _ in range(64):
            fh.write(b"x" * 32768)
    client.close()
    partial = fresh.control.menu("file")
    sizes = {f["name"]: int(f.get("size", 0)) for f in partial}
    assert 0 < sizes["storage-pool/cut.iso"] < 64 * 32768
    fresh.control.fail_next("failure: execution error", protocol="sftp", verb="upload")
    client = fresh.ssh_client()
    sftp = client.open_sftp()
    with pytest.raises(OSError):
        sftp.open("/storage-pool/other.iso", "wb")
    with sftp.open("/storage-pool/cut.iso", "wb") as fh:
        fh.write(b"complete")
    assert sftp.stat("/storage-pool/cut.iso").st_size == 8
    client.close()
