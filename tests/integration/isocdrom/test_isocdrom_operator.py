"""ISOCDROM operator end to end: a real ISO (xorriso) over loopback HTTP → SFTP → RDS simulator
→ /disk iSCSI export, driven by a real `kopf run` process against the real control plane."""

from __future__ import annotations

import contextlib
import hashlib
import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.httpfiles import FileServer, make_iso, serving
from tests.support.kube import ControlPlane
from tests.support.operators import OperatorProcess, running_operator
from tests.support.rossim import RosSim, running_rossim
from tests.support.wait import wait_for

MODULE = "trellis.operators.isocdrom.handlers"
IQN_PREFIX = "iqn.2000-02.com.mikrotik:"


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RosSim]:
    with running_rossim(tmp_path_factory.mktemp("rds"), tls=False, pool_size="2G") as running:
        yield running


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FileServer, dict[str, str]]]:
    root = tmp_path_factory.mktemp("images")
    sums = {
        "small.iso": make_iso(root / "small.iso", "SMALL"),
        "big.iso": make_iso(root / "big.iso", "BIG", payload_bytes=12 * 1024 * 1024),
    }
    with serving(root) as server:
        yield server, sums


@pytest.fixture(scope="module")
def home(crds: ControlPlane, sim: RosSim) -> Iterator[str]:
    """Operator namespace with the RDS Router object and its credentials."""
    name = f"t-isocdrom-op-{secrets.token_hex(3)}"
    crds.kubectl("create", "namespace", name)
    crds.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "rds-credentials"},
            "stringData": {"username": sim.username, "password": sim.password},
        },
        namespace=name,
    )
    yield name
    crds.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture(scope="module")
def router(crds: ControlPlane, sim: RosSim, home: str) -> Iterator[str]:
    name = f"rds-{secrets.token_hex(3)}"
    crds.apply(
        {
            "apiVersion": "trellis.dev/v1alpha1",
            "kind": "Router",
            "metadata": {"name": name},
            "spec": {
                "address": sim.host,
                "role": "rds",
                "sshPort": sim.ssh_port,
                "credentialsSecretRef": {"name": "rds-credentials", "namespace": home},
                "sshHostKey": {"knownHosts": sim.known_hosts_line},
            },
        }
    )
    yield name
    crds.kubectl("delete", "router", name, "--wait=false", check=False)


