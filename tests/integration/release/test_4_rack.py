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
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.integration.release.conftest import Release
from tests.support.rackboot import CLUSTER, NS, RACK_SERVERS, Lab, Server, boot_through, rack_lab
from tests.support.rackenv import GUEST_DIR, lab_client, qemu_unusable_reason, wait_stage
from tests.support.release import BOOT_NODE_PORT, get_json
from tests.support.rossim import RosSim, running_rossim
from tests.support.wait import wait_for
from trellis.operators.talosdevice.bundle import SecretsBundle
from trellis.operators.talosdevice.tokens import device_token, token_key

pytestmark = pytest.mark.integration

SERVERS = RACK_SERVERS


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
                release, [*SERVERS, ISO_SERVER], tmp_path_factory.mktemp("rack"), iso_objects(rds, router)
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


def test_deleting_a_host_powers_its_machine_off(lab: Lab) -> None:
    server = SERVERS[-1]
    assert lab.rack.machine(server.name)["power"] == "on"
    lab.kubectl("delete", "baremetalhosts", server.name, "-n", NS, "--wait=true", "--timeout=120s")
    machine = lab.rack.machine(server.name)
    assert machine["power"] == "off" and machine["pid"] is None, machine
