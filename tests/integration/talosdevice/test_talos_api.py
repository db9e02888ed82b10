"""Installed means the device's Talos API answered MachineService.Version with the cluster's certificates.

The Talos side is the real stand-in (hack/guest) serving its API as a local process
(`trellis-guest api --config FILE --listen 127.0.0.1:PORT`), with the config the boot service served
for the device: the same gRPC server, certificates and Version answer the rack's VMs give.
"""

from __future__ import annotations

import base64
import os
import re
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests
import yaml

from tests.integration.talosdevice.conftest import cluster, events, get, patch, wait_ready
from tests.support.bootservice import BootServiceProcess, running_boot_service
from tests.support.kube import ControlPlane
from tests.support.operators import OperatorProcess
from tests.support.wait import wait_for
from trellis.operators.talosdevice.bundle import generate_bundle
from trellis.operators.talosdevice.contract import contract_for

REPO = Path(__file__).resolve().parents[3]
MAC = "52:54:00:be:ef:51"


@pytest.fixture(scope="module")
def guest_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """trellis-guest for the host: seconds with a warm Go cache (the module is in hack/guest/go.sum)."""
    out = tmp_path_factory.mktemp("guest") / "trellis-guest"
    env = {**os.environ, "GOTOOLCHAIN": "local", "GOFLAGS": "-mod=mod", "CGO_ENABLED": "0"}
    subprocess.run(["go", "build", "-o", str(out), "."], cwd=REPO / "hack" / "guest", env=env, check=True)
    return out


@pytest.fixture
def boot(
    crds: ControlPlane, talos_operator: OperatorProcess, namespace: str, tmp_path: Path
) -> Iterator[BootServiceProcess]:
    with running_boot_service(crds, tmp_path / "logs", namespace) as service:
        yield service


@contextmanager
def standin_api(binary: Path, config: Path, port: int) -> Iterator[str]:
    """The stand-in's Talos API on 127.0.0.1:port; yields its installed marker line."""
    proc = subprocess.Popen(
        [str(binary), "api", "--config", str(config), "--listen", f"127.0.0.1:{port}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        marker = proc.stdout.readline()
        assert "stage=installed" in marker, marker + proc.stdout.read()
        yield marker
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def with_foreign_ca(config: str) -> str:
    """The same config holding another cluster's machine CA (certificate and key)."""
    other = generate_bundle(contract_for("v1.12.0")).os
    docs = list(yaml.safe_load_all(config))
    docs[0]["machine"]["ca"] = {
        "crt": base64.b64encode(other.crt.encode()).decode(),
        "key": base64.b64encode(other.key.encode()).decode(),
    }
    return yaml.safe_dump_all(docs, sort_keys=False)


def test_installed_when_the_standin_answers_version(
    crds: ControlPlane,
    talos_operator: OperatorProcess,
    boot: BootServiceProcess,
    guest_binary: Path,
    namespace: str,
    tmp_path: Path,
) -> None:
    crds.apply(cluster("lab", endpoint="https://lab.example:6443"), namespace=namespace)
    wait_ready(crds, "talosclusters", "lab", namespace, "True")
    ipxe = {"mac": MAC, "uuid": "4c4c4544-0051", "serial": "SN 0051", "arch": "x86_64"}
    assert requests.get(f"{boot.url}/ipxe", params=ipxe, timeout=10).ok
    name = "mac-525400beef51"
    wait_for(lambda: get(crds, "talosdevices", name, namespace), what="discovered device")
    # A control plane: its config carries the machine CA's key, so the stand-in's API certificate
    # is issued by the cluster's OS CA as apid's is (a worker's comes from trustd).
    interfaces = [{"selector": {"hardwareAddr": MAC}, "addresses": ["127.0.0.1/8"]}]
    spec = {"approval": "Approved", "role": "controlplane", "network": {"interfaces": interfaces}}
    patch(crds, namespace, "talosdevices", name, {"spec": spec})
    wait_ready(crds, "talosdevices", name, namespace, "True")

    def talos_script() -> str | None:
        r = requests.get(f"{boot.url}/ipxe", params=ipxe, timeout=10)
        return r.text if r.ok and "kernel " in r.text else None

    script = wait_for(talos_script, what="talos script")
    match = re.search(r"talos\.config=(\S+)", script)
    assert match, script
    served = requests.get(match.group(1).replace("${uuid}", ipxe["uuid"]), timeout=10)
    assert served.status_code == 200, served.text

    def phase() -> str:
        return str(get(crds, "talosdevices", name, namespace)["status"].get("phase"))

    wait_for(lambda: phase() == "ConfigServed", what="ConfigServed")
    port = int(talos_operator.extra["talos_api_port"])

    # A stand-in holding another cluster's CA: its certificate does not chain to our OS CA and it
    # refuses our client certificate. The device stays ConfigServed.
    foreign = tmp_path / "foreign.yaml"
    foreign.write_text(with_foreign_ca(served.text))
    with standin_api(guest_binary, foreign, port):
        time.sleep(7)  # more than one resync period of the operator under test (5 s)
        assert phase() == "ConfigServed"
    assert not events(crds, namespace, name, "Installed")

    config = tmp_path / "served.yaml"
    config.write_text(served.text)
    start = time.monotonic()
    with standin_api(guest_binary, config, port) as marker:
        assert "ca=machine" in marker and "version=v1.12.0" in marker
        wait_for(lambda: phase() == "Installed", timeout=30, what="phase Installed")
    status = get(crds, "talosdevices", name, namespace)["status"]
    # The installer image of the cluster's talosVersion is what the stand-in reports.
    assert status["talosVersion"] == "v1.12.0"
    [event] = events(crds, namespace, name, "Installed")
    assert "Talos v1.12.0 answers at 127.0.0.1:" in event["message"]
    print(f"Installed {time.monotonic() - start:.1f} s after the stand-in's API came up")
