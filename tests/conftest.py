"""Session-wide fixtures: one real control plane per test session, one namespace per test."""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from labnode import Node

from tests.support.kube import BIN, REPO, ControlPlane
from tests.support.node import describe, pick_host_address, session_node
from tests.support.release import SUMMARY as release_summary
from tests.support.wait import wait_for

_server_version: list[str] = []


def _start_testenv(workdir: Path) -> tuple[subprocess.Popen[bytes], ControlPlane]:
    binary = BIN / "trellis-testenv"
    if not binary.exists():
        pytest.fail(f"{binary} is missing: run the tests through `make test`, which builds it")
    log = open(workdir / "testenv.out", "wb")  # noqa: SIM115 - lives as long as the process
    # The apiserver advertises the host end of the (lazily started) node's veth: see `node`.
    argv = [str(binary), "up", "--dir", str(workdir), "--host-address", pick_host_address()]
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    ready = workdir / "ready.json"

    def is_ready() -> bool:
        if proc.poll() is not None:
            out = (workdir / "testenv.out").read_text(errors="replace")
            raise AssertionError(f"trellis-testenv exited ({proc.returncode}):\n{out[-4000:]}")
        return ready.exists()

    wait_for(is_ready, timeout=240, interval=0.5, what="trellis-testenv ready.json")
    info = json.loads(ready.read_text())
    return proc, ControlPlane(kubeconfig=Path(info["kubeconfig"]), server=info["server"])


@pytest.fixture(scope="session")
def control_plane() -> Iterator[ControlPlane]:
    """The real kube-apiserver + etcd + kube-controller-manager for this session.

    TRELLIS_KUBECONFIG points the suite at an already running one (such as `make up`'s).
    """
    reuse = os.environ.get("TRELLIS_KUBECONFIG")
    if reuse:
        cp = ControlPlane(kubeconfig=Path(reuse), server="")
        _record_version(cp)
        yield cp
        return
    workdir = Path(
        tempfile.mkdtemp(prefix="trellis-testenv-", dir=REPO / "build" if (REPO / "build").is_dir() else None)
    )
    proc, cp = _start_testenv(workdir)
    try:
        _record_version(cp)
        yield cp
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
        if proc.returncode == 0:
            shutil.rmtree(workdir, ignore_errors=True)


def _record_version(cp: ControlPlane) -> None:
    out = cp.kubectl("version", "-o", "json").stdout
    server = json.loads(out)["serverVersion"]
    _server_version.append(f"{server['gitVersion']} ({server['platform']})")
    print(f"\nkube-apiserver server version: {_server_version[-1]}")


@pytest.fixture(scope="session")
def node(control_plane: ControlPlane) -> Iterator[Node]:
    """A real node (kubelet, containerd, kube-proxy; hack/labnode) for this session, started on
    first use. With TRELLIS_KUBECONFIG, `make up`'s node is reused if it runs."""
    with session_node(control_plane) as running:
        print("\n" + describe(control_plane, running))
        yield running


@pytest.fixture(scope="session")
def crds(control_plane: ControlPlane) -> ControlPlane:
    """All Trellis CRDs applied once and Established."""
    control_plane.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(REPO / "crds"))
    control_plane.kubectl(
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd",
        "-l",
        "app.kubernetes.io/part-of=trellis",
    )
    return control_plane


def _namespace_name(nodeid: str) -> str:
    base = re.sub(r"[^a-z0-9-]+", "-", nodeid.split("::")[-1].lower()).strip("-")[:40].strip("-")
    return f"t-{base}-{secrets.token_hex(3)}"


@pytest.fixture
def namespace(control_plane: ControlPlane, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace for one test, deleted (and its deletion awaited) afterwards."""
    name = _namespace_name(request.node.nodeid)
    control_plane.kubectl("create", "namespace", name)
    yield name
    control_plane.kubectl("delete", "namespace", name, "--wait=false", check=False)

    def gone() -> bool:
        proc = control_plane.kubectl("get", "namespace", name, check=False)
        return proc.returncode != 0 and "NotFound" in proc.stderr

    wait_for(gone, timeout=120, interval=0.5, what=f"namespace {name} deletion")


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    path = tmp_path / "logs"
    path.mkdir()
    return path


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _server_version:
        terminalreporter.write_line(f"real kube-apiserver used by this session: {_server_version[0]}")
    for text in release_summary:
        terminalreporter.write_line(text)
