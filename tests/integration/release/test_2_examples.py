"""docs/examples/ applied as a user would, reconciled by the operators running as Pods.

The simulated rack the examples name (hack/lab.sh: RouterOS/RDS simulator, ISO web server,
registries, IPMI and Redfish BMC emulators) listens on the node's host-side address, the one host
address Pods reach, with the examples' fixed ports; the examples are applied with that address in
place of 127.0.0.1, exactly as `make up` does.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.release.conftest import Release
from tests.support.kube import REPO
from tests.support.release import get_json
from tests.support.wait import wait_for

pytestmark = pytest.mark.integration
EXAMPLES = sorted((REPO / "docs" / "examples").glob("*.yaml"))
NAMESPACE = "trellis-examples"  # the examples' Secret references name it
# (plural, name, namespaced): every object the examples create that has a Ready condition.
READY = [
    ("routers", "core", False),
    ("routers", "rds1", False),
    ("networks", "lab", False),
    ("networks", "bmc", False),
    ("dhcpreservations", "installer", True),
    ("dhcpreservations", "printer", True),
    ("baremetalhosts", "server2", True),
    ("baremetalhosts", "server3", True),
    ("isocdroms", "rescue", False),
    ("isocdroms", "talos-1-12", False),
    ("registries", "harbor", False),
    ("talosclusters", "homelab", True),
    ("talosdevices", "cp1", True),
]


def substituted(path: Path, host: str) -> str:
    return path.read_text().replace("127.0.0.1", host)


@pytest.fixture(scope="module")
def examples(release: Release, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    cp = release.cp
    host = release.node.spec.host_ip
    run = tmp_path_factory.mktemp("lab")
    cp.kubectl("create", "namespace", NAMESPACE, check=False)
    lab = subprocess.run(
        ["bash", str(REPO / "hack" / "lab.sh"), "up", str(run), host],
        env=cp.env(), capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    try:
        assert lab.returncode == 0, f"hack/lab.sh up failed:\n{lab.stdout}\n{lab.stderr}"
        for path in EXAMPLES:
            cp.kubectl("apply", "-n", NAMESPACE, "-f", "-", input=substituted(path, host))
        yield host
    finally:
        try:
            delete_examples(release, host)
        finally:
            subprocess.run(
                ["bash", str(REPO / "hack" / "lab.sh"), "down", str(run)], timeout=120, check=False
            )


def delete_examples(release: Release, host: str) -> None:
    """Users first, then what they use: an ISOCDROM refuses deletion while a BareMetalHost boots from
    it, and Networks clean their router entries before the Routers go."""
    order = ("baremetalhost", "talos", "csi-pvc", "registry", "isocdrom", "network", "csi", "router")
    for prefix in order:
        for path in EXAMPLES:
            if path.name.startswith(prefix) and not any(
                path.name.startswith(p) and len(p) > len(prefix) for p in order
            ):
                release.cp.kubectl(
                    "delete", "-n", NAMESPACE, "-f", "-", "--ignore-not-found", "--wait=true",
                    input=substituted(path, host), timeout=180,
                )  # fmt: skip
    release.cp.kubectl("delete", "namespace", NAMESPACE, "--wait=true", timeout=180)


def test_every_example_reconciles_through_the_operator_pods(release: Release, examples: str) -> None:
    not_ready: dict[str, str] = {}

    def all_ready() -> bool:
        not_ready.clear()
        for plural, name, namespaced in READY:
            args = [f"{plural}.trellis.dev", name] + (["-n", NAMESPACE] if namespaced else [])
            obj = get_json(release.cp, *args)
            conditions = {c["type"]: c for c in obj.get("status", {}).get("conditions", []) or []}
            ready = conditions.get("Ready", {})
            if ready.get("status") != "True":
                not_ready[f"{plural}/{name}"] = f"{ready.get('reason')}: {ready.get('message')}"
        return not not_ready

    try:
        wait_for(all_ready, timeout=240, interval=2, what="every example Ready")
    except AssertionError:
        raise AssertionError(f"not Ready after 240 s: {not_ready}") from None
    hosts = get_json(release.cp, "baremetalhosts.trellis.dev", "-n", NAMESPACE)["items"]
    # server1 is linked to TalosDevice cp1 (bareMetalHostRef): Provisioned needs cp1 to report its
    # install, and no machine stands behind the lab's BMC emulator. test_4_rack.py boots real ones.
    assert {h["metadata"]["name"]: h["status"]["provisioning"]["state"] for h in hosts} == {
        "server1": "Provisioning",
        "server2": "Provisioned",
        "server3": "Provisioned",
    }
    server1 = next(h for h in hosts if h["metadata"]["name"] == "server1")
    waiting = {c["reason"]: c["message"] for c in server1["status"]["conditions"]}
    assert "WaitingForInstall" in waiting and "cp1" in waiting["WaitingForInstall"], waiting
    # The managed dnsmasq of office and pxe is pinned to node-2 / node-1, which this cluster does not
    # have: no Pod serves their config, so they are not Ready, and say why.
    for name in ("office", "pxe"):
        status = get_json(release.cp, "networks.trellis.dev", name)["status"]
        ready = next(c for c in status["conditions"] if c["type"] == "Ready")
        assert (ready["status"], ready["reason"]) == ("False", "DnsmasqRollingOut"), (name, ready)


def test_example_claims_bind_on_the_simulated_rds(release: Release, examples: str) -> None:
    def bound() -> bool:
        claims = get_json(release.cp, "pvc", "-n", NAMESPACE)["items"]
        phases = {c["metadata"]["name"]: c["status"].get("phase") for c in claims}
        return phases.get("data") == "Bound" and phases.get("vm-root") == "Bound"

    wait_for(bound, timeout=120, interval=1, what="the example claims Bound")
    handles = {
        pv["spec"]["csi"]["volumeHandle"]
        for pv in get_json(release.cp, "pv")["items"]
        if pv["spec"].get("claimRef", {}).get("namespace") == NAMESPACE
    }
    assert handles <= {d["slot"] for d in release.rds.control.disks()}
