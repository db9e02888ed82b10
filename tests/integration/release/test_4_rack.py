"""Virtual servers boot through the whole chain, run by the release's Pods, nothing mocked between.

BMC power-on (IPMI or Redfish, driven by the BareMetalHost operator) → DHCP from the managed dnsmasq
(a Network with `dhcp.server: dnsmasq`, on the node's boot bridge) with the host's reserved address →
iPXE chains to the boot service → unknown machine recorded as a Pending TalosDevice → approval (by
hand, in advance, or by an auto-approval rule) → the Talos stand-in fetches its config with the
device's token, "installs" to its disk and reboots → its Talos API answers with the cluster's
certificates → TalosDevice Installed → BareMetalHost Provisioned, with one install boot.

The guest is a Talos stand-in (hack/guest/; docs/lab.md says what is Talos and what is not); QEMU
runs with TCG. All machines are powered on together and each test follows one of them through its
stages, with a deadline per stage so a failure says where the boot stopped.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.integration.release.conftest import Release
from tests.support.rackboot import (
    CLUSTER,
    NS,
    RACK_SERVERS,
    UNREGISTERED_SERVER,
    Lab,
    Server,
    boot_through,
    rack_lab,
)
from tests.support.rackenv import GUEST_DIR, lab_client, qemu_unusable_reason, wait_stage
from tests.support.release import BOOT_NODE_PORT, get_json
from tests.support.rossim import RosSim, running_rossim
from tests.support.wait import wait_for
from trellis.operators.talosdevice.bundle import SecretsBundle
from trellis.operators.talosdevice.tokens import device_token, token_key

pytestmark = pytest.mark.integration

SERVERS = RACK_SERVERS
NEW_SERVER = UNREGISTERED_SERVER


ISO = "standin"
ISO_SERVER = Server(
    "vm-iso",
    "7e1a0000-0000-4000-8000-000000000009",
    "52:54:01:c0:00:09",
    "10.198.0.19",
    "bios",
    "ipmi",
    "none",
    boot_source={"type": "isocdrom", "isocdromRef": ISO, "via": "iscsi", "mode": "always"},
)


def iso_objects(rds: RosSim, router: str) -> Callable[[str], list[dict[str, Any]]]:
    """The RDS (the simulator, its iSCSI exports served by a real tgtd) and the stand-in's ISO on it."""
    manifest = json.loads((GUEST_DIR / "manifest.json").read_text())
    sha = next(f["sha256"] for f in manifest["files"] if f["name"] == "standin.iso")

    def build(assets_url: str) -> list[dict[str, Any]]:
        return [
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "rack-rds", "namespace": NS},
                "stringData": {"username": rds.username, "password": rds.password},
            },
            {
                "apiVersion": "trellis.dev/v1alpha1",
                "kind": "Router",
                "metadata": {"name": router},
                "spec": {
                    "address": rds.host,
                    "role": "rds",
                    "sshPort": rds.ssh_port,
                    "credentialsSecretRef": {"name": "rack-rds", "namespace": NS},
                    "sshHostKey": {"knownHosts": rds.known_hosts_line},
                    # The simulator's tgtd keeps LUN 0 for its controller and serves disks at 1.
                    "iscsiLun": 1,
                },
            },
            {
                "apiVersion": "trellis.dev/v1alpha1",
                "kind": "ISOCDROM",
                "metadata": {"name": ISO},
                "spec": {
                    "source": {"url": f"{assets_url}/standin.iso", "sha256": sha},
                    "target": {"routerRef": router},
                    "deletePolicy": "Delete",
                },
            },
        ]

    return build


