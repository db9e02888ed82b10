"""Run a Trellis operator as a real ``kopf run`` subprocess against the test control plane."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.kube import REPO, ControlPlane
from tests.support.wait import wait_for


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class OperatorProcess:
    module: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    health_url: str
    extra: dict[str, str] = field(default_factory=dict)

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.health_url, timeout=2) as resp:
                return bool(resp.status == 200)
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL: the crash tests' way of stopping an operator mid-work."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()


def start_operator(
    cp: ControlPlane,
    module: str,
    log_dir: Path,
    namespace: str | None = None,
    env: dict[str, str] | None = None,
    args: Sequence[str] = (),
    timeout: float = 60,
) -> OperatorProcess:
    """Start ``kopf run -m module`` and wait until its liveness endpoint answers."""
    port = free_port()
    health = f"http://127.0.0.1:{port}/healthz"
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{module.replace('.', '_')}-{port}.log"
    scope = ["--namespace", namespace] if namespace else ["--all-namespaces"]
    full_env = cp.env()
    full_env["PYTHONPATH"] = f"{REPO}:{full_env.get('PYTHONPATH', '')}"
    full_env["TRELLIS_TEST_MODE"] = "1"
    full_env.update(env or {})
    cmd = [
        sys.executable, "-m", "kopf", "run", "--standalone", "--verbose",
        "-L", health, *scope, "-m", module, *args,
    ]  # fmt: skip
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=full_env, cwd=REPO)
    op = OperatorProcess(module, proc, log_path, health)

    def ready() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"operator {module} exited early:\n{op.logs()[-4000:]}")
        return op.healthy()

    wait_for(ready, timeout=timeout, what=f"operator {module} liveness")
    return op


@contextmanager
def running_operator(
    cp: ControlPlane, module: str, log_dir: Path, **kwargs: object
) -> Iterator[OperatorProcess]:
    op = start_operator(cp, module, log_dir, **kwargs)  # type: ignore[arg-type]
    try:
        yield op
    finally:
        op.stop()
        if os.environ.get("TRELLIS_SHOW_OPERATOR_LOGS"):
            print(op.logs())
