"""Kubelet's side of plugin registration, played against the real ``trellis-csi --mode node`` process.

As kubelet's plugin watcher does: find the ``*-reg.sock`` socket in the plugins_registry directory,
call GetInfo over it, dial the CSI endpoint it names (NodeGetInfo, as kubelet does to fill the
CSINode object), then report the outcome with NotifyRegistrationStatus. Kubelet restarts (a new
client on the same socket) and plugin restarts (clean or killed) must both end in a socket that
answers again; a refused registration must end the process with a non-zero status.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from tests.support.csi_driver import REPO
from tests.support.operators import free_port
from tests.support.wait import wait_for
from trellis.csi.stubs import load, load_registration

pytestmark = pytest.mark.integration
pb, pb_grpc = load()
reg_pb, reg_pb_grpc = load_registration()
DRIVER = "rds.csi.trellis.dev"


@dataclass
class Plugin:
    proc: subprocess.Popen[bytes]
    log_path: Path
    metrics_port: int

    def logs(self) -> list[dict[str, Any]]:
        lines = self.log_path.read_text(errors="replace").splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]

    def metric(self, name: str) -> float:
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as resp:
            for line in resp.read().decode().splitlines():
                if line.startswith(name + " "):
                    return float(line.split()[1])
        return 0.0

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout=20)


@dataclass
class Node:
    """The directories of one node: kubelet's plugins_registry and the plugin's own."""

    root: Path

    @property
    def registry(self) -> Path:
        return self.root / "plugins_registry"

    @property
    def csi_socket(self) -> Path:
        return self.root / "plugins" / DRIVER / "csi.sock"

    def start(self) -> Plugin:
        binary = shutil.which("trellis-csi", path=str(Path(sys.executable).parent))
        if binary is None:
            pytest.fail("trellis-csi is not installed in the venv: run `make venv`")
        loop_root = self.root / "rds"
        loop_root.mkdir(exist_ok=True)
        port = free_port()
        log_path = self.root / f"plugin-{port}.log"
        argv = [binary, "--mode", "node", "--transport", "loop", "--loop-root", str(loop_root)]
        argv += ["--endpoint", f"unix://{self.csi_socket}", "--node-id", "node-1"]
        argv += ["--registration-dir", str(self.registry), "--metrics-address", f"127.0.0.1:{port}"]
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
        return Plugin(proc, log_path, port)

    def discover(self, plugin: Plugin) -> Path:
        """The registration socket, found the way the plugin watcher finds it: a socket in the dir."""

        def found() -> Path | None:
            if plugin.proc.poll() is not None:
                raise AssertionError(f"trellis-csi exited ({plugin.proc.returncode}): {plugin.logs()}")
            for entry in self.registry.iterdir() if self.registry.is_dir() else ():
                if not entry.name.startswith(".") and stat.S_ISSOCK(entry.lstat().st_mode):
                    return entry
            return None

        sock: Path = wait_for(found, timeout=30, interval=0.1, what="a socket in plugins_registry")
        assert sock.name == f"{DRIVER}-reg.sock"
        return sock


@pytest.fixture
def node() -> Iterator[Node]:
    # Short: unix socket paths are limited to 107 bytes, and pytest's tmp_path can be longer.
    root = Path(tempfile.mkdtemp(prefix="kreg-", dir="/tmp"))
    try:
        yield Node(root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def started(node: Node) -> Iterator[list[Plugin]]:
    plugins: list[Plugin] = []
    yield plugins
    for plugin in plugins:
        if plugin.proc.poll() is None:
            plugin.stop(signal.SIGKILL)


def kubelet_registers(sock: Path, *, registered: bool = True, error: str = "") -> Any:
    """One pass of kubelet's registration: GetInfo, the CSI endpoint, then the status."""
    with grpc.insecure_channel(f"unix://{sock}") as channel:
        registration = reg_pb_grpc.RegistrationStub(channel)
        info = registration.GetInfo(reg_pb.InfoRequest(), timeout=10)
        assert info.type == "CSIPlugin" and info.name == DRIVER
        assert "1.0.0" in info.supported_versions
        # Kubelet dials the endpoint as a bare path.
        assert info.endpoint.startswith("/")
        with grpc.insecure_channel(f"unix://{info.endpoint}") as csi:
            node_info = pb_grpc.NodeStub(csi).NodeGetInfo(pb.NodeGetInfoRequest(), timeout=10)
        assert node_info.node_id == "node-1"
        status = reg_pb.RegistrationStatus(plugin_registered=registered, error=error)
        registration.NotifyRegistrationStatus(status, timeout=10)
        return info


def test_kubelet_registers_the_plugin_and_again_after_either_restarts(
    node: Node, started: list[Plugin]
) -> None:
    plugin = node.start()
    started.append(plugin)
    sock = node.discover(plugin)
    info = kubelet_registers(sock)
    assert info.endpoint == str(node.csi_socket)
    wait_for(lambda: plugin.metric("trellis_csi_kubelet_registered") == 1, timeout=10, what="registered=1")
    assert any(entry["msg"] == "registered with kubelet" for entry in plugin.logs())

    # Kubelet restarts: it walks plugins_registry again and registers the same, still served socket.
    assert node.discover(plugin) == sock
    kubelet_registers(sock)
    assert plugin.proc.poll() is None

    # The plugin restarts cleanly: its socket goes (kubelet deregisters), a new one comes.
    assert plugin.stop() == 0
    assert not sock.exists()
    plugin = node.start()
    started.append(plugin)
    assert node.discover(plugin) == sock
    kubelet_registers(sock)
    assert plugin.proc.poll() is None
    assert plugin.stop() == 0


def test_a_killed_plugin_leaves_a_stale_socket_that_its_successor_replaces(
    node: Node, started: list[Plugin]
) -> None:
    plugin = node.start()
    started.append(plugin)
    sock = node.discover(plugin)
    kubelet_registers(sock)
    assert plugin.stop(signal.SIGKILL) == -signal.SIGKILL
    assert stat.S_ISSOCK(sock.lstat().st_mode)  # stale: nobody listens
    with grpc.insecure_channel(f"unix://{sock}") as channel, pytest.raises(grpc.RpcError):
        reg_pb_grpc.RegistrationStub(channel).GetInfo(reg_pb.InfoRequest(), timeout=2)
    os.link(sock, node.root / "stale")  # keeps the old inode, so "replaced" is observable
    stale_inode = sock.lstat().st_ino

    plugin = node.start()
    started.append(plugin)
    wait_for(
        lambda: sock.exists() and sock.lstat().st_ino != stale_inode,
        timeout=30,
        what="a fresh registration socket",
    )
    kubelet_registers(node.discover(plugin))
    assert any(entry["msg"] == "removed a stale registration socket" for entry in plugin.logs())
    assert plugin.stop() == 0


def test_a_refused_registration_ends_the_plugin_with_an_error(node: Node, started: list[Plugin]) -> None:
    plugin = node.start()
    started.append(plugin)
    sock = node.discover(plugin)
    reason = "RegisterPlugin error -- plugin name rds.csi.trellis.dev is already registered"
    kubelet_registers(sock, registered=False, error=reason)
    assert plugin.proc.wait(timeout=20) == 1  # node-driver-registrar exits 1 too
    refusals = [
        entry for entry in plugin.logs() if entry["level"] == "error" and entry.get("error") == reason
    ]
    assert refusals, plugin.logs()
    assert not sock.exists()  # kubelet sees it go, and a new one after the container restarts
