"""A rack of virtual servers on the test node's boot network, for end-to-end boot tests.

The boot network is a bridge inside the test node's network namespace, so the managed dnsmasq
(a hostNetwork Pod on that node) serves DHCP on it and the machines reach the boot service on the
node's address, as a rack's servers reach a Kubernetes node on their boot VLAN. The machines are
QEMU processes behind IPMI/Redfish BMC emulators (``python -m rack serve``, hack/rack/) listening on
the node's host-side address, the one host address Pods (the BareMetalHost operator) can reach.
Traffic from the machines to that host address (guest images, the RDS simulator's iSCSI portal)
is masqueraded to the node address, because the host has no route back to the boot network.

Where a boot stopped is read from the guests' serial logs: the Talos stand-in (hack/guest/) prints
``trellis-guest: stage=<stage> key=value ...`` lines.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.kube import REPO
from tests.support.wait import wait_for

GUEST_DIR = REPO / "build" / "lab" / "guest"
BOOT_BRIDGE = "trboot0"
BOOT_CIDR = "10.198.0.0/24"
BOOT_GATEWAY = "10.198.0.1"
BOOT_PREFIX = 24


def rack_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO), str(REPO / "hack"), env.get("PYTHONPATH")) if p
    )
    return env


def qemu_unusable_reason(firmware: str = "bios") -> str | None:
    """None when QEMU boots firmware here (a real boot, not a look at /dev/kvm), else why not."""
    proc = subprocess.run(
        [str(REPO / ".venv" / "bin" / "python"), "-m", "rack", "check", "--firmware", firmware],
        capture_output=True,
        text=True,
        env=rack_env(),
        timeout=180,
        check=False,
    )
    return None if proc.returncode == 0 else (proc.stdout + proc.stderr).strip() or "rack check failed"


def masquerade_to_host(netns: str, host_ip: str) -> None:
    """Let machines on the boot network reach the host-side address (idempotent)."""
    rule = ["POSTROUTING", "-s", BOOT_CIDR, "-d", f"{host_ip}/32", "-j", "MASQUERADE"]
    base = ["ip", "netns", "exec", netns, "iptables", "-t", "nat"]
    if subprocess.run([*base, "-C", *rule], capture_output=True, check=False).returncode != 0:
        subprocess.run([*base, "-A", *rule], capture_output=True, check=True)


@dataclass(frozen=True)
class Stage:
    name: str
    fields: dict[str, str]


def guest_stages(serial_log: Path, offset: int = 0) -> list[Stage]:
    """The stand-in's console markers in a serial log (from byte ``offset``), in order."""
    try:
        data = serial_log.read_bytes()[offset:].decode(errors="replace")
    except FileNotFoundError:
        return []
    stages = []
    for line in data.splitlines():
        start = line.find("trellis-guest: stage=")
        if start < 0:
            continue
        try:
            words = shlex.split(line[start + len("trellis-guest: ") :])
        except ValueError:
            continue
        fields = dict(w.split("=", 1) for w in words if "=" in w)
        stages.append(Stage(fields.pop("stage", ""), fields))
    return stages


