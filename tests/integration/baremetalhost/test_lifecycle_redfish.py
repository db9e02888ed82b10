"""Full lifecycle against sushy-tools (Redfish, basic auth) including virtual media, and TLS checks.

sushy's fake driver applies power changes 1-11 s after the request: every wait polls.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.baremetalhost.conftest import (
    Operator,
    bmh,
    events,
    host,
    merge,
    secret,
    wait_state,
    wait_status,
)
from tests.support.bmc import FileServer, RedfishSystem, SushyEmulator
from tests.support.kube import ControlPlane
from tests.support.wait import wait_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def iso_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FileServer, str]]:
    root = Path(tmp_path_factory.mktemp("isos"))
    data = b"\0" * 8192
    (root / "installer.iso").write_bytes(data)
    with FileServer(root) as server:
        yield server, hashlib.sha256(data).hexdigest()


def test_full_lifecycle_with_virtual_media(
    crds: ControlPlane,
    namespace: str,
    sushy: SushyEmulator,
    operator: Operator,
    iso_server: tuple[FileServer, str],
) -> None:
    cp = crds
    files, digest = iso_server
    iso = f"installer-{namespace}"[:60]
    url = files.url("installer.iso")
    cp.apply({
        "apiVersion": "trellis.dev/v1alpha1", "kind": "ISOCDROM", "metadata": {"name": iso},
        "spec": {"source": {"url": url, "sha256": digest}, "target": {"routerRef": "rds1"}},
    })  # fmt: skip
    try:
        secret(cp, namespace, "bmc-creds", "root", "calvin")
        host(cp, namespace, "rf", sushy.address("rf0"), boot_mac="52:54:00:ab:00:00")
        status = wait_state(cp, namespace, "rf", "Available", timeout=60)["status"]
        assert status["hardware"]["manufacturer"] == "Sushy Emulator"
        assert status["hardware"]["nics"] == [{"name": "52:54:00:ab:00:00", "mac": "52:54:00:ab:00:00"}]
        assert status["poweredOn"] is False

        boot = {"type": "isocdrom", "isocdromRef": iso, "via": "virtualMedia", "mode": "once"}
        merge(cp, namespace, "rf", {"spec": {"online": True, "bootSource": boot}})
        wait_state(cp, namespace, "rf", "Provisioned", timeout=90)
        assert sushy.power("rf0") == "On"
        cd = sushy.virtual_cd("rf0")
        assert cd["Inserted"] is True and cd["Image"] == url
        wait_status(cp, namespace, "rf", lambda s: s["provisioning"].get("step") == "LocalBoot", "local disk")
        assert sushy.system("rf0")["Boot"]["BootSourceOverrideTarget"] == "Hdd"

        merge(cp, namespace, "rf", {"spec": {"bootSource": None}})
        wait_state(cp, namespace, "rf", "Available", timeout=60)
        assert sushy.virtual_cd("rf0")["Inserted"] is False

        merge(cp, namespace, "rf", {"spec": {"online": False}})
        wait_for(lambda: sushy.power("rf0") == "Off", timeout=40, interval=1, what="rf0 off (soft)")
        wait_status(cp, namespace, "rf", lambda s: s.get("poweredOn") is False, "poweredOn false")
        merge(cp, namespace, "rf", {"spec": {"online": True}})
        wait_for(lambda: sushy.power("rf0") == "On", timeout=40, interval=1, what="rf0 on")

        cp.kubectl("delete", "bmh", "-n", namespace, "rf", "--wait=false")
        wait_for(
            lambda: cp.kubectl("get", "bmh", "-n", namespace, "rf", check=False).returncode != 0,
            timeout=120,
            what="rf deleted after power-off",
        )
        assert sushy.power("rf0") == "Off"  # powered off (and confirmed) before the finalizer went
    finally:
        cp.kubectl("delete", "isocdroms.trellis.dev", iso, "--wait=false", check=False)


def test_redfish_wrong_password(
    crds: ControlPlane, namespace: str, sushy: SushyEmulator, operator: Operator
) -> None:
    cp = crds
    secret(cp, namespace, "bmc-creds", "root", "Xq7-not-calvin")
    host(cp, namespace, "rf-bad", sushy.address("rf1"), boot_mac="52:54:00:ab:00:11")
    status = wait_status(cp, namespace, "rf-bad", lambda s: (s.get("errorCount") or 0) >= 1, "an error")
    assert status["errorType"] == "RegistrationError" and "HTTP 401" in status["errorMessage"]
    assert "Xq7-not-calvin" not in json.dumps(bmh(cp, namespace, "rf-bad"))
    assert "Xq7-not-calvin" not in json.dumps(events(cp, namespace, "rf-bad"))
    assert "Xq7-not-calvin" not in operator.logs()


@pytest.fixture(scope="module")
def sushy_tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SushyEmulator]:
    with SushyEmulator(
        Path(tmp_path_factory.mktemp("sushy-tls")), [RedfishSystem("tls0")], tls=True
    ) as emulator:
        yield emulator


def test_certificate_verification_is_on_by_default(
    crds: ControlPlane, namespace: str, sushy_tls: SushyEmulator, operator: Operator
) -> None:
    cp = crds
    secret(cp, namespace, "bmc-creds", "any", "any")
    address = sushy_tls.address("tls0", scheme="redfish")
    host(cp, namespace, "rf-tls", address, boot_mac="52:54:00:ab:00:21")
    status = wait_status(cp, namespace, "rf-tls", lambda s: (s.get("errorCount") or 0) >= 1, "TLS error")
    assert status["errorType"] == "RegistrationError"
    conds = {c["type"]: c for c in status["conditions"]}
    assert conds["BMCReachable"]["reason"] == "CertificateNotTrusted"
    merge(cp, namespace, "rf-tls", {"spec": {"bmc": {"disableCertificateVerification": True}}})
    wait_state(cp, namespace, "rf-tls", "Available", timeout=60)
