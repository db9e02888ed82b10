"""Run the real ``trellis-csi`` executable against a running RDS simulator, for tests and benchmarks.

with running_driver(sim, tmp_path, mode="all") as driver:
    driver.controller.CreateVolume(...)
    driver.metric("trellis_csi_operations_total", method="CreateVolume", code="OK")
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from tests.support.operators import free_port
from tests.support.rossim import RosSim
from tests.support.wait import wait_for

REPO = Path(__file__).resolve().parents[2]
BASE_PATH = "storage-pool/trellis-csi"


def load_stubs() -> tuple[Any, Any]:
    from trellis.csi.stubs import load

    return load()


@dataclass
class Driver:
    proc: subprocess.Popen[bytes]
    endpoint: str
    socket: Path
    metrics_port: int
    log_path: Path
    loop_root: Path
    argv: list[str] = field(default_factory=list)
    _channel: grpc.Channel | None = None

    @property
    def channel(self) -> grpc.Channel:
        if self._channel is None:
            self._channel = grpc.insecure_channel(self.endpoint)
        return self._channel

    @property
    def identity(self) -> Any:
        return load_stubs()[1].IdentityStub(self.channel)

    @property
    def controller(self) -> Any:
        return load_stubs()[1].ControllerStub(self.channel)

    @property
    def node(self) -> Any:
        return load_stubs()[1].NodeStub(self.channel)

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def metrics_text(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as resp:
            return str(resp.read().decode())

    def metric(self, name: str, **labels: str) -> float:
        """The value of one sample (0 when absent)."""
        want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        for line in self.metrics_text().splitlines():
            if line.startswith("#"):
                continue
            key, _, value = line.rpartition(" ")
            sample, _, label_text = key.partition("{")
            if sample != name:
                continue
            got = ",".join(sorted(label_text.rstrip("}").split(","))) if label_text else ""
            if got == want:
                return float(value)
        return 0.0

    def rss_bytes(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0

    def peak_rss_bytes(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        return 0

    def stop(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def secret_dir(sim: RosSim, directory: Path, *, password: bool = False) -> Path:
    """The files a Kubernetes Secret would mount: known_hosts plus a key or a password."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "known_hosts").write_text(sim.known_hosts_line + "\n")
    (directory / "username").write_text(sim.username)
    if password:
        (directory / "password").write_text(sim.password)
    else:
        (directory / "ssh-privatekey").write_text(sim.client_key_path.read_text())
    return directory


def start_driver(
    sim: RosSim,
    workdir: Path,
    *,
    mode: str = "all",
    extra_args: Sequence[str] = (),
    password: bool = False,
) -> Driver:
    workdir.mkdir(parents=True, exist_ok=True)
    sock = workdir / "csi.sock"
    metrics_port = free_port()
    loop_root = sim.data_dir / "files"
    argv = [
        sys.executable,
        "-m",
        "trellis.csi",
        "--mode",
        mode,
        "--endpoint",
        f"unix://{sock}",
        "--node-id",
        "node-1",
        "--rds-address",
        sim.host,
        "--rds-ssh-port",
        str(sim.ssh_port),
        "--ssh-secret-dir",
        str(secret_dir(sim, workdir / "secret", password=password)),
        "--base-path",
        BASE_PATH,
        "--transport",
        "loop",
        "--loop-root",
        str(loop_root),
        "--metrics-address",
        f"127.0.0.1:{metrics_port}",
        "--log-format",
        "json",
        *extra_args,
    ]
    log_path = workdir / "driver.log"
    log = open(log_path, "ab")  # noqa: SIM115 - lives as long as the process
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)
    log.close()
    driver = Driver(proc, f"unix://{sock}", sock, metrics_port, log_path, loop_root, argv)
    pb, _ = load_stubs()

    def ready() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"trellis-csi exited ({proc.returncode}):\n{driver.logs()[-4000:]}")
        if not sock.exists():
            return False
        driver.identity.GetPluginInfo(pb.GetPluginInfoRequest(), timeout=2)
        return True

    wait_for(ready, timeout=30, interval=0.1, what="trellis-csi socket")
    return driver


@contextmanager
def running_driver(sim: RosSim, workdir: Path, **kwargs: Any) -> Iterator[Driver]:
    driver = start_driver(sim, workdir, **kwargs)
    try:
        yield driver
    finally:
        driver.stop()