@pytest.fixture(scope="module")
def lab(release: Release, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    reason = qemu_unusable_reason()
    if reason:
        pytest.skip(f"QEMU cannot boot a virtual machine on this machine: {reason}")
    host = release.node.spec.host_ip
    router = "rack-rds"
    with running_rossim(
        tmp_path_factory.mktemp("rack-rds"),
        tls=False,
        pool_size="2G",
        extra_args=["--host", host, "--iscsi-portal", f"{host}:3260"],
    ) as rds:
        try:
            with rack_lab(
                release,
                [*SERVERS, ISO_SERVER, NEW_SERVER],
                tmp_path_factory.mktemp("rack"),
                iso_objects(rds, router),
            ) as lab:
                yield lab
        finally:
            release.cp.kubectl("delete", "isocdrom", ISO, "--timeout=120s", check=False, timeout=150)
            release.cp.kubectl("delete", "router", router, "--timeout=60s", check=False, timeout=90)
            release.cp.kubectl("delete", "secret", "rack-rds", "-n", NS, check=False)


@pytest.mark.parametrize("server", SERVERS, ids=[s.name for s in SERVERS])
def test_machine_boots_to_installed(lab: Lab, server: Server) -> None:
    boot_through(lab, server)


PROBE = "probe-1"
PROBE_MAC = "52:54:01:c0:00:99"  # no machine: requests come from a client on the boot network


def probe_device() -> dict[str, Any]:
    return {
        "apiVersion": "trellis.dev/v1alpha1",
        "kind": "TalosDevice",
        "metadata": {"name": PROBE, "namespace": NS},
        "spec": {"mac": PROBE_MAC, "clusterRef": CLUSTER, "role": "controlplane", "approval": "Approved"},
    }


def ready_device(lab: Lab) -> dict[str, Any]:
    def ready() -> dict[str, Any] | None:
        dev = lab.get("talosdevices", PROBE)
        conditions = ((dev or {}).get("status") or {}).get("conditions") or []
        ok = any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)
        return dev if dev and ok else None

    return dict(wait_for(ready, timeout=60, what=f"TalosDevice {PROBE} Ready"))


def token_of(lab: Lab, device: dict[str, Any]) -> str:
    secret = lab.get("secret", f"{CLUSTER}-talos-secrets") or {}
    bundle = SecretsBundle.from_yaml(base64.b64decode(secret["data"]["bundle.yaml"]).decode())
    meta = device["metadata"]
    return device_token(token_key(bundle.secretbox_secret), NS, meta["name"], meta["uid"], PROBE_MAC)


def denials(lab: Lab, uid: str) -> int:
    events = get_json(lab.release.cp, "events", "-n", NS, "--field-selector", "reason=ConfigDenied")["items"]
    return sum(e.get("count") or 1 for e in events if e["involvedObject"].get("uid") == uid)


