"""Day 2 through the real Talos API: config changes applied, a rolling upgrade, holds and retire.

Three machines (1 control plane, 2 workers) are the real stand-in (hack/guest) serving its Talos
API as local processes on 127.0.0.1-3 with the configs the boot service served them, and a state
directory that records every call they were asked (calls.jsonl). The operator under test talks to
them over mutual TLS with the cluster's admin certificate; workers got their API certificates from
the control plane's trustd. The second worker has the upgrade-rollback fault: it accepts the
upgrade, reboots and comes back with the old release.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.integration.talosdevice.conftest import cluster, device, events, get, patch, wait_ready
from tests.integration.talosdevice.test_talos_api import guest_binary  # noqa: F401 (fixture)
from tests.support.bootservice import BootServiceProcess, running_boot_service
from tests.support.kube import ControlPlane
from tests.support.operators import OperatorProcess
from tests.support.wait import wait_for

pytestmark = pytest.mark.integration
REBOOT_SECONDS = "6"  # long enough for a 3 s busy pass of the operator to see the machine down


@dataclass
class Node:
    name: str
    mac: str
    address: str
    role: str
    state_dir: Path
    proc: subprocess.Popen[str] | None = None

    def calls(self, method: str | None = None) -> list[dict[str, Any]]:
        path = self.state_dir / "calls.jsonl"
        if not path.exists():
            return []
        lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        return [c for c in lines if method is None or c.get("method") == method]


NODES = (
    ("cp1", "52:54:00:d2:00:01", "127.0.0.1", "controlplane"),
    ("w1", "52:54:00:d2:00:02", "127.0.0.2", "worker"),
    ("w2", "52:54:00:d2:00:03", "127.0.0.3", "worker"),
)


@pytest.fixture
def rack(
    crds: ControlPlane,
    talos_operator: OperatorProcess,
    guest_binary: Path,  # noqa: F811
    namespace: str,
    tmp_path: Path,
) -> Iterator[dict[str, Node]]:
    """The three machines installed: configs served by the boot service, stand-ins answering."""
    port = talos_operator.extra["talos_api_port"]
    crds.apply(cluster("lab", endpoint="https://127.0.0.1:6443"), namespace=namespace)
    wait_ready(crds, "talosclusters", "lab", namespace, "True")
    nodes = {n: Node(n, mac, ip, role, tmp_path / n) for n, mac, ip, role in NODES}
    for node in nodes.values():
        addresses = [f"{node.address}/8"]
        body = device(node.name, node.mac, role=node.role, approval="Approved", addresses=addresses)
        crds.apply(body, namespace=namespace)
    with ExitStack() as stack:
        boot = stack.enter_context(running_boot_service(crds, tmp_path / "logs", namespace))
        for node in nodes.values():
            wait_ready(crds, "talosdevices", node.name, namespace, "True")
            config = tmp_path / f"{node.name}.yaml"
            config.write_text(served_config(boot, node.mac))
            args = [str(guest_binary), "api", "--config", str(config), "--listen", f"{node.address}:{port}"]
            args += ["--state-dir", str(node.state_dir), "--reboot-seconds", REBOOT_SECONDS]
            if node.name == "w2":
                args += ["--fault", "upgrade-rollback"]
            log = (tmp_path / f"{node.name}.log").open("w")
            node.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, text=True)
            stack.callback(stop, node)
        for node in nodes.values():
            wait_for(
                lambda n=node: phase(crds, namespace, n.name) == "Installed",
                timeout=60,
                what=f"{node.name} Installed",
            )
        yield nodes


def stop(node: Node) -> None:
    if node.proc is not None and node.proc.poll() is None:
        node.proc.terminate()
        node.proc.wait(timeout=10)


def served_config(boot: BootServiceProcess, mac: str) -> str:
    ipxe = {"mac": mac, "uuid": f"uuid-{mac[-2:]}", "arch": "x86_64"}

    def script() -> str | None:
        r = requests.get(f"{boot.url}/ipxe", params=ipxe, timeout=10)
        return r.text if r.ok and "kernel " in r.text else None

    match = re.search(r"talos\.config=(\S+)", wait_for(script, what=f"talos script for {mac}"))
    assert match
    served = requests.get(match.group(1).replace("${uuid}", ipxe["uuid"]), timeout=10)
    assert served.status_code == 200, served.text
    return served.text


def status(cp: ControlPlane, namespace: str, name: str) -> dict[str, Any]:
    return dict(get(cp, "talosdevices", name, namespace).get("status") or {})


def phase(cp: ControlPlane, namespace: str, name: str) -> str | None:
    return status(cp, namespace, name).get("phase")


def config_state(cp: ControlPlane, namespace: str, name: str) -> dict[str, Any]:
    return dict(status(cp, namespace, name).get("config") or {})


def test_config_changes_reach_installed_machines(
    crds: ControlPlane, rack: dict[str, Node], namespace: str
) -> None:
    for node in rack.values():
        installed = status(crds, namespace, node.name)
        assert installed["config"]["appliedHash"] == installed["servedConfigHash"]
        assert installed["config"]["state"] == "InSync" and installed["talosVersion"] == "v1.12.0"
        assert node.calls("ApplyConfiguration") == []  # an idle pass calls nothing
    crds.kubectl("-n", namespace, "annotate", "td", "w2", "talos.trellis.dev/hold=true")

    # A change Talos applies live: every machine but the held one, without a reboot.
    live = {"strategic": [{"machine": {"sysctls": {"net.core.somaxconn": "65535"}}}]}
    patch(crds, namespace, "talosclusters", "lab", {"spec": {"patches": live}})
    for name in ("cp1", "w1"):
        applied = wait_for(
            lambda n=name: (c := config_state(crds, namespace, n)).get("appliedGeneration") == 2 and c,
            timeout=60,
            what=f"{name} generation 2 applied",
        )
        assert applied["state"] == "InSync" and applied["lastApplyMode"] == "NO_REBOOT"
        [call] = rack[name].calls("ApplyConfiguration")
        assert (call["mode"], call["result"]) == ("NO_REBOOT", "applied")
        assert events(crds, namespace, name, "ConfigApplied")
    held = wait_for(lambda: config_state(crds, namespace, "w2").get("state") == "Held", what="w2 held")
    assert held and rack["w2"].calls("ApplyConfiguration") == []
    crds.kubectl("-n", namespace, "annotate", "td", "w2", "talos.trellis.dev/hold-")
    wait_for(
        lambda: config_state(crds, namespace, "w2").get("appliedGeneration") == 2,
        timeout=60,
        what="w2 applied once the hold is gone",
    )

    # A change that needs a reboot (machine.env): NO_REBOOT is refused, REBOOT applies it.
    needs_reboot = {"strategic": [{"machine": {"env": {"HTTP_PROXY": "http://10.0.0.1:3128"}}}]}
    patch(crds, namespace, "talosdevices", "w1", {"spec": {"patches": needs_reboot}})
    wait_for(
        lambda: (
            (c := config_state(crds, namespace, "w1")).get("appliedGeneration") == 3
            and c.get("state") == "InSync"
        ),
        timeout=90,
        what="w1 generation 3 applied with a reboot and back",
    )
    modes = [(c["mode"], c["result"]) for c in rack["w1"].calls("ApplyConfiguration")]
    assert modes[1:] == [("NO_REBOOT", "error"), ("REBOOT", "reboot")], modes
    assert config_state(crds, namespace, "w1")["lastApplyMode"] == "REBOOT"
    # Others did not change: nothing more was sent to them.
    assert len(rack["cp1"].calls("ApplyConfiguration")) == 1


def test_rolling_upgrade_stops_at_the_first_failure_and_retire_resets(
    crds: ControlPlane, rack: dict[str, Node], namespace: str
) -> None:
    patch(crds, namespace, "talosclusters", "lab", {"spec": {"talosVersion": "v1.12.1"}})

    def rollout() -> dict[str, Any]:
        return dict((get(crds, "talosclusters", "lab", namespace).get("status") or {}).get("upgrade") or {})

    failed = wait_for(lambda: (r := rollout()).get("phase") == "Failed" and r, timeout=180, what="failure")
    assert failed["failedDevice"] == "w2" and failed["upgraded"] == 2, failed
    assert status(crds, namespace, "cp1")["talosVersion"] == "v1.12.1"
    assert status(crds, namespace, "w1")["talosVersion"] == "v1.12.1"
    w2 = status(crds, namespace, "w2")
    assert w2["talosVersion"] == "v1.12.0" and w2["upgrade"]["phase"] == "Failed"
    assert "came back" in w2["upgrade"]["message"]
    # Order: the control plane first, each worker only after the previous machine reported back.
    upgrades = {n: rack[n].calls("Upgrade") for n in rack}
    assert all(len(c) == 1 for c in upgrades.values()), upgrades
    assert upgrades["cp1"][0]["image"] == "ghcr.io/siderolabs/installer:v1.12.1"
    assert upgrades["cp1"][0]["time"] <= upgrades["w1"][0]["time"] <= upgrades["w2"][0]["time"]
    [event] = events(crds, namespace, "w2", "UpgradeFailed")
    assert event["type"] == "Warning"
    # Stopped: nothing is asked again until the retry annotation changes.
    assert len(rack["w2"].calls("Upgrade")) == 1
    crds.kubectl("-n", namespace, "annotate", "tc", "lab", "talos.trellis.dev/retry-upgrade=1")
    wait_for(lambda: len(rack["w2"].calls("Upgrade")) == 2, timeout=30, what="w2 asked again after the retry")
    again = wait_for(
        lambda: (r := rollout()).get("phase") == "Failed" and r.get("retryFor") == "1" and r, timeout=90
    )
    assert again["failedDevice"] == "w2"

    # Retire the worker: deleting the device resets the machine through its Talos API.
    crds.kubectl("-n", namespace, "delete", "td", "w1", "--wait=true", "--timeout=60s")
    [reset] = rack["w1"].calls("Reset")
    assert (reset["result"], reset["graceful"], reset.get("reboot", False)) == ("accepted", True, False), (
        reset
    )
    assert rack["w1"].proc is not None and rack["w1"].proc.wait(timeout=30) == 0  # halted