@pytest.fixture(scope="module")
def operator(
    crds: ControlPlane, home: str, router: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    env = {"TRELLIS_ISOCDROM_RESYNC_SECONDS": "2", "TRELLIS_NAMESPACE": home}
    with running_operator(crds, MODULE, tmp_path_factory.mktemp("isocdrom-op"), env=env) as op:
        yield op


def isocdrom(name: str, router: str, url: str, sha: str, **extra: Any) -> dict[str, Any]:
    spec = {"source": {"url": url, "sha256": sha}, "target": {"routerRef": router}, **extra}
    return {
        "apiVersion": "trellis.dev/v1alpha1",
        "kind": "ISOCDROM",
        "metadata": {"name": name},
        "spec": spec,
    }


def status(cp: ControlPlane, name: str) -> dict[str, Any]:
    return dict(cp.get("isocdroms", name).get("status") or {})


def wait_phase(cp: ControlPlane, name: str, phase: str, timeout: float = 90) -> dict[str, Any]:
    return wait_for(
        lambda: (s := status(cp, name)).get("phase") == phase and s,
        timeout=timeout,
        what=f"{name} phase {phase}",
    )


def events(cp: ControlPlane, name: str, reason: str) -> list[dict[str, Any]]:
    out = cp.kubectl(
        "get", "events", "-A", "-o", "json", "--field-selector", f"involvedObject.name={name},reason={reason}"
    ).stdout
    return list(json.loads(out)["items"])


def exported(sim: RosSim, slot: str) -> dict[str, Any] | None:
    return next((e for e in sim.control.exports() if e.get("slot") == slot), None)


def pool_file(sim: RosSim, name: str) -> Path:
    return sim.data_dir / "files" / "storage-pool" / "iso" / f"{name}.iso"


def rds_files(sim: RosSim) -> list[str]:
    out = sim.ssh_exec(':put [/file print detail as-value where name~"^storage-pool/iso/"]')
    return [piece.split("=", 1)[1] for piece in out.replace("\r", "").split(";") if piece.startswith("name=")]


def gone(cp: ControlPlane, name: str) -> bool:
    proc = cp.kubectl("get", "isocdrom", name, check=False)
    return proc.returncode != 0 and "NotFound" in proc.stderr


def test_iso_is_transferred_verified_and_exported(
    crds: ControlPlane,
    sim: RosSim,
    images: tuple[FileServer, dict[str, str]],
    router: str,
    operator: OperatorProcess,
) -> None:
    server, sums = images
    name = f"small-{secrets.token_hex(3)}"
    crds.apply(isocdrom(name, router, server.url("small.iso"), sums["small.iso"], deletePolicy="Delete"))
    st = wait_phase(crds, name, "Ready")
    slot = f"iso-{name}"
    assert st["slot"] == slot
    assert st["iqn"] == IQN_PREFIX + slot
    assert st["sha256"] == sums["small.iso"]
    assert st["size"] == (server.root / "small.iso").stat().st_size
    assert st["portalAddress"] == sim.host and st["portalPort"] == 3260
    assert st["path"] == f"/storage-pool/iso/{name}.iso"
    export = exported(sim, slot)
    assert export and export["protocol"] == "iscsi" and export["iqn"] == st["iqn"]
    disk = sim.control.disk(slot)
    stored = Path(disk["backing_path"]).read_bytes()
    assert hashlib.sha256(stored).hexdigest() == sums["small.iso"]
    assert rds_files(sim) and all(".partial" not in f for f in rds_files(sim))
    crds.wait_condition("isocdroms", name, "Ready", "True")

    # A no-op resync writes nothing to the router.
    seq = sim.control.last_seq()
    runs = operator.logs().count("Timer 'recheck' succeeded")
    wait_for(
        lambda: operator.logs().count("Timer 'recheck' succeeded") >= runs + 2, timeout=30, what="2 rechecks"
    )
    assert sim.control.writes(since=seq) == []

    crds.kubectl("delete", "isocdrom", name, "--wait=false")
    wait_for(lambda: gone(crds, name), timeout=60, what=f"{name} deletion")
    assert exported(sim, slot) is None
    assert f"storage-pool/iso/{name}.iso" not in rds_files(sim)


def test_reboot_recovery_recreates_the_export(
    crds: ControlPlane,
    sim: RosSim,
    images: tuple[FileServer, dict[str, str]],
    router: str,
    operator: OperatorProcess,
) -> None:
    server, sums = images
    name = f"reboot-{secrets.token_hex(3)}"
    crds.apply(isocdrom(name, router, server.url("small.iso"), sums["small.iso"]))
    st = wait_phase(crds, name, "Ready")
    slot = st["slot"]
    sim.control.reboot(down_seconds=1.0, drop_file_disks=True)
    wait_for(lambda: exported(sim, slot) is None, timeout=10, what="export dropped by the reboot")
    wait_for(lambda: exported(sim, slot), timeout=60, what="export re-created after reboot")
    wait_for(lambda: events(crds, name, "ExportMissing"), timeout=30, what="ExportMissing event")
    assert status(crds, name)["iqn"] == IQN_PREFIX + slot
    crds.kubectl("delete", "isocdrom", name, "--wait=false")
    wait_for(lambda: gone(crds, name), timeout=60, what=f"{name} deletion")
    # deletePolicy Keep (the default): the export goes, the file stays.
    assert exported(sim, slot) is None
    assert f"storage-pool/iso/{name}.iso" in rds_files(sim)


def test_deletion_waits_for_booting_hosts(
    crds: ControlPlane,
    sim: RosSim,
    images: tuple[FileServer, dict[str, str]],
    router: str,
    operator: OperatorProcess,
    namespace: str,
) -> None:
    server, sums = images
    name = f"inuse-{secrets.token_hex(3)}"
    crds.apply(isocdrom(name, router, server.url("small.iso"), sums["small.iso"]))
    wait_phase(crds, name, "Ready")
    host = {
        "apiVersion": "trellis.dev/v1alpha1",
        "kind": "BareMetalHost",
        "metadata": {"name": "node-1"},
        "spec": {
            "bmc": {"address": "ipmi://10.0.0.9", "credentialsName": "bmc-node-1"},
            "bootMACAddress": "52:54:00:00:00:01",
            "bootSource": {"type": "isocdrom", "isocdromRef": name},
        },
    }
    crds.apply(host, namespace=namespace)
    wait_for(
        lambda: status(crds, name).get("subscribers") == [{"namespace": namespace, "name": "node-1"}],
        timeout=30,
        what="subscriber listed",
    )
    crds.kubectl("delete", "isocdrom", name, "--wait=false")
    cond = crds.wait_condition("isocdroms", name, "DeletionBlocked", "True", timeout=30)
    assert f"{namespace}/node-1" in cond["message"]
    wait_for(lambda: events(crds, name, "DeletionBlocked"), timeout=30, what="DeletionBlocked event")
    assert exported(sim, status(crds, name)["slot"])  # still served while the host boots from it

    crds.kubectl("-n", namespace, "patch", "baremetalhost", "node-1", "--type=json",
                 "-p", '[{"op":"remove","path":"/spec/bootSource"}]')  # fmt: skip
    wait_for(lambda: gone(crds, name), timeout=60, what=f"{name} deletion after the host let go")
    assert exported(sim, f"iso-{name}") is None


def test_checksum_mismatch_exports_nothing(
    crds: ControlPlane,
    sim: RosSim,
    images: tuple[FileServer, dict[str, str]],
    router: str,
    operator: OperatorProcess,
) -> None:
    server, _ = images
    name = f"badsum-{secrets.token_hex(3)}"
    crds.apply(isocdrom(name, router, server.url("small.iso"), "0" * 64))
    st = wait_phase(crds, name, "Error")
    assert "sha256 mismatch" in st["message"]
    cond = crds.wait_condition("isocdroms", name, "Ready", "False")
    assert cond["reason"] == "ChecksumMismatch"
    wait_for(lambda: events(crds, name, "ChecksumMismatch"), timeout=30, what="ChecksumMismatch event")
    assert exported(sim, f"iso-{name}") is None
    assert not [f for f in rds_files(sim) if name in f]  # neither the image nor its partial copy
    seq = sim.control.last_seq()
    runs = operator.logs().count("Timer 'recheck' succeeded")
    wait_for(
        lambda: operator.logs().count("Timer 'recheck' succeeded") >= runs + 2, timeout=30, what="rechecks"
    )
    assert sim.control.writes(since=seq) == []  # no retry loop against the router
    crds.kubectl("delete", "isocdrom", name, "--wait=false")
    wait_for(lambda: gone(crds, name), timeout=60, what=f"{name} deletion")


def test_sftp_drop_mid_transfer_resumes(
    crds: ControlPlane,
    sim: RosSim,
    images: tuple[FileServer, dict[str, str]],
    router: str,
    operator: OperatorProcess,
) -> None:
    server, sums = images
    name = f"drop-{secrets.token_hex(3)}"
    before = len(server.ranged_requests)
    sim.control.drop_after(60, protocol="sftp")  # ~2 MiB into a 12 MiB image
    crds.apply(isocdrom(name, router, server.url("big.iso"), sums["big.iso"], deletePolicy="Delete"))
    st = wait_phase(crds, name, "Ready", timeout=120)
    assert st["sha256"] == sums["big.iso"]
    stored = Path(sim.control.disk(st["slot"])["backing_path"]).read_bytes()
    assert hashlib.sha256(stored).hexdigest() == sums["big.iso"]
    # The second attempt continued where the first stopped (HTTP Range from the partial size).
    assert len(server.ranged_requests) > before and server.ranged_requests[-1] > 0
    assert "resumed at byte" in operator.logs()
    assert "using 32768 from now on" in operator.logs()  # a failed upload falls back to safe requests
    crds.kubectl("delete", "isocdrom", name, "--wait=false")
    wait_for(lambda: gone(crds, name), timeout=60, what=f"{name} deletion")


def test_sftp_drop_without_range_support_restarts(
    crds: ControlPlane,
    sim: RosSim,
    images: tuple[FileServer, dict[str, str]],
    router: str,
    operator: OperatorProcess,
) -> None:
    server, sums = images
    name = f"restart-{secrets.token_hex(3)}"
    ranged = len(server.ranged_requests)
    server.honour_ranges = False
    try:
        sim.control.drop_after(20, protocol="sftp")
        crds.apply(isocdrom(name, router, server.url("big.iso"), sums["big.iso"], deletePolicy="Delete"))
        st = wait_phase(crds, name, "Ready", timeout=120)
    finally:
        server.honour_ranges = True
    assert len(server.ranged_requests) == ranged  # nothing was resumed: the copy started again
    stored = Path(sim.control.disk(st["slot"])["backing_path"]).read_bytes()
    assert hashlib.sha256(stored).hexdigest() == sums["big.iso"] == st["sha256"]
    crds.kubectl("delete", "isocdrom", name, "--wait=false")
    wait_for(lambda: gone(crds, name), timeout=60, what=f"{name} deletion")


def test_image_already_on_the_rds_is_exported_and_never_deleted(
    crds: ControlPlane,
    sim: RosSim,
    images: tuple[FileServer, dict[str, str]],
    router: str,
    operator: OperatorProcess,
) -> None:
    server, sums = images
    client = sim.ssh_client()
    try:
        sftp = client.open_sftp()
        with contextlib.suppress(OSError):
            sftp.mkdir("/storage-pool/rescue")
        sftp.put(str(server.root / "small.iso"), "/storage-pool/rescue/rescue.iso")
    finally:
        client.close()
    name = f"onrds-{secrets.token_hex(3)}"
    spec = {
        "source": {"rdsPath": "storage-pool/rescue/rescue.iso", "sha256": sums["small.iso"]},
        "target": {"routerRef": router},
    }
    crds.apply(
        {"apiVersion": "trellis.dev/v1alpha1", "kind": "ISOCDROM", "metadata": {"name": name}, "spec": spec}
    )
    st = wait_phase(crds, name, "Ready")
    assert st["path"] == "/storage-pool/rescue/rescue.iso" and st["sha256"] == sums["small.iso"]
    assert exported(sim, st["slot"])
    crds.kubectl("delete", "isocdrom", name, "--wait=false")
    wait_for(lambda: gone(crds, name), timeout=60, what=f"{name} deletion")
    assert exported(sim, st["slot"]) is None
    out = sim.ssh_exec(':put [/file print detail as-value where name="storage-pool/rescue/rescue.iso"]')
    assert "rescue.iso" in out  # not ours: kept
