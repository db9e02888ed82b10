"""Run the Trellis boot service as a real subprocess against the test control plane."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support.kube import REPO, ControlPlane
from tests.support.operators import free_port
from tests.support.wait import wait_for


@dataclass
class BootServiceProcess:
    proc: subprocess.Popen[bytes]
    url: str
    log_path: Path

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/readyz", timeout=2) as resp:
                return bool(resp.status == 200)
        except OSError:
            return False


@contextmanager
def running_boot_service(
    cp: ControlPlane, log_dir: Path, namespace: str | None, args: Sequence[str] = (), timeout: float = 60
) -> Iterator[BootServiceProcess]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"boot-service-{port}.log"
    env = cp.env()
    env["PYTHONPATH"] = f"{REPO}:{env.get('PYTHONPATH', '')}"
    cmd = [
        sys.executable, "-m", "trellis.operators.talosdevice.bootservice",
        "--listen", "127.0.0.1", "--port", str(port), "--public-url", url,
        *(["--namespace", namespace] if namespace else []), *args,
    ]  # fmt: skip
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)
    service = BootServiceProcess(proc, url, log_path)

    def up() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"boot service exited early:\n{service.logs()[-4000:]}")
        return service.ready()

    try:
        wait_for(up, timeout=timeout, what="boot service /readyz")
        yield service
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
        if os.environ.get("TRELLIS_SHOW_OPERATOR_LOGS"):
            print(service.logs())
