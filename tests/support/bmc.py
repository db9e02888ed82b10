"""BMC emulators for tests and benchmarks, each run as a real subprocess on free loopback ports.

* ``IpmiEmulator``: tests/support/ipmi_bmc_emulator.py (pyghmi's Bmc server) serving one or many
  systems on their own UDP ports, with an HTTP control endpoint for state and counters.
* ``SushyEmulator``: ``sushy-emulator --fake`` (Redfish), optionally with basic auth and TLS.
* ``FileServer``: a static HTTP server for virtual-media images.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.support.kube import REPO
from tests.support.wait import wait_for

VENV_BIN = Path(sys.executable).parent


def free_tcp_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_udp_ports(count: int) -> list[int]:
    """Distinct free UDP ports (held open together so they cannot repeat)."""
    socks = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind(("127.0.0.1", 0))
            socks.append(sock)
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for sock in socks:
            sock.close()


def _http_json(url: str, body: dict[str, Any] | None = None, timeout: float = 5) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method="POST" if body is not None else "GET")
    req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read() or b"null")


@dataclass
class EmulatedSystem:
    name: str
    username: str = "admin"
    password: str = "password"
    serial: str = ""
    power: str = "off"
    port: int = 0


class _Emulator:
    """A subprocess emulator: launch through ``start`` (or ``with``), stopped with SIGTERM."""

    proc: subprocess.Popen[bytes] | None = None
    log: Path

    def _launch(self, cmd: list[str], cwd: Path, ready: Any, what: str) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(cmd, cwd=cwd, stdout=log, stderr=subprocess.STDOUT)

        def probe() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"{what} exited:\n{self.log.read_text()[-3000:]}")
            return bool(ready())

        wait_for(probe, timeout=60, interval=0.2, what=what)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def __exit__(self, *exc: object) -> None:
        self.stop()


class IpmiEmulator(_Emulator):
    """Many IPMI BMCs in one process; ``address(name)`` gives the ipmi:// URL of one of them."""

    def __init__(self, workdir: Path, systems: list[EmulatedSystem], power_delay: float = 0.0) -> None:
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        ports = free_udp_ports(len(systems))
        for system, port in zip(systems, ports, strict=True):
            system.port = system.port or port
        self.systems = {s.name: s for s in systems}
        self.config = workdir / "ipmi-systems.json"
        self.state_file = workdir / "ipmi-state.json"
        self.config.write_text(
            json.dumps(
                {
                    "systems": [
                        {
                            "name": s.name,
                            "port": s.port,
                            "username": s.username,
                            "password": s.password,
                            "serial": s.serial or f"SN-{s.name}",
                            "power": s.power,
                            "power_delay": power_delay,
                        }
                        for s in systems
                    ]
                }
            )
        )
        self.control_port = free_tcp_port()
        self.log = workdir / "ipmi-emulator.log"

    def start(self) -> IpmiEmulator:
        cmd = [
            sys.executable, "-m", "tests.support.ipmi_bmc_emulator", "--config", str(self.config),
            "--control-port", str(self.control_port), "--state-file", str(self.state_file),
        ]  # fmt: skip

        def ready() -> bool:
            try:
                return bool(self.state())
            except OSError:
                return False

        self._launch(cmd, REPO, ready, "IPMI emulator")
        return self

    def __enter__(self) -> IpmiEmulator:
        return self.start()

    def address(self, name: str) -> str:
        return f"ipmi://127.0.0.1:{self.systems[name].port}"

    def state(self) -> dict[str, Any]:
        result: dict[str, Any] = _http_json(f"http://127.0.0.1:{self.control_port}/systems")
        return result

    def system(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self.state()[name]
        return result

    def set(self, name: str, **changes: Any) -> dict[str, Any]:
        result: dict[str, Any] = _http_json(f"http://127.0.0.1:{self.control_port}/systems/{name}", changes)
        return result

    def reset_counters(self) -> None:
        _http_json(f"http://127.0.0.1:{self.control_port}/reset-counters", {})

    def ipmitool(
        self, name: str, *args: str, password: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run the real ipmitool CLI against one emulated BMC."""
        system = self.systems[name]
        env = dict(os.environ, IPMI_PASSWORD=password if password is not None else system.password)
        cmd = [
            "ipmitool",
            "-I",
            "lanplus",
            "-H",
            "127.0.0.1",
            "-p",
            str(system.port),
            "-U",
            system.username,
            "-E",
        ]
        return subprocess.run([*cmd, *args], capture_output=True, text=True, env=env, timeout=60, check=False)


@dataclass
class RedfishSystem:
    name: str
    uuid: str = field(default_factory=lambda: str(uuid.uuid4()))
    power: str = "Off"
    nics: list[dict[str, str]] = field(default_factory=list)


def self_signed_certificate(workdir: Path, host: str = "127.0.0.1") -> tuple[Path, Path]:
    """A throw-away certificate (and key) valid for ``host``; the certificate doubles as CA file."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "emulated-bmc")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(host))]), critical=False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = workdir / "bmc.crt", workdir / "bmc.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    key_path.chmod(0o600)
    return cert_path, key_path


class SushyEmulator(_Emulator):
    """``sushy-emulator --fake``: power changes land 1-11 s after the request, so poll for them."""

    def __init__(
        self,
        workdir: Path,
        systems: list[RedfishSystem],
        users: dict[str, str] | None = None,
        tls: bool = False,
    ) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.systems = {s.name: s for s in systems}
        self.port = free_tcp_port()
        self.tls = tls
        self.cert: Path | None = None
        self.log = workdir / "sushy.log"
        self.users = users or {}
        lines = [
            "SUSHY_EMULATOR_FAKE_SYSTEMS = " + repr(
                [
                    {"uuid": s.uuid, "name": s.name, "power_state": s.power, "external_notifier": False,
                     "nics": s.nics}
                    for s in systems
                ]
            ),
            f"SUSHY_EMULATOR_STATE_DIR = {str(workdir / 'state')!r}",
            "SUSHY_EMULATOR_LISTEN_IP = '127.0.0.1'",
            f"SUSHY_EMULATOR_LISTEN_PORT = {self.port}",
        ]  # fmt: skip
        if self.users:
            import bcrypt

            htpasswd = workdir / "htpasswd"
            htpasswd.write_text(
                "".join(
                    f"{u}:{bcrypt.hashpw(p.encode(), bcrypt.gensalt(4)).decode()}\n"
                    for u, p in self.users.items()
                )
            )
            lines.append(f"SUSHY_EMULATOR_AUTH_FILE = {str(htpasswd)!r}")
        if tls:
            self.cert, key = self_signed_certificate(workdir)
            lines.append(f"SUSHY_EMULATOR_SSL_CERT = {str(self.cert)!r}")
            lines.append(f"SUSHY_EMULATOR_SSL_KEY = {str(key)!r}")
        self.config = workdir / "sushy.conf"
        self.config.write_text("\n".join(lines) + "\n")

    @property
    def base_url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def address(self, name: str, scheme: str | None = None) -> str:
        scheme = scheme or ("redfish+https" if self.tls else "redfish+http")
        return f"{scheme}://127.0.0.1:{self.port}/redfish/v1/Systems/{self.systems[name].uuid}"

    def start(self) -> SushyEmulator:
        cmd = [str(VENV_BIN / "sushy-emulator"), "--fake", "--config", str(self.config)]

        def ready() -> bool:
            try:
                self.get("/redfish/v1/")
                return True
            except urllib.error.HTTPError:
                return True  # answering, even if with 401
            except OSError:
                return False

        self._launch(cmd, self.workdir, ready, "sushy-emulator")
        return self

    def __enter__(self) -> SushyEmulator:
        return self.start()

    def _open(self, req: urllib.request.Request) -> Any:
        import base64
        import ssl

        if self.users:
            user, password = next(iter(self.users.items()))
            token = base64.b64encode(f"{user}:{password}".encode()).decode()
            req.add_header("Authorization", f"Basic {token}")
        context = ssl.create_default_context(cafile=str(self.cert)) if self.tls and self.cert else None
        with urllib.request.urlopen(req, timeout=10, context=context) as resp:
            raw = resp.read()
            return json.loads(raw) if raw else None

    def get(self, path: str) -> Any:
        return self._open(urllib.request.Request(self.base_url + path))

    def post(self, path: str, body: dict[str, Any]) -> Any:
        req = urllib.request.Request(self.base_url + path, data=json.dumps(body).encode(), method="POST")
        req.add_header("Content-Type", "application/json")
        return self._open(req)

    def system(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self.get(f"/redfish/v1/Systems/{self.systems[name].uuid}")
        return result

    def power(self, name: str) -> str:
        return str(self.system(name)["PowerState"])

    def virtual_cd(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self.get(f"/redfish/v1/Systems/{self.systems[name].uuid}/VirtualMedia/Cd")
        return result


class FileServer:
    """Serves a directory over plain HTTP on a free loopback port (virtual-media images)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        handler = partial(_QuietHandler, directory=str(directory))
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    def __enter__(self) -> FileServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def wait_power(read: Any, want: bool | str, timeout: float = 30, what: str = "power") -> None:
    """Poll a power reading until it matches (sushy's fake driver applies changes 1-11 s late)."""
    wait_for(lambda: read() == want, timeout=timeout, interval=0.5, what=what)
