"""Start the RouterOS/RDS simulator (hack/rossim) as a real subprocess for tests.

    from tests.support.rossim import running_rossim, start_rossim

    with running_rossim(tmp_path / "rds") as sim:
        sim.ssh_exec("/disk print detail")           # paramiko, host key pinned, key auth
        api = sim.api()                              # librouteros.connect(...) on the plain port
        sim.control.fail_next("failure: execution error", menu="/disk", verb="add")
        sim.control.disk("pvc-1")["backing_path"]    # the real sparse file behind a file disk

Ports are chosen by the simulator itself (port 0) and read back from <data-dir>/ready.json, so
there is no race for free ports; restart() reuses the same ports and data dir.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from tests.support.wait import wait_for

REPO = Path(__file__).resolve().parents[2]
HACK = REPO / "hack"
if str(HACK) not in sys.path:
    sys.path.insert(0, str(HACK))

from rossim.control import ControlClient  # noqa: E402 - needs hack/ on sys.path


def generate_client_key(path: Path) -> str:
    """Write an OpenSSH ed25519 private key (0600) and its .pub; return the public key line."""
    key = ed25519.Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    line = public.decode() + " rossim-test"
    path.with_suffix(".pub").write_text(line + "\n")
    return line


@dataclass
class RosSim:
    """A running simulator: where it listens, how to log in, and its control API."""

    proc: subprocess.Popen[bytes]
    data_dir: Path
    host: str
    api_port: int
    api_tls_port: int | None
    ssh_port: int
    control_port: int
    username: str
    password: str
    client_key_path: Path
    client_public_key: str
    host_key: str
    known_hosts_line: str
    known_hosts_path: Path
    tls_cert_path: Path | None
    tls_cert_pem: str | None
    control: ControlClient
    log_path: Path
    argv: list[str] = field(repr=False, default_factory=list)
    rest_port: int | None = None

    # -------------------------------------------------------------- clients

    def ssh_client(self, key: bool = True, **kwargs: Any) -> Any:
        """A connected paramiko SSHClient that trusts only the simulator's host key."""
        import paramiko

        client = paramiko.SSHClient()
        client.load_host_keys(str(self.known_hosts_path))
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        auth: dict[str, Any] = (
            {"key_filename": str(self.client_key_path)} if key else {"password": self.password}
        )
        auth.update(kwargs)
        # Without TCP_NODELAY, Nagle on the client plus delayed ACKs on the server costs ~40 ms
        # per exec (true against a real router as well).
        sock = socket.create_connection((self.host, self.ssh_port), timeout=15)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        auth.setdefault("sock", sock)
        client.connect(
            self.host,
            port=self.ssh_port,
            username=self.username,
            look_for_keys=False,
            allow_agent=False,
            timeout=15,
            **auth,
        )
        return client

    def ssh_exec(self, command: str) -> str:
        """Run one RouterOS CLI command over SSH; returns stdout (errors are on stdout too)."""
        client = self.ssh_client()
        try:
            _, stdout, _ = client.exec_command(command, timeout=60)
            return str(stdout.read().decode())
        finally:
            client.close()

    def api(self, tls: bool = False, **kwargs: Any) -> Any:
        """librouteros.connect() to the plain (or TLS) API port."""
        import librouteros

        if tls:
            ctx = ssl.create_default_context(cafile=str(self.tls_cert_path))
            kwargs["ssl_wrapper"] = lambda sock: ctx.wrap_socket(sock, server_hostname="localhost")
            port = self.api_tls_port
        else:
            port = self.api_port
        return librouteros.connect(self.host, self.username, self.password, port=port, **kwargs)

    def openssh_argv(self, command: str) -> list[str]:
        """argv for the real OpenSSH client with the host key pinned (StrictHostKeyChecking=yes)."""
        return [
            "ssh",
            "-p",
            str(self.ssh_port),
            "-i",
            str(self.client_key_path),
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            f"UserKnownHostsFile={self.known_hosts_path}",
            "-o",
            "LogLevel=ERROR",
            f"{self.username}@{self.host}",
            command,
        ]

    # -------------------------------------------------------------- lifecycle

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def running(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def restart(self) -> None:
        """Stop gracefully and start again on the same ports with the same data dir."""
        self.stop()
        argv = _with_ports(self.argv, self.api_port, self.ssh_port, self.control_port, self.api_tls_port)
        new = _launch(argv, self.data_dir, self.log_path)
        self.proc = new.proc
        self.argv = argv


def _with_ports(argv: list[str], api: int, ssh: int, control: int, tls: int | None) -> list[str]:
    out = list(argv)
    for flag, port in (
        ("--api-port", api),
        ("--ssh-port", ssh),
        ("--control-port", control),
        ("--api-tls-port", tls),
    ):
        if port is not None and flag in out:
            out[out.index(flag) + 1] = str(port)
    return out


@dataclass
class _Launched:
    proc: subprocess.Popen[bytes]
    info: dict[str, Any]


def _launch(argv: list[str], data_dir: Path, log_path: Path, timeout: float = 30.0) -> _Launched:
    ready = data_dir / "ready.json"
    ready.unlink(missing_ok=True)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(HACK), env.get("PYTHONPATH", "")) if p)
    log = open(log_path, "ab")  # noqa: SIM115 - lives as long as the process
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)
    log.close()

    def is_ready() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"rossim exited ({proc.returncode}):\n{log_path.read_text()[-4000:]}")
        return ready.exists()

    wait_for(is_ready, timeout=timeout, interval=0.05, what="rossim ready.json")
    return _Launched(proc, json.loads(ready.read_text()))


