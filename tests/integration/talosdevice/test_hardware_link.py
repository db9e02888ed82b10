"""A TalosDevice and the BareMetalHost it runs on: disk hints, reinstall requests, either side deleted.

The TalosDevice operator and the boot service run against the test control plane; the host is a
BareMetalHost object (its own operator is not needed to see what the TalosDevice side asks of it).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from tests.integration.talosdevice.conftest import cluster, device, events, get, patch, wait_ready
from tests.support.bootservice import BootServiceProcess, running_boot_service
from tests.support.kube import ControlPlane
from tests.support.operators import OperatorProcess
from tests.support.wait import wait_for

pytestmark = pytest.mark.integration
MAC = "52:54:00:d3:00:01"


def host(name: str, mac: str, hints: dict[str, Any] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "bmc": {"address": "ipmi://192.0.2.1:623", "credentialsName": "nobody"},
        "bootMACAddress": mac,
        "online": True,
    }
    if hints:
        spec["rootDeviceHints"] = hints
    return {
        "apiVersion": "trellis.dev/v1alpha1",
        "kind": "BareMetalHost",
        "metadata": {"name": name},
        "spec": spec,
    }


@pytest.fixture
def boot(
    crds: ControlPlane, talos_operator: OperatorProcess, namespace: str, tmp_path: Path
) -> Iterator[BootServiceProcess]:
    with running_boot_service(crds, tmp_path / "logs", namespace) as service:
        yield service


def served_install(boot: BootServiceProcess, mac: str) -> dict[str, Any]:
    def script() -> str | None:
        r = requests.get(f"{boot.url}/ipxe", params={"mac": mac}, timeout=10)
        return r.text if r.ok and "kernel " in r.text else None

    match = re.search(r"talos\.config=(\S+)", wait_for(script, what="talos script"))
    assert match
    served = requests.get(match.group(1).replace("${uuid}", ""), timeout=10)
    assert served.status_code == 200, served.text
    return dict(next(yaml.safe_load_all(served.text))["machine"]["install"])


def test_host_hints_choose_the_disk_and_reinstall_asks_the_host(
    crds: ControlPlane, boot: BootServiceProcess, namespace: str
) -> None:
    crds.apply(cluster("lab", installDisk="/dev/sda"), namespace=namespace)
    wait_ready(crds, "talosclusters", "lab", namespace, "True")
    hints = {"serialNumber": "S4EVNX0N", "minSizeGigabytes": 100, "vendor": "Samsung"}
    crds.apply(host("server1", MAC, hints), namespace=namespace)
    crds.apply(device("node1", MAC, approval="Approved", role="worker"), namespace=namespace)

    def linked() -> dict[str, Any] | None:
        st = get(crds, "talosdevices", "node1", namespace).get("status") or {}
        return st if st.get("bareMetalHost") == "server1" and st.get("hostDisk") else None

    st = wait_for(linked, what="device linked to its host by boot MAC")
    assert st["hostDisk"] == {
        "diskSelector": {"serial": "S4EVNX0N", "size": ">= 100GB"},
        "host": "server1",
        "ignored": ["vendor"],
    }
    [event] = events(crds, namespace, "node1", "HostLinked")
    assert event["type"] == "Warning" and "vendor" in event["message"]
    wait_ready(crds, "talosdevices", "node1", namespace, "True")
    # The config served for the machine installs to the disk the host's hints describe.
    install = served_install(boot, MAC)
    assert install.get("diskSelector") == {"serial": "S4EVNX0N", "size": ">= 100GB"} and "disk" not in install

    # Reinstall: wipe on the next boot, the host asked for a network boot.
    crds.kubectl("-n", namespace, "annotate", "td", "node1", "talos.trellis.dev/reinstall=r1")
    wait_for(
        lambda: (
            (get(crds, "talosdevices", "node1", namespace).get("status") or {}).get("reinstalledFor") == "r1"
        ),
        what="reinstall acted on",
    )
    dev = get(crds, "talosdevices", "node1", namespace)
    assert dev["spec"]["wipeOnNextBoot"] is True
    annotations = get(crds, "baremetalhosts", "server1", namespace)["metadata"].get("annotations") or {}
    assert annotations.get("baremetalhost.trellis.dev/reprovision") == f"{dev['metadata']['uid']}/r1"
    assert events(crds, namespace, "node1", "Reinstalling")
    # Acted on once: the same value does nothing more.
    patch(
        crds,
        namespace,
        "baremetalhosts",
        "server1",
        {"metadata": {"annotations": {"baremetalhost.trellis.dev/reprovision": None}}},
    )
    crds.kubectl("-n", namespace, "annotate", "td", "node1", "other=1")
    wait_for(lambda: len(events(crds, namespace, "node1", "Reinstalling")) == 1, what="one reinstall")
    annotations = get(crds, "baremetalhosts", "server1", namespace)["metadata"].get("annotations") or {}
    assert "baremetalhost.trellis.dev/reprovision" not in annotations

    # The host deleted: the link goes, the recorded disk stays, nothing else changes.
    crds.kubectl("-n", namespace, "delete", "baremetalhosts", "server1", "--wait=true", "--timeout=60s")
    wait_for(lambda: events(crds, namespace, "node1", "HostUnlinked"), what="HostUnlinked")
    st = get(crds, "talosdevices", "node1", namespace)["status"]
    assert "bareMetalHost" not in st and st["hostDisk"]["host"] == "server1"


def test_retire_powers_the_host_off_and_reinstall_without_a_host_waits(
    crds: ControlPlane, talos_operator: OperatorProcess, namespace: str
) -> None:
    crds.apply(cluster("lab"), namespace=namespace)
    wait_ready(crds, "talosclusters", "lab", namespace, "True")
    crds.apply(host("server2", "52:54:00:d3:00:02"), namespace=namespace)
    crds.apply(
        device("node2", "52:54:00:d3:00:02", approval="Approved", bareMetalHostRef="server2"),
        namespace=namespace,
    )
    crds.apply(
        device("node3", "52:54:00:d3:00:03", approval="Approved", bareMetalHostRef="missing"),
        namespace=namespace,
    )
    wait_for(lambda: events(crds, namespace, "node3", "HostNotFound"), what="HostNotFound for a dangling ref")
    crds.kubectl("-n", namespace, "annotate", "td", "node3", "talos.trellis.dev/reinstall=1")
    wait_for(lambda: events(crds, namespace, "node3", "ReinstallWaiting"), what="ReinstallWaiting")
    assert get(crds, "talosdevices", "node3", namespace)["spec"]["wipeOnNextBoot"] is True

    wait_for(
        lambda: (get(crds, "talosdevices", "node2", namespace).get("status") or {}).get("bareMetalHost"),
        what="node2 linked by reference",
    )
    crds.kubectl("-n", namespace, "delete", "td", "node2", "--wait=true", "--timeout=60s")
    assert get(crds, "baremetalhosts", "server2", namespace)["spec"]["online"] is False
    # A device that opts out leaves its host alone.
    crds.apply(host("server4", "52:54:00:d3:00:04"), namespace=namespace)
    kept = device(
        "node4",
        "52:54:00:d3:00:04",
        approval="Approved",
        annotations={"talos.trellis.dev/retire-on-delete": "false"},
    )
    crds.apply(kept, namespace=namespace)
    wait_for(
        lambda: (get(crds, "talosdevices", "node4", namespace).get("status") or {}).get("bareMetalHost"),
        what="node4 linked by MAC",
    )
    crds.kubectl("-n", namespace, "delete", "td", "node4", "--wait=true", "--timeout=60s")
    assert get(crds, "baremetalhosts", "server4", namespace)["spec"]["online"] is True