def test_config_endpoint_refuses_what_docs_talos_md_says_it_refuses(lab: Lab) -> None:
    """docs/talos.md "Security of the config endpoint", from a client on the boot network."""
    boot = f"http://{lab.release.node.spec.node_ip}:{BOOT_NODE_PORT}"
    lab.release.cp.apply([probe_device()])
    device = ready_device(lab)
    uid, token = device["metadata"]["uid"], token_of(lab, device)
    config = f"{boot}/config?mac={PROBE_MAC}"
    with lab_client(lab.release.node.spec.netns) as curl:

        def refused(url: str, why: str) -> None:
            before = denials(lab, uid)
            answer = curl(url)
            assert answer.startswith("403 "), f"{why}: {answer[:200]}"
            assert "machine:" not in answer, f"{why}: a config was served"
            wait_for(lambda: denials(lab, uid) > before, timeout=30, what=f"ConfigDenied Event ({why})")

        refused(config, "no token")
        refused(f"{config}&token=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "wrong token")
        # The right token, but this device never network-booted through the service.
        refused(f"{config}&token={token}", "no network boot within the boot window")
        # ...and once it has (its iPXE script fetched from the boot network), the same token works.
        assert curl(f"{boot}/ipxe?mac={PROBE_MAC}").startswith("200 ")
        served = curl(f"{config}&token={token}")
        assert served.startswith("200 ") and "machine:" in served, served[:300]

        # Recreated device: a new UID, so the old token is stale even within the boot window.
        lab.kubectl("delete", "talosdevices", PROBE, "-n", NS, "--wait=true", "--timeout=60s")
        lab.release.cp.apply([probe_device()])
        device = ready_device(lab)
        uid = device["metadata"]["uid"]
        assert curl(f"{boot}/ipxe?mac={PROBE_MAC}").startswith("200 ")
        refused(f"{config}&token={token}", "stale token of the deleted device")
        served = curl(f"{config}&token={token_of(lab, device)}")
        assert served.startswith("200 ") and "machine:" in served, served[:300]
    lab.kubectl("delete", "talosdevices", PROBE, "-n", NS, "--wait=true", "--timeout=60s")


def test_iso_on_the_rds_boots_over_iscsi(lab: Lab) -> None:
    """The mkube CD-ROM flow: ISOCDROM uploads the ISO to the RDS and exports it over iSCSI, the
    host's reservation carries the export as DHCP root-path, and iPXE sanboots it."""
    show = lab.diagnostics(ISO_SERVER)
    iso = wait_stage("ISOCDROM Ready", lambda: _ready_iso(lab), 240, show)
    root_path = f"iscsi:{iso['portalAddress']}:::{iso['lun']}:{iso['iqn']}"

    def reservation_has_root_path() -> bool:
        res = lab.get("dhcpreservations", f"{ISO_SERVER.name}-eth0") or {}
        return ((res.get("spec") or {}).get("pxe") or {}).get("rootPath") == root_path

    wait_stage("root-path on the boot NIC's reservation", reservation_has_root_path, 120, show)

    def iso_booted() -> bool:
        return any(
            s.name == "iso" and s.fields.get("ip") == ISO_SERVER.ip for s in lab.rack.stages(ISO_SERVER.name)
        )

    wait_stage("stand-in booted from the ISO over iSCSI", iso_booted, 420, show)
    serial = lab.rack.serial_tail(ISO_SERVER.name, 200_000)
    assert root_path.split(":")[-1] in serial or "SAN" in serial, "iPXE did not report a SAN boot"
    # Nothing was written to the machine's own disk: the stand-in ran from the ISO.
    assert not any(s.name == "install" for s in lab.rack.stages(ISO_SERVER.name))


def _ready_iso(lab: Lab) -> dict[str, Any] | None:
    proc = lab.kubectl("get", "isocdrom", ISO, "-o", "json", check=False)
    if proc.returncode != 0:
        return None
    status = json.loads(proc.stdout).get("status") or {}
    ok = any(c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions") or [])
    return status if ok and status.get("iqn") else None


# --- day 2 on the installed machines (docs/talos.md "Day 2") ----------------------------------------
# vm-bios: the reboot apply, the failing upgrade (its stand-in has the rollback fault), reinstall
# and retire; vm-redfish upgrades first among the workers (its device's name sorts first).
WORKER = FAILING_WORKER = SERVERS[0]
FIRST_WORKER = SERVERS[2]


def api_calls(lab: Lab, server: Server, method: str) -> list[dict[str, str]]:
    """What the machine's Talos API was asked, from the stand-in's console markers."""
    return [
        s.fields
        for s in lab.rack.stages(server.name)
        if s.name == "api-call" and s.fields.get("method") == method
    ]


def device_status(lab: Lab, server: Server) -> dict[str, Any]:
    return dict((lab.device(server) or {}).get("status") or {})


def test_day2_config_changes_apply_live_or_with_a_reboot(lab: Lab) -> None:
    """A live change (nvme_tcp for the RDS CSI driver) reaches every machine without a reboot; a
    change that needs one (machine.env) reboots only the machine it concerns, back from its disk."""
    for server in SERVERS:
        assert device_status(lab, server).get("phase") == "Installed", server.name
    boots = {s.name: len(lab.rack.machine(s.name)["boots"]) for s in SERVERS}
    patch = {"spec": {"storage": {"rdsCSI": True}}}
    lab.kubectl("patch", "talosclusters", CLUSTER, "-n", NS, "--type=merge", "-p", json.dumps(patch))
    for server in SERVERS:
        config = wait_stage(
            f"{server.name}: live config applied",
            lambda s=server: (
                (c := device_status(lab, s).get("config") or {}).get("appliedGeneration") == 2 and c
            ),
            120,
            lab.diagnostics(server),
        )
        assert (config["state"], config["lastApplyMode"]) == ("InSync", "NO_REBOOT"), config
        assert [c.get("result") for c in api_calls(lab, server, "ApplyConfiguration")] == ["applied"]
    assert {s.name: len(lab.rack.machine(s.name)["boots"]) for s in SERVERS} == boots  # nobody rebooted

    env = {
        "spec": {"patches": {"strategic": [{"machine": {"env": {"HTTP_PROXY": "http://10.198.0.1:3128"}}}]}}
    }
    name = lab.device(WORKER)["metadata"]["name"]
    lab.kubectl("patch", "talosdevices", name, "-n", NS, "--type=merge", "-p", json.dumps(env))
    config = wait_stage(
        f"{WORKER.name}: config applied with a reboot and back",
        lambda: (
            (c := device_status(lab, WORKER).get("config") or {}).get("appliedGeneration") == 3
            and c.get("state") == "InSync"
            and c
        ),
        300,
        lab.diagnostics(WORKER),
    )
    assert config["lastApplyMode"] == "REBOOT"
    modes = [(c.get("mode"), c.get("result")) for c in api_calls(lab, WORKER, "ApplyConfiguration")]
    assert modes[1:] == [("NO_REBOOT", "error"), ("REBOOT", "reboot")], modes
    rebooted = lab.rack.machine(WORKER.name)["boots"][boots[WORKER.name] :]
    assert [b.get("cause") for b in rebooted] == ["guest-reset"] and rebooted[0]["device"] == "disk", rebooted


def test_day2_rolling_upgrade_stops_at_the_failing_worker(lab: Lab) -> None:
    """talosVersion v1.12.0 → v1.12.1: the control plane, then the workers in the order of their
    devices' names; the second comes back with the old release (the upgrade-rollback fault)."""
    workers = sorted(
        (s for s in SERVERS if s.role == "worker"), key=lambda s: lab.device(s)["metadata"]["name"]
    )
    assert workers == [FIRST_WORKER, FAILING_WORKER]
    patch = {"spec": {"talosVersion": "v1.12.1"}}
    lab.kubectl("patch", "talosclusters", CLUSTER, "-n", NS, "--type=merge", "-p", json.dumps(patch))

    def failed() -> dict[str, Any] | None:
        rollout = ((lab.get("talosclusters", CLUSTER) or {}).get("status") or {}).get("upgrade") or {}
        return rollout if rollout.get("phase") == "Failed" else None

    rollout = wait_stage("rollout stopped at a failure", failed, 900, lab.diagnostics(FAILING_WORKER))
    assert rollout["failedDevice"] == lab.device(FAILING_WORKER)["metadata"]["name"], rollout
    for server in (SERVERS[1], FIRST_WORKER):
        assert device_status(lab, server)["talosVersion"] == "v1.12.1", server.name
        [upgraded] = [s for s in lab.rack.stages(server.name) if s.name == "upgraded"]
        assert upgraded.fields.get("to") == "v1.12.1"
    assert device_status(lab, FAILING_WORKER)["talosVersion"] == "v1.12.0"
    assert any(s.name == "upgrade-rollback" for s in lab.rack.stages(FAILING_WORKER.name))
    started = {s.name: api_calls(lab, s, "Upgrade") for s in SERVERS}
    assert all(len(calls) == 1 for calls in started.values()), started
    # Control plane first, then the workers in name order, each after the previous one came back.
    order = sorted(SERVERS, key=lambda s: device_status(lab, s)["upgrade"]["started"])
    assert [s.name for s in order] == [SERVERS[1].name, FIRST_WORKER.name, FAILING_WORKER.name]


def test_day2_reinstall_through_the_bmc_and_retire(lab: Lab) -> None:
    """Reinstall: wipe + one-time network boot asked from the BareMetalHost, a fresh install.
    Retire: deleting the device resets the machine through its Talos API and powers the host off."""
    name = lab.device(WORKER)["metadata"]["name"]
    boots = len(lab.rack.machine(WORKER.name)["boots"])
    lab.kubectl("annotate", "talosdevices", name, "-n", NS, "talos.trellis.dev/reinstall=1")
    show = lab.diagnostics(WORKER)

    def reinstalled() -> bool:
        new = lab.rack.machine(WORKER.name)["boots"][boots:]
        st = device_status(lab, WORKER)
        return (
            any(b.get("device") == "pxe" for b in new)
            and st.get("phase") == "Installed"
            and bool(st.get("lastWipe"))
        )

    wait_stage("reinstalled through a BMC network boot", reinstalled, 600, show)
    new = lab.rack.machine(WORKER.name)["boots"][boots:]
    assert next(b for b in new if b.get("cause") != "guest-reset")["device"] == "pxe", new
    host = lab.get("baremetalhosts", WORKER.name) or {}
    assert ((host.get("status") or {}).get("provisioning") or {}).get("state") == "Provisioned"

    lab.kubectl("delete", "talosdevices", name, "-n", NS, "--wait=true", "--timeout=120s")
    [reset] = api_calls(lab, WORKER, "Reset")
    assert (reset.get("reboot"), reset.get("result")) == ("false", "accepted"), reset
    wait_stage(
        "retired machine off",
        lambda: lab.rack.machine(WORKER.name)["power"] == "off",
        120,
        show,
    )
    assert (lab.get("baremetalhosts", WORKER.name) or {})["spec"]["online"] is False


def test_unknown_machine_is_discovered_once_and_adopted(lab: Lab) -> None:
    """A machine nobody registered asks the managed dnsmasq for DHCP: exactly one BareMetalHost
    (Unmanaged, no BMC) appears, from dnsmasq's log read through the kubelet; adding its BMC adopts
    it into the normal lifecycle (docs/baremetalhost.md, "Discovery")."""
    server, show = NEW_SERVER, lab.diagnostics(NEW_SERVER)
    name = "discovered-" + server.mac.replace(":", "")
    lab.rack.post(server.name, {"power": "on"})  # someone presses the power button
    host = wait_stage("discovered host", lambda: lab.get("baremetalhosts", name), 240, show)
    assert host["spec"].get("bmc") is None and host["spec"]["bootMACAddress"] == server.mac
    labels = host["metadata"].get("labels") or {}
    assert labels.get("baremetalhost.trellis.dev/discovered-on") == "rack-boot", labels
    wait_stage(
        "Unmanaged",
        lambda: (
            ((lab.get("baremetalhosts", name) or {}).get("status") or {}).get("provisioning", {}).get("state")
            == "Unmanaged"
        ),
        60,
        show,
    )
    # The machine keeps asking (iPXE retries its boot): still exactly one host for its MAC.
    time.sleep(20)
    hosts = get_json(lab.release.cp, "baremetalhosts", "-n", NS)["items"]
    assert [h["metadata"]["name"] for h in hosts if h["spec"].get("bootMACAddress") == server.mac] == [name]

    port = lab.rack.machine(server.name)["bmc"]["port"]
    bmc = {"address": f"ipmi://{lab.release.node.spec.host_ip}:{port}", "credentialsName": "rack-bmc"}
    adopt = {"spec": {"bmc": bmc, "online": False}}
    lab.kubectl("patch", "baremetalhosts", name, "-n", NS, "--type=merge", "-p", json.dumps(adopt))

    def available() -> bool:
        status = (lab.get("baremetalhosts", name) or {}).get("status") or {}
        return (status.get("provisioning") or {}).get("state") == "Available"

    wait_stage("adopted host Available", available, 240, show)
    # online: false: the adopted machine is powered off through its BMC.
    wait_stage("adopted machine off", lambda: lab.rack.machine(server.name)["power"] == "off", 120, show)


def test_deleting_a_host_powers_its_machine_off(lab: Lab) -> None:
    server = SERVERS[-1]
    assert lab.rack.machine(server.name)["power"] == "on"
    lab.kubectl("delete", "baremetalhosts", server.name, "-n", NS, "--wait=true", "--timeout=120s")
    machine = lab.rack.machine(server.name)
    assert machine["power"] == "off" and machine["pid"] is None, machine
