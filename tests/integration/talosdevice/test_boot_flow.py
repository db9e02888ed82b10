"""The boot flow over real HTTP: boot service subprocess + operator subprocess + real apiserver."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from tests.integration.talosdevice.conftest import cluster, events, get, patch, wait_ready
from tests.support.bootservice import BootServiceProcess, running_boot_service
from tests.support.kube import ControlPlane
from tests.support.operators import OperatorProcess
from tests.support.talos import talos_validate
from tests.support.wait import wait_for
from trellis.operators.registry.fragments import Consumer, configmap_data
from trellis.operators.registry.pki import generate_ca

MAC = "52:54:00:be:ef:01"
WIPE = "talos.experimental.wipe=system"
REGISTRY_CA = generate_ca("lab registry CA").cert_pem


@pytest.fixture
def boot(
    crds: ControlPlane, talos_operator: OperatorProcess, namespace: str, tmp_path: Path
) -> Iterator[BootServiceProcess]:
    with running_boot_service(crds, tmp_path / "logs", namespace) as service:
        yield service


def lab_cluster(**spec: Any) -> dict[str, Any]:
    return cluster(
        "lab",
        registryMirrors=[{"registry": "docker.io", "endpoints": ["https://mirror.lab.example:5000"]}],
        registrySelector={"matchLabels": {"talos": "lab"}},
        patches={"strategic": [{"machine": {"sysctls": {"vm.max_map_count": "262144"}}}]},
        **spec,
    )


def publish_registry(cp: ControlPlane, namespace: str, name: str) -> None:
    """What the Registry operator publishes: status.consumerConfigMap and that ConfigMap."""
    consumer = Consumer(
        endpoint="https://registry.trellis.example:5000", ca_pem=REGISTRY_CA, mirrors=["ghcr.io"]
    )
    cp.apply(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": f"{name}-consumer"},
            "data": configmap_data(consumer),
        },
        namespace=namespace,
    )
    cp.apply(
        {
            "apiVersion": "trellis.dev/v1alpha1",
            "kind": "Registry",
            "metadata": {"name": name, "labels": {"talos": "lab"}},
            "spec": {"mode": "external", "external": {"url": "https://registry.trellis.example:5000"}},
        }
    )
    cp.kubectl(
        "patch", "registries", name, "--subresource=status", "--type=merge",
        "-p", json.dumps({"status": {"consumerConfigMap": f"{namespace}/{name}-consumer"}}),
    )  # fmt: skip


def ipxe(service: BootServiceProcess, mac: str = MAC) -> requests.Response:
    return requests.get(
        f"{service.url}/ipxe",
        params={"mac": mac, "uuid": "4c4c4544-0000", "serial": "SN 0042", "arch": "x86_64"},
        timeout=10,
    )


def config_url_of(script: str) -> str:
    match = re.search(r"talos\.config=(\S+)", script)
    assert match, script
    return match.group(1).replace("${uuid}", "4c4c4544-0000")


def approve(cp: ControlPlane, namespace: str, name: str, **spec: Any) -> None:
    body = {
        "approval": "Approved",
        "role": "controlplane",
        "hostname": "cp-1",
        "network": {
            "interfaces": [
                {
                    "selector": {"hardwareAddr": MAC},
                    "addresses": ["10.0.0.10/24"],
                    "routes": [{"network": "0.0.0.0/0", "gateway": "10.0.0.1"}],
                    "vlans": [{"vlanId": 30, "addresses": ["10.30.0.10/24"]}],
                }
            ],
            "nameservers": ["10.0.0.1"],
        },
        "installDisk": "/dev/nvme0n1",
        "volumes": [{"name": "EPHEMERAL", "provisioning": {"maxSize": "120GiB", "grow": False}}],
        "patches": {
            "strategic": [{"machine": {"nodeLabels": {"rack.example/slot": "u7"}}}],
            "json6902": [{"op": "add", "path": "/machine/kubelet/extraArgs", "value": {"max-pods": "180"}}],
        },
    }
    body.update(spec)
    patch(cp, namespace, "talosdevices", name, {"spec": body})


def test_unknown_mac_to_installed_config(
    crds: ControlPlane, boot: BootServiceProcess, namespace: str, tmp_path: Path
) -> None:
    publish_registry(crds, namespace, f"reg-{namespace[-6:]}")
    crds.apply(lab_cluster(), namespace=namespace)
    wait_ready(crds, "talosclusters", "lab", namespace, "True")
    wait_for(lambda: requests.get(boot.url + "/readyz", timeout=5).ok, what="ready")

    # Unknown MAC: strict mode answers with exit and the device appears as Pending.
    first = ipxe(boot)
    assert first.status_code == 200 and first.text.startswith("#!ipxe")
    assert "\nexit 0\n" in first.text and "kernel" not in first.text
    name = "mac-525400beef01"
    device = wait_for(lambda: get(crds, "talosdevices", name, namespace), what="discovered device")
    assert device["spec"]["approval"] == "Pending" and device["spec"]["clusterRef"] == "lab"
    wait_for(lambda: events(crds, namespace, name, "Discovered"), what="Discovered event")
    status = wait_for(
        lambda: get(crds, "talosdevices", name, namespace).get("status", {}).get("observed"), what="status"
    )
    assert status["ip"] == "127.0.0.1" and status["arch"] == "x86_64" and status["serial"] == "SN 0042"
    assert "exit" in ipxe(boot).text  # still pending

    # Config is refused before approval, even with a guessed token.
    assert (
        requests.get(f"{boot.url}/config", params={"mac": MAC, "token": "x"}, timeout=10).status_code == 403
    )

    approve(crds, namespace, name)
    wait_ready(crds, "talosdevices", name, namespace, "True")
    script = wait_for(lambda: (r := ipxe(boot)).ok and "kernel " in r.text and r.text, what="talos script")
    kernel = next(line for line in script.splitlines() if line.startswith("kernel "))
    assert kernel.startswith(f"kernel {boot.url}/assets/v1.12.0/vmlinuz-amd64 ")
    for arg in (
        "talos.platform=metal",
        "slab_nomerge",
        "pti=on",
        f"talos.config={boot.url}/config?mac={MAC}&token=",
    ):
        assert arg in kernel
    assert "&uuid=${uuid}" in kernel and "talos.experimental.wipe" not in kernel
    assert f"initrd --name initramfs.xz {boot.url}/assets/v1.12.0/initramfs-amd64.xz" in script

    url = config_url_of(script)
    token = re.search(r"token=([^&]+)", url).group(1)  # type: ignore[union-attr]
    assert requests.get(url.replace(token, token[:-2] + "xx"), timeout=10).status_code == 403
    assert requests.get(f"{boot.url}/config", params={"mac": MAC}, timeout=10).status_code == 403
    resp = requests.get(url, timeout=10)
    assert resp.status_code == 200, resp.text
    assert resp.headers["Content-Type"].startswith("application/yaml")
    docs = list(yaml.safe_load_all(resp.text))
    machine = docs[0]["machine"]
    assert machine["type"] == "controlplane"
    iface = machine["network"]["interfaces"][0]
    assert iface["addresses"] == ["10.0.0.10/24"] and iface["vlans"][0]["vlanId"] == 30
    assert machine["network"]["nameservers"] == ["10.0.0.1"]
    assert machine["install"]["disk"] == "/dev/nvme0n1" and machine["install"]["wipe"] is False
    assert machine["nodeLabels"]["rack.example/slot"] == "u7"
    assert machine["kubelet"]["extraArgs"] == {"max-pods": "180"}
    assert machine["sysctls"] == {"vm.max_map_count": "262144"}
    kinds = {(d.get("kind"), d.get("name")): d for d in docs[1:]}
    assert kinds[("HostnameConfig", None)]["hostname"] == "cp-1"
    assert kinds[("VolumeConfig", "EPHEMERAL")]["provisioning"] == {"maxSize": "120GiB", "grow": False}
    assert kinds[("RegistryMirrorConfig", "docker.io")]["endpoints"] == [
        {"url": "https://mirror.lab.example:5000"}
    ]
    assert kinds[("RegistryMirrorConfig", "ghcr.io")]["endpoints"] == [
        {"url": "https://registry.trellis.example:5000"}
    ]
    assert kinds[("RegistryTLSConfig", "registry.trellis.example:5000")]["ca"] == REGISTRY_CA

    path = tmp_path / "served.yaml"
    path.write_text(resp.text)
    [finding] = talos_validate("validate", "--mode", "metal", path)
    assert finding["ok"], finding

    obj = wait_for(
        lambda: (
            (d := get(crds, "talosdevices", name, namespace))["status"].get("phase") == "ConfigServed" and d
        ),
        what="ConfigServed",
    )
    assert obj["status"]["lastConfigFetch"] and obj["status"]["observed"]["uuid"] == "4c4c4544-0000"
    wait_for(lambda: events(crds, namespace, name, "ConfigServed"), what="ConfigServed event")
    wait_for(lambda: events(crds, namespace, name, "ConfigDenied"), what="ConfigDenied event")


def test_wipe_is_served_once(crds: ControlPlane, boot: BootServiceProcess, namespace: str) -> None:
    crds.apply(lab_cluster(endpoint="https://lab.example:6443"), namespace=namespace)
    crds.apply(
        {
            "apiVersion": "trellis.dev/v1alpha1",
            "kind": "TalosDevice",
            "metadata": {"name": "w-1"},
            "spec": {"mac": MAC, "clusterRef": "lab", "role": "worker", "approval": "Approved"},
        },
        namespace=namespace,
    )
    wait_ready(crds, "talosdevices", "w-1", namespace, "True")
    wait_for(lambda: "kernel " in ipxe(boot).text, what="talos script")
    patch(crds, namespace, "talosdevices", "w-1", {"spec": {"wipeOnNextBoot": True}})
    wait_ready(crds, "talosdevices", "w-1", namespace, "True")

    # Ten boots at once, repeated until the boot service has seen the request: one wipe in total.
    # (While the operator re-admits the changed device, a boot may get `exit`; Talos retries.)
    deadline = time.monotonic() + 20
    scripts: list[str] = []
    while time.monotonic() < deadline:
        with ThreadPoolExecutor(10) as pool:
            scripts += [r.text for r in pool.map(lambda _: ipxe(boot), range(10))]
        if any(WIPE in s for s in scripts):
            break
    with ThreadPoolExecutor(10) as pool:
        scripts += [r.text for r in pool.map(lambda _: ipxe(boot), range(10))]
    wiped = [s for s in scripts if WIPE in s]
    assert len(wiped) == 1, "exactly one boot gets the wipe"
    device = wait_for(
        lambda: (d := get(crds, "talosdevices", "w-1", namespace))["status"].get("lastWipe") and d,
        what="lastWipe",
    )
    assert device["spec"]["wipeOnNextBoot"] is False
    assert events(crds, namespace, "w-1", "WipeServed")

    # The config of that boot carries install.wipe; later boots and configs do not.
    url = config_url_of(wiped[0])
    wait_ready(crds, "talosdevices", "w-1", namespace, "True")
    resp = wait_for(lambda: (r := requests.get(url, timeout=10)).ok and r, what="config after wipe")
    assert yaml.safe_load_all(resp.text).__next__()["machine"]["install"]["wipe"] is True
    wait_ready(crds, "talosdevices", "w-1", namespace, "True")
    assert "kernel " in ipxe(boot).text and WIPE not in ipxe(boot).text
    again = requests.get(url, timeout=10)
    assert next(yaml.safe_load_all(again.text))["machine"]["install"]["wipe"] is False


def test_lenient_mode_and_rejected_devices(
    crds: ControlPlane, boot: BootServiceProcess, namespace: str
) -> None:
    crds.apply(lab_cluster(endpoint="https://lab.example:6443", strictBoot=False), namespace=namespace)
    wait_ready(crds, "talosclusters", "lab", namespace, "True")
    wait_for(lambda: requests.get(boot.url + "/readyz").ok, what="ready")
    # An unknown machine is registered; once known, lenient mode boots Talos without a config.
    ipxe(boot, "52:54:00:be:ef:02")
    wait_for(lambda: get(crds, "talosdevices", "mac-525400beef02", namespace), what="discovered")
    script = wait_for(
        lambda: (t := ipxe(boot, "52:54:00:be:ef:02").text) and "kernel " in t and t, what="maintenance"
    )
    assert "talos.config" not in script and "talos.platform=metal" in script
    patch(crds, namespace, "talosdevices", "mac-525400beef02", {"spec": {"approval": "Rejected"}})
    wait_ready(crds, "talosdevices", "mac-525400beef02", namespace, "False", "Rejected")
    script = wait_for(
        lambda: (t := ipxe(boot, "52:54:00:be:ef:02").text) and "kernel" not in t and t, what="exit"
    )
    assert "\nexit 0\n" in script
    assert requests.get(f"{boot.url}/ipxe", params={"mac": "nonsense"}, timeout=5).status_code == 400
    assert requests.get(f"{boot.url}/boot.ipxe", timeout=5).text.count("${netX/mac}") == 1
    proxy = requests.get(
        f"{boot.url}/dnsmasq.conf", params={"mode": "proxy", "network": "10.0.0.0"}, timeout=5
    )
    assert proxy.ok and "dhcp-range=10.0.0.0,proxy" in proxy.text
    assert requests.get(f"{boot.url}/dnsmasq.conf", params={"mode": "server"}, timeout=5).status_code == 400


def test_assets_from_a_directory_and_a_cluster_url(
    crds: ControlPlane, talos_operator: OperatorProcess, namespace: str, tmp_path: Path
) -> None:
    """Kernel and initramfs come from --assets-dir (a PVC in the chart); dummy files stand in for Talos'."""
    assets = tmp_path / "assets" / "v1.12.0"
    assets.mkdir(parents=True)
    (assets / "vmlinuz-amd64").write_bytes(b"dummy kernel\n")
    (assets / "initramfs-amd64.xz").write_bytes(b"dummy initramfs\n")
    crds.apply(lab_cluster(endpoint="https://lab.example:6443"), namespace=namespace)
    crds.apply(
        {
            "apiVersion": "trellis.dev/v1alpha1",
            "kind": "TalosDevice",
            "metadata": {"name": "w-1"},
            "spec": {"mac": MAC, "clusterRef": "lab", "role": "worker", "approval": "Approved"},
        },
        namespace=namespace,
    )
    wait_ready(crds, "talosdevices", "w-1", namespace, "True")
    args = ["--assets-dir", str(tmp_path / "assets")]
    with running_boot_service(crds, tmp_path / "logs", namespace, args) as service:
        script = wait_for(lambda: (t := ipxe(service).text) and "kernel " in t and t, what="talos script")
        kernel_url = next(line for line in script.splitlines() if line.startswith("kernel ")).split()[1]
        initrd_url = next(line for line in script.splitlines() if line.startswith("initrd ")).split()[-1]
        assert requests.get(kernel_url, timeout=10).content == b"dummy kernel\n"
        assert requests.get(initrd_url, timeout=10).content == b"dummy initramfs\n"
        assert requests.get(f"{service.url}/assets/../bundle.yaml", timeout=10).status_code in (403, 404)

        # A cluster's own boot.assetsURL names the directory of its version's files.
        mirror = "http://mirror.lab.example/talos/v1.12.0"
        patch(crds, namespace, "talosclusters", "lab", {"spec": {"boot": {"assetsURL": mirror}}})
        script = wait_for(
            lambda: (t := ipxe(service).text) and mirror in t and t, what="mirror URL in script"
        )
        assert f"kernel {mirror}/vmlinuz-amd64 " in script
        assert f"initrd --name initramfs.xz {mirror}/initramfs-amd64.xz" in script