@dataclass
class Rack:
    """A running ``python -m rack serve``: its control endpoint and state directory."""

    proc: subprocess.Popen[str]
    control_url: str
    state_dir: Path
    config: dict[str, Any]

    def machines(self) -> dict[str, dict[str, Any]]:
        with urllib.request.urlopen(f"{self.control_url}/machines", timeout=10) as resp:
            data = json.load(resp)
        items = data["machines"] if isinstance(data, dict) and "machines" in data else data
        if isinstance(items, dict):
            return {str(k): v for k, v in items.items()}
        return {m["name"]: m for m in items}

    def machine(self, name: str) -> dict[str, Any]:
        return self.machines()[name]

    def post(self, name: str, body: dict[str, Any]) -> None:
        req = urllib.request.Request(
            f"{self.control_url}/machines/{name}",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(req, timeout=30):
            pass

    def stages(self, name: str) -> list[Stage]:
        return guest_stages(Path(self.machine(name)["serial_log"]))

    def serial_tail(self, name: str, chars: int = 3000) -> str:
        path = Path(self.machine(name)["serial_log"])
        return path.read_text(errors="replace")[-chars:] if path.exists() else "(no serial log)"


@contextmanager
def running_rack(config: dict[str, Any], state_dir: Path, address: str, control_port: int) -> Iterator[Rack]:
    state_dir.mkdir(parents=True, exist_ok=True)
    config_path = state_dir / "rack.json"
    config_path.write_text(json.dumps(config, indent=2))
    log = (state_dir / "rack.log").open("w")
    proc = subprocess.Popen(
        [
            str(REPO / ".venv" / "bin" / "python"),
            "-m",
            "rack",
            "serve",
            "--config",
            str(config_path),
            "--state-dir",
            str(state_dir),
            "--address",
            address,
            "--control-port",
            str(control_port),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
        env=rack_env(),
    )
    rack = Rack(proc, f"http://{address}:{control_port}", state_dir, config)

    def up() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"rack exited: {(state_dir / 'rack.log').read_text()[-3000:]}")
        try:
            rack.machines()
            return True
        except OSError:
            return False

    try:
        wait_for(up, timeout=60, interval=0.3, what="rack control endpoint")
        yield rack
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


class StageTimeout(AssertionError):
    pass


def wait_stage(
    what: str, probe: Callable[[], Any], timeout: float, diagnostics: Callable[[], str], interval: float = 1.0
) -> Any:
    """wait_for with a per-stage deadline whose failure names the stage and shows where it stopped."""
    started = time.monotonic()
    try:
        return wait_for(probe, timeout=timeout, interval=interval, what=what)
    except AssertionError as exc:
        raise StageTimeout(
            f"stage '{what}' did not finish within {timeout:.0f}s "
            f"(waited {time.monotonic() - started:.0f}s): {exc}\n{diagnostics()}"
        ) from None


@contextmanager
def lab_client(node_netns: str, address: str = "10.198.0.250") -> Iterator[Callable[..., str]]:
    """A machine-like client on the boot network: a namespace joined to the boot bridge by a veth.

    Yields ``curl(url) -> "<status> <body>"`` run from that namespace, so requests reach the boot
    service from the boot network as a machine's do.
    """
    tag = os.urandom(3).hex()
    netns, host_end = f"trellis-labclient-{tag}", f"rkc{tag}"
    run = lambda *argv: subprocess.run(argv, capture_output=True, text=True, check=True)  # noqa: E731
    run("ip", "netns", "add", netns)
    try:
        run(
            "ip",
            "link",
            "add",
            host_end,
            "netns",
            node_netns,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            netns,
        )
        run("ip", "-n", node_netns, "link", "set", host_end, "master", BOOT_BRIDGE, "up")
        run("ip", "-n", netns, "addr", "add", f"{address}/{BOOT_PREFIX}", "dev", "eth0")
        run("ip", "-n", netns, "link", "set", "eth0", "up")
        run("ip", "-n", netns, "link", "set", "lo", "up")
        run("ip", "-n", netns, "route", "add", "default", "via", BOOT_GATEWAY)

        def curl(url: str) -> str:
            proc = subprocess.run(
                [
                    "ip",
                    "netns",
                    "exec",
                    netns,
                    "curl",
                    "-sS",
                    "--max-time",
                    "20",
                    "-w",
                    "\n%{http_code}",
                    url,
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            body, _, status = proc.stdout.rpartition("\n")
            return f"{status or proc.stderr.strip()} {body}"

        yield curl
    finally:
        subprocess.run(["ip", "-n", node_netns, "link", "del", host_end], capture_output=True, check=False)
        subprocess.run(["ip", "netns", "del", netns], capture_output=True, check=False)