def start_rossim(
    data_dir: Path,
    *,
    username: str = "admin",
    password: str | None = None,
    tls: bool = True,
    pool_size: str | None = None,
    extra_args: Sequence[str] = (),
    timeout: float = 30.0,
    rest: bool = False,
) -> RosSim:
    """Start `python -m rossim` on free loopback ports; wait until it is ready."""
    data_dir.mkdir(parents=True, exist_ok=True)
    password = password if password is not None else secrets.token_hex(8)
    key_path = data_dir / "client_ed25519"
    public = (
        generate_client_key(key_path)
        if not key_path.exists()
        else key_path.with_suffix(".pub").read_text().strip()
    )
    argv = [
        sys.executable,
        "-m",
        "rossim",
        "--data-dir",
        str(data_dir),
        "--api-port",
        "0",
        "--ssh-port",
        "0",
        "--control-port",
        "0",
        "--user",
        f"{username}:{password}:full",
        "--authorized-key",
        f"{username}:{key_path.with_suffix('.pub')}",
    ]
    if tls:
        argv += ["--api-tls-port", "0"]
    if rest:
        argv += ["--rest-port", "0"]
    if pool_size:
        argv += ["--pool-size", pool_size]
    argv += list(extra_args)
    log_path = data_dir / "rossim.log"
    launched = _launch(argv, data_dir, log_path, timeout)
    info = launched.info
    known_hosts = data_dir / "known_hosts"
    known_hosts.write_text(info["known_hosts"] + "\n")
    argv = _with_ports(argv, info["api_port"], info["ssh_port"], info["control_port"], info["api_tls_port"])
    if info.get("rest_port"):
        argv[argv.index("--rest-port") + 1] = str(info["rest_port"])
    control = ControlClient(f"http://{info['host']}:{info['control_port']}")
    return RosSim(
        proc=launched.proc,
        data_dir=data_dir,
        host=info["host"],
        api_port=info["api_port"],
        api_tls_port=info["api_tls_port"],
        ssh_port=info["ssh_port"],
        control_port=info["control_port"],
        username=username,
        password=password,
        client_key_path=key_path,
        client_public_key=public,
        host_key=info["host_key"],
        known_hosts_line=info["known_hosts"],
        known_hosts_path=known_hosts,
        tls_cert_path=Path(info["tls_cert"]) if info.get("tls_cert") else None,
        tls_cert_pem=info.get("tls_cert_pem"),
        control=control,
        log_path=log_path,
        argv=argv,
        rest_port=info.get("rest_port"),
    )


@contextmanager
def running_rossim(data_dir: Path, **kwargs: Any) -> Iterator[RosSim]:
    sim = start_rossim(data_dir, **kwargs)
    try:
        yield sim
    finally:
        sim.stop()


def wait_until_up(sim: RosSim, timeout: float = 30.0) -> None:
    """After a simulated reboot: wait until the API accepts logins again."""

    def probe() -> bool:
        api = sim.api()
        api.close()
        return True

    wait_for(probe, timeout=timeout, interval=0.1, what="rossim back up")
    time.sleep(0)
