"""The Talos stand-in's day-2 API (hack/guest) in api mode on loopback, driven like the operator does.

`trellis-guest api --config F --listen 127.0.0.1:PORT --state-dir DIR` serves Talos' MachineService
(Version, ApplyConfiguration, Upgrade, Reset) over mutual TLS with the cluster's OS CA; a "reboot"
closes the listener for --reboot-seconds and serves the new state. The calls go through the Python
stubs generated from Talos' protos, with an admin client certificate minted from the bundle.
Control planes also serve trustd (SecurityService.Certificate), from which workers get their API
certificate. No VMs: the same code runs as PID 1 of the rack's VMs.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from google.protobuf import empty_pb2

from tests.support.apid import self_signed_ca
from tests.support.bmc import free_tcp_port
from tests.support.kube import REPO
from tests.support.talos import cluster_spec, device_spec
from trellis.api.talos import TalosClusterSpec, TalosDeviceSpec
from trellis.operators.talosdevice.bundle import SecretsBundle, admin_client_certificate, generate_bundle
from trellis.operators.talosdevice.contract import contract_for
from trellis.operators.talosdevice.render import ClusterInput, DeviceInput, render_device
from trellis.operators.talosdevice.stubs import load

pytestmark = pytest.mark.integration

OLD, NEW = "v1.12.0", "v1.12.1"
INSTALLER = "ghcr.io/siderolabs/installer"
REBOOT_SECONDS = 1.0


@pytest.fixture(scope="module")
def guest_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("guest") / "trellis-guest"
    env = {**os.environ, "GOTOOLCHAIN": "local", "GOFLAGS": "-mod=mod", "CGO_ENABLED": "0"}
    subprocess.run(["go", "build", "-o", str(out), "."], cwd=REPO / "hack" / "guest", env=env, check=True)
    return out


@pytest.fixture(scope="module")
def bundle() -> SecretsBundle:
    return generate_bundle(contract_for(OLD))


def render(bundle: SecretsBundle, role: str, mac: str = "52:54:00:5e:00:01") -> str:
    spec = cluster_spec(
        endpoint="https://127.0.0.1:6443", talosVersion=OLD, installerImage=f"{INSTALLER}:{OLD}"
    )
    cluster = ClusterInput("lab", TalosClusterSpec.model_validate(spec))
    interfaces = [{"selector": {"hardwareAddr": mac}, "addresses": ["127.0.0.1/8"]}]
    device = device_spec(mac, role=role, hostname=f"{role}-1", network={"interfaces": interfaces})
    return render_device(
        cluster, DeviceInput("node", TalosDeviceSpec.model_validate(device)), bundle
    ).to_yaml()


def patched(config: str, **machine: Any) -> str:
    docs = list(yaml.safe_load_all(config))
    docs[0]["machine"].update(machine)
    return yaml.safe_dump_all(docs, sort_keys=False)


class StandIn:
    """One `trellis-guest api` process; its output lines are collected for marker checks."""

    def __init__(self, binary: Path, config: str, workdir: Path, *extra: str) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.state = workdir / "state"
        self.port = free_tcp_port()
        (workdir / "config.yaml").write_text(config)
        argv = [
            str(binary), "api", "--config", str(workdir / "config.yaml"),
            "--listen", f"127.0.0.1:{self.port}", "--state-dir", str(self.state),
            "--reboot-seconds", str(REBOOT_SECONDS), *extra,
        ]  # fmt: skip
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        self._changed = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()

    def wait(self, pattern: str, count: int = 1, timeout: float = 30.0) -> str:
        """The count-th output line matching pattern (a regex)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                hits = [line for line in self.lines if re.search(pattern, line)]
                if len(hits) >= count:
                    return hits[count - 1]
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no {pattern!r} (#{count}) in:\n" + "\n".join(self.lines))
                self._changed.wait(left)

    def calls(self) -> list[dict[str, Any]]:
        path = self.state / "calls.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
        self.proc.wait(timeout=10)


@pytest.fixture
def standins(guest_binary: Path, tmp_path: Path) -> Iterator[Any]:
    started: list[StandIn] = []

    def start(config: str, *extra: str, name: str = "node", wait: bool = True) -> StandIn:
        s = StandIn(guest_binary, config, tmp_path / name, *extra)
        started.append(s)
        if wait:
            s.wait(r"stage=installed ")
        return s

    yield start
    for s in started:
        s.stop()


class Client:
    """MachineService over mTLS as the operator calls it (root: the OS CA; admin client certificate)."""

    def __init__(self, bundle: SecretsBundle, port: int, ca_crt: str | None = None) -> None:
        client = admin_client_certificate(bundle)
        creds = grpc.ssl_channel_credentials(
            root_certificates=(ca_crt or bundle.os.crt).encode(),
            private_key=client.key.replace("ED25519 PRIVATE KEY", "PRIVATE KEY").encode(),
            certificate_chain=client.crt.encode(),
        )
        self.pb, grpc_mod = load()
        self.channel = grpc.secure_channel(f"127.0.0.1:{port}", creds)
        self.stub = grpc_mod.MachineServiceStub(self.channel)

    def version(self) -> str:
        return str(self.stub.Version(empty_pb2.Empty(), timeout=5).messages[0].version.tag)

    def apply(self, config: str, mode: str, dry_run: bool = False) -> Any:
        req = self.pb.ApplyConfigurationRequest(
            data=config.encode(), mode=self.pb.ApplyConfigurationRequest.Mode.Value(mode), dry_run=dry_run
        )
        return self.stub.ApplyConfiguration(req, timeout=10).messages[0]

    def mode(self, message: Any) -> str:
        return str(self.pb.ApplyConfigurationRequest.Mode.Name(message.mode))

    def close(self) -> None:
        self.channel.close()


def new_client(bundle: SecretsBundle, port: int, ca_crt: str | None = None) -> Client:
    return Client(bundle, port, ca_crt)


def wait_version(bundle: SecretsBundle, port: int, timeout: float = 20.0) -> str:
    """Version once the node serves again (each try on a fresh channel, as the operator does)."""
    deadline = time.monotonic() + timeout
    while True:
        client = new_client(bundle, port)
        try:
            return client.version()
        except grpc.RpcError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
        finally:
            client.close()


def test_no_reboot_applies_an_immediate_change(standins: Any, bundle: SecretsBundle) -> None:
    config = render(bundle, "controlplane")
    node = standins(config)
    client = new_client(bundle, node.port)
    assert client.version() == OLD
    changed = patched(config, nodeLabels={"rack": "b"}, sysctls={"net.core.somaxconn": "1024"})
    msg = client.apply(changed, "NO_REBOOT")
    assert client.mode(msg) == "NO_REBOOT"
    assert msg.mode_details == "Applied configuration without a reboot"
    assert (node.state / "config.yaml").read_text() == changed
    assert client.version() == OLD  # same server: no reboot
    assert not [line for line in node.lines if "stage=reboot" in line]
    node.wait(r"stage=api-call method=ApplyConfiguration mode=NO_REBOOT result=applied$")
    assert node.calls()[-1] | {"time": None} == {
        "time": None,
        "method": "ApplyConfiguration",
        "mode": "NO_REBOOT",
        "result": "applied",
    }


def test_no_reboot_refuses_a_reboot_change_and_auto_reboots(standins: Any, bundle: SecretsBundle) -> None:
    config = render(bundle, "controlplane")
    node = standins(config)
    client = new_client(bundle, node.port)
    changed = patched(config, env={"HTTP_PROXY": "http://proxy:3128"})
    with pytest.raises(grpc.RpcError) as refused:
        client.apply(changed, "NO_REBOOT")
    # Talos (v1alpha1_server.go, 1.10-1.12) answers InvalidArgument, not FailedPrecondition.
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "this config change can't be applied in immediate mode" in str(refused.value.details())
    assert "machine.env" in str(refused.value.details())
    assert (node.state / "config.yaml").read_text() == config
    node.wait(r"method=ApplyConfiguration mode=NO_REBOOT result=error code=InvalidArgument$")

    dry = client.apply(changed, "AUTO", dry_run=True)
    assert dry.mode_details.startswith(
        "Dry run summary:\nApplied configuration with a reboot (skipped in dry-run)."
    )
    assert (node.state / "config.yaml").read_text() == config
    node.wait(r"method=ApplyConfiguration mode=AUTO result=dry-run dry_run=true$")

    msg = client.apply(changed, "AUTO")
    assert client.mode(msg) == "REBOOT"
    assert msg.mode_details.startswith("Applied configuration with a reboot: this config change")
    client.close()
    node.wait(r"stage=reboot reason=apply-config")
    with pytest.raises(grpc.RpcError) as down:
        new_client(bundle, node.port).version()
    assert down.value.code() == grpc.StatusCode.UNAVAILABLE
    node.wait(r"stage=installed ", count=2)
    assert wait_version(bundle, node.port) == OLD
    assert (node.state / "config.yaml").read_text() == changed


def test_staged_applies_at_the_next_boot(standins: Any, bundle: SecretsBundle) -> None:
    config = render(bundle, "controlplane")
    node = standins(config)
    client = new_client(bundle, node.port)
    changed = patched(config, env={"A": "b"})
    msg = client.apply(changed, "STAGED")
    assert client.mode(msg) == "STAGED"
    assert msg.mode_details == "Staged configuration to be applied after the next reboot"
    assert (node.state / "staged.yaml").read_text() == changed
    assert (node.state / "config.yaml").read_text() == config
    # Any reboot applies it: here an upgrade's.
    client.stub.Upgrade(client.pb.UpgradeRequest(image=f"{INSTALLER}:{NEW}"), timeout=10)
    node.wait(r"stage=staged-applied ")
    assert wait_version(bundle, node.port) == NEW
    assert (node.state / "config.yaml").read_text() == changed
    assert not (node.state / "staged.yaml").exists()


def test_upgrade_reports_the_new_tag_after_the_reboot(standins: Any, bundle: SecretsBundle) -> None:
    node = standins(render(bundle, "controlplane"))
    client = new_client(bundle, node.port)
    reply = client.stub.Upgrade(
        client.pb.UpgradeRequest(image=f"{INSTALLER}:{NEW}", preserve=True), timeout=10
    )
    assert reply.messages[0].ack == "Upgrade request received"
    assert reply.messages[0].actor_id
    node.wait(
        rf"stage=api-call method=Upgrade image={INSTALLER}:{NEW} staged=false force=false preserve=true "
        r"result=accepted"
    )
    node.wait(r"stage=reboot reason=upgrade")
    node.wait(rf"stage=upgraded from={OLD} to={NEW}")
    assert wait_version(bundle, node.port) == NEW
    assert (node.state / "version").read_text().strip() == NEW
    assert node.calls()[-1]["image"] == f"{INSTALLER}:{NEW}"


def test_upgrade_rollback_fault_keeps_the_old_tag(standins: Any, bundle: SecretsBundle) -> None:
    node = standins(render(bundle, "controlplane"), "--fault", "upgrade-rollback")
    client = new_client(bundle, node.port)
    reply = client.stub.Upgrade(client.pb.UpgradeRequest(image=f"{INSTALLER}:{NEW}"), timeout=10)
    assert reply.messages[0].ack == "Upgrade request received"
    node.wait(rf"stage=upgrade-rollback version={OLD} attempted={NEW} fault=upgrade-rollback")
    node.wait(r"stage=installed ", count=2)
    assert wait_version(bundle, node.port) == OLD


@pytest.mark.parametrize("reboot", [False, True])
def test_reset_wipes_and_stops_serving(standins: Any, bundle: SecretsBundle, reboot: bool) -> None:
    node = standins(render(bundle, "controlplane"))
    client = new_client(bundle, node.port)
    req = client.pb.ResetRequest(
        graceful=True, reboot=reboot, mode=client.pb.ResetRequest.WipeMode.Value("SYSTEM_DISK")
    )
    reply = client.stub.Reset(req, timeout=10)
    assert reply.messages[0].actor_id
    node.wait(
        rf"stage=api-call method=Reset reboot={str(reboot).lower()} graceful=true mode=SYSTEM_DISK "
        r"result=accepted"
    )
    node.wait(r"stage=wiped full=true")
    node.wait(r"stage=reboot reason=reset" if reboot else r"stage=poweroff reason=reset")
    assert node.proc.wait(timeout=10) == 0
    assert not (node.state / "config.yaml").exists()
    assert node.calls()[-1]["method"] == "Reset"


def test_foreign_client_certificate_is_refused(standins: Any, bundle: SecretsBundle) -> None:
    node = standins(render(bundle, "controlplane"))
    other = generate_bundle(contract_for(OLD))
    foreign = new_client(other, node.port, ca_crt=bundle.os.crt)  # trusts our CA, presents another's cert
    with pytest.raises(grpc.RpcError):
        foreign.apply(render(bundle, "controlplane"), "NO_REBOOT")
    wrong_ca, _ = self_signed_ca()
    with pytest.raises(grpc.RpcError):
        new_client(bundle, node.port, ca_crt=wrong_ca).version()
    assert node.calls() == []


def test_worker_gets_its_certificate_from_trustd(standins: Any, bundle: SecretsBundle) -> None:
    trustd = f"127.0.0.1:{free_tcp_port()}"
    worker_config = render(bundle, "worker", mac="52:54:00:5e:00:02")
    assert not next(yaml.safe_load_all(worker_config))["machine"]["ca"].get("key")
    # The worker starts first and retries (every 2 s in api mode) until the control plane's trustd answers.
    worker = standins(worker_config, "--trustd", trustd, name="worker", wait=False)
    worker.wait(rf"stage=trustd-request attempt=1 endpoint={re.escape(trustd)} result=error")
    cp = standins(render(bundle, "controlplane"), "--trustd-listen", trustd, name="cp")
    cp.wait(rf"stage=trustd listen={re.escape(trustd)}")
    line = worker.wait(r"stage=installed ")
    assert "ca=trustd" in line
    worker.wait(rf"stage=trustd-request attempt=\d+ endpoint={re.escape(trustd)} result=ok")
    cp.wait(r"stage=trustd-call result=signed subject=worker-1")
    assert wait_version(bundle, worker.port) == OLD
    # Without the key, the worker cannot have signed this itself: the cluster's OS CA verified it.
    assert new_client(bundle, worker.port).version() == OLD


def test_rack_passes_faults_as_smbios_oem_strings() -> None:
    from rack.machine import MachinePaths, MachineSpec, build_argv

    spec = MachineSpec(
        name="vm0", mac="52:54:00:00:00:01", oem_strings=["a=1,2"], faults=["upgrade-rollback"]
    )
    argv = build_argv(spec, MachinePaths.under(Path("/tmp/rack"), spec))
    values = [
        argv[i + 1] for i, arg in enumerate(argv) if arg == "-smbios" and argv[i + 1].startswith("type=11")
    ]
    assert values == ["type=11,value=a=1,,2", "type=11,value=trellis-guest.fault=upgrade-rollback"]
