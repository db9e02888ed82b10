"""RouterOS CLI over SSH through the real OpenSSH client and paramiko; SFTP uploads."""

from __future__ import annotations

import os
import shutil
import subprocess

import paramiko
import pytest

from tests.support.rossim import RosSim

pytestmark = pytest.mark.skipif(shutil.which("ssh") is None, reason="openssh-client is not installed")


def openssh(sim: RosSim, command: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(sim.openssh_argv(command), capture_output=True, text=True, timeout=60, check=False)


def test_openssh_with_pinned_host_key_runs_cli(fresh: RosSim) -> None:
    add = openssh(
        fresh,
        "/disk add type=file file-path=storage-pool/csi/pvc-1.img file-size=1G slot=pvc-1"
        " nvme-tcp-export=yes",
    )
    assert (add.returncode, add.stdout, add.stderr) == (0, "", "")
    out = openssh(fresh, ":put [/disk print detail as-value where slot=pvc-1]")
    assert out.returncode == 0
    assert "nvme-tcp-export=true" in out.stdout.split(";")
    disk = fresh.control.disk("pvc-1")
    assert os.path.getsize(disk["backing_path"]) == 1 << 30


def test_openssh_refuses_a_changed_host_key(fresh: RosSim, tmp_path: object) -> None:
    other = paramiko.RSAKey.generate(1024)
    wrong = fresh.known_hosts_path.with_name("known_hosts.wrong")
    wrong.write_text(f"[{fresh.host}]:{fresh.ssh_port} ssh-rsa {other.get_base64()}\n")
    argv = [
        a.replace(str(fresh.known_hosts_path), str(wrong))
        for a in fresh.openssh_argv("/system identity print")
    ]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 255
    assert "REMOTE HOST IDENTIFICATION HAS CHANGED" in result.stderr or "verification failed" in result.stderr


def test_errors_are_on_stdout_with_exit_zero(fresh: RosSim) -> None:
    result = openssh(fresh, "/disk remove nosuchslot")
    assert (result.returncode, result.stdout) == (0, "no such item\n")
    result = openssh(fresh, "/nonsense/command")
    assert result.stdout == "syntax error (line 1 column 10)\n"


def test_error_exit_status_and_crlf_switches(fresh: RosSim) -> None:
    fresh.control.settings(error_exit_status=1, crlf=True)
    try:
        result = subprocess.run(
            fresh.openssh_argv("/disk remove x"), capture_output=True, timeout=60, check=False
        )
        assert result.returncode == 1
        assert result.stdout == b"no such item\r\n"
    finally:
        fresh.control.settings(error_exit_status=0, crlf=False)


def test_paramiko_password_and_key_auth(fresh: RosSim) -> None:
    for use_key in (True, False):
        client = fresh.ssh_client(key=use_key)
        _, stdout, _ = client.exec_command("/system identity print")
        assert stdout.read() == b"  name: MikroTik\n"
        assert stdout.channel.recv_exit_status() == 0
        client.close()


def test_wrong_password_and_unknown_key_are_refused(fresh: RosSim) -> None:
    with pytest.raises(paramiko.AuthenticationException):
        fresh.ssh_client(key=False, password="wrong")  # type: ignore[call-arg]
    stranger = paramiko.RSAKey.generate(1024)
    client = paramiko.SSHClient()
    client.load_host_keys(str(fresh.known_hosts_path))
    with pytest.raises(paramiko.AuthenticationException):
        client.connect(
            fresh.host,
            port=fresh.ssh_port,
            username=fresh.username,
            pkey=stranger,
            look_for_keys=False,
            allow_agent=False,
        )


def test_read_only_user_cannot_write(fresh: RosSim) -> None:
    fresh.control.add_user("viewer", "pw", group="read")
    client = paramiko.SSHClient()
    client.load_host_keys(str(fresh.known_hosts_path))
    client.connect(
        fresh.host,
        port=fresh.ssh_port,
        username="viewer",
        password="pw",
        look_for_keys=False,
        allow_agent=False,
    )
    _, stdout, _ = client.exec_command("/disk add type=file file-path=storage-pool/a.img file-size=1G")
    assert stdout.read() == b"not enough permissions (9)\n"
    client.close()


def test_login_options_set_terminal_width(fresh: RosSim) -> None:
    fresh.ssh_exec("/disk add type=file file-path=storage-pool/a.img file-size=1G slot=a")
    client = paramiko.SSHClient()
    client.load_host_keys(str(fresh.known_hosts_path))
    client.connect(
        fresh.host,
        port=fresh.ssh_port,
        username=f"{fresh.username}+ct200w",
        key_filename=str(fresh.client_key_path),
        look_for_keys=False,
        allow_agent=False,
    )
    _, stdout, _ = client.exec_command("/disk print detail where slot=a")
    lines = [line for line in stdout.read().decode().splitlines() if line]
    client.close()
    assert max(len(line) for line in lines) > 150


def test_sftp_upload_then_export_over_iscsi(fresh: RosSim) -> None:
    payload = os.urandom(3 << 20)
    client = fresh.ssh_client()
    sftp = client.open_sftp()
    sftp.mkdir("/storage-pool/isos")
    with sftp.open("/storage-pool/isos/boot.iso.part", "wb") as fh:
        fh.set_pipelined(True)
        fh.write(payload)
    sftp.rename("/storage-pool/isos/boot.iso.part", "/storage-pool/isos/boot.iso")
    assert sftp.stat("/storage-pool/isos/boot.iso").st_size == len(payload)
    sftp.close()
    _, stdout, _ = client.exec_command(
        ":put [/disk add type=file file-path=storage-pool/isos/boot.iso slot=boot iscsi-export=yes]"
    )
    assert stdout.read().decode().startswith("*")
    _, stdout, _ = client.exec_command(":put [/disk get boot iscsi-server-iqn]")
    assert stdout.read() == b"iqn.2000-02.com.mikrotik:boot\n"
    _, stdout, _ = client.exec_command('/file print detail where name~"isos"')
    listing = stdout.read().decode()
    client.close()
    assert "name=storage-pool/isos/boot.iso type=.iso file size=3072.0KiB" in listing
    exports = fresh.control.exports()
    assert [(e["protocol"], e["iqn"]) for e in exports] == [("iscsi", "iqn.2000-02.com.mikrotik:boot")]
    with open(exports[0]["backing_path"], "rb") as fh:
        assert fh.read() == payload
    uploads = fresh.control.log(protocol="sftp", verb="upload")
    assert len(uploads) == 1


def test_sftp_write_beyond_pool_capacity_fails(fresh: RosSim) -> None:
    fresh.control.settings(pool_size=1 << 20)
    try:
        client = fresh.ssh_client()
        sftp = client.open_sftp()
        with pytest.raises(OSError), sftp.open("/storage-pool/big.iso", "wb") as fh:
            fh.write(b"x" * (2 << 20))
            fh.flush()
        client.close()
    finally:
        fresh.control.settings(pool_size=1 << 40)


def test_unquoted_injection_runs_the_second_command(fresh: RosSim) -> None:
    fresh.ssh_exec("/disk add type=file file-path=storage-pool/keep.img file-size=1G slot=keep")
    out = fresh.ssh_exec("/disk print detail where slot=x;/disk remove keep")
    assert out == ""
    assert fresh.ssh_exec(":put [/disk find slot=keep]") == "\n"
    assert [e["verb"] for e in fresh.control.writes(menu="/disk")] == ["add", "remove"]


def test_interactive_shell_runs_lines(fresh: RosSim) -> None:
    client = fresh.ssh_client()
    chan = client.invoke_shell()
    chan.settimeout(10)
    chan.sendall(b"/system identity print\r\n")
    data = b""
    while data.count(b"] > ") < 2:
        data += chan.recv(4096)
    client.close()
    assert b"[admin@MikroTik] > " in data
    assert b"name: MikroTik" in data
