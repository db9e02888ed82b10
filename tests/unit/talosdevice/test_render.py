"""The one render path: golden controlplane/worker configs and the rules it enforces."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from tests.support.talos import check_golden, cluster_spec, device_spec, redact
from trellis.api.talos import TalosClusterSpec, TalosDeviceSpec
from trellis.operators.talosdevice.bundle import SecretsBundle, generate_bundle
from trellis.operators.talosdevice.contract import CONTRACTS, UnsupportedTalosVersion
from trellis.operators.talosdevice.documents import talos_size
from trellis.operators.talosdevice.render import ClusterInput, DeviceInput, RenderError, render_device

REGISTRY_DOCS = [
    {
        "apiVersion": "v1alpha1",
        "kind": "RegistryMirrorConfig",
        "name": "ghcr.io",
        "endpoints": [{"url": "https://registry.trellis.example:5000"}],
    }
]
REGISTRY_PATCH = {
    "machine": {
        "registries": {"mirrors": {"ghcr.io": {"endpoints": ["https://registry.trellis.example:5000"]}}}
    }
}


@pytest.fixture(scope="module")
def bundle() -> SecretsBundle:
    return generate_bundle(CONTRACTS["1.12"])


def render(
    bundle: SecretsBundle, cluster: dict[str, Any], device: dict[str, Any], wipe: bool = False
) -> tuple[str, list[dict[str, Any]]]:
    inp = ClusterInput(
        "lab",
        TalosClusterSpec.model_validate(cluster),
        registry_patches=[REGISTRY_PATCH],
        registry_documents=REGISTRY_DOCS,
    )
    out = render_device(inp, DeviceInput("node", TalosDeviceSpec.model_validate(device), wipe=wipe), bundle)
    text = out.to_yaml()
    return text, list(yaml.safe_load_all(text))


def worker_spec() -> dict[str, Any]:
    return device_spec(
        "52:54:00:aa:bb:02",
        role="worker",
        hostname="worker-1",
        installDisk=None,
        diskSelector={"type": "nvme", "size": ">= 200GB"},
        network={"interfaces": [{"selector": {"name": "eth0"}, "dhcp": True}]},
        volumes=[{"name": "IMAGE-CACHE", "provisioning": {"maxSize": "20Gi", "grow": False}}],
        patches=None,
    )


def test_golden_controlplane(bundle: SecretsBundle) -> None:
    text, _ = render(bundle, cluster_spec(), device_spec())
    check_golden("controlplane-v1.12.yaml", redact(text, bundle))


def test_golden_worker(bundle: SecretsBundle) -> None:
    text, _ = render(bundle, cluster_spec(), worker_spec())
    check_golden("worker-v1.12.yaml", redact(text, bundle))


def test_golden_worker_legacy_contract(bundle: SecretsBundle) -> None:
    text, _ = render(bundle, cluster_spec(talosVersion="v1.10.3"), worker_spec(), wipe=True)
    check_golden("worker-v1.10.yaml", redact(text, bundle))


def test_controlplane_carries_keys_and_worker_does_not(bundle: SecretsBundle) -> None:
    _, cp = render(bundle, cluster_spec(), device_spec())
    _, worker = render(bundle, cluster_spec(), worker_spec())
    assert cp[0]["machine"]["ca"]["key"] and cp[0]["cluster"]["ca"]["key"]
    assert cp[0]["cluster"]["etcd"]["ca"]["key"] and cp[0]["cluster"]["serviceAccount"]["key"]
    assert worker[0]["machine"]["ca"]["key"] == "" and worker[0]["cluster"]["ca"]["key"] == ""
    for absent in ("etcd", "serviceAccount", "aggregatorCA", "secretboxEncryptionSecret", "apiServer"):
        assert absent not in worker[0]["cluster"]
    assert bundle.os.key not in yaml.safe_dump(worker) and "PRIVATE" not in yaml.safe_dump(worker)


def test_device_settings_reach_the_config(bundle: SecretsBundle) -> None:
    _, docs = render(bundle, cluster_spec(), device_spec(), wipe=True)
    machine = docs[0]["machine"]
    iface = machine["network"]["interfaces"][0]
    assert iface["deviceSelector"] == {"hardwareAddr": "52:54:00:aa:bb:01"}
    assert iface["addresses"] == ["10.0.0.10/24"]
    assert iface["routes"] == [{"network": "0.0.0.0/0", "gateway": "10.0.0.1"}]
    assert iface["vlans"] == [{"vlanId": 20, "addresses": ["10.20.0.10/24"]}]
    assert machine["network"]["nameservers"] == ["10.0.0.1", "1.1.1.1"]
    assert machine["install"] == {
        "disk": "/dev/nvme0n1",
        "image": "ghcr.io/siderolabs/installer:v1.12.0",
        "wipe": True,
    }
    assert machine["nodeLabels"]["rack.example/slot"] == "u12"
    assert machine["kubelet"]["extraArgs"] == {"max-pods": "150"}
    assert machine["sysctls"] == {"vm.max_map_count": "262144"}
    by_kind = {(d.get("kind"), d.get("name")): d for d in docs[1:]}
    assert by_kind[("HostnameConfig", None)]["hostname"] == "cp-1"
    assert "hostname" not in machine["network"]
    # Cluster default (selector, minSize) and device override (maxSize, grow) are merged per field.
    assert by_kind[("VolumeConfig", "EPHEMERAL")]["provisioning"] == {
        "diskSelector": {"match": "!system_disk"},
        "minSize": "20GiB",
        "maxSize": "200GiB",
        "grow": False,
    }
    assert by_kind[("RegistryMirrorConfig", "docker.io")]["endpoints"] == [
        {"url": "https://mirror.lab.example:5000"}
    ]
    assert ("RegistryMirrorConfig", "ghcr.io") in by_kind


def test_legacy_contract_uses_machine_fields(bundle: SecretsBundle) -> None:
    _, docs = render(bundle, cluster_spec(talosVersion="v1.11.2"), device_spec())
    machine = docs[0]["machine"]
    assert machine["network"]["hostname"] == "cp-1"
    assert machine["registries"]["mirrors"] == {
        "ghcr.io": {"endpoints": ["https://registry.trellis.example:5000"]},
        "docker.io": {"endpoints": ["https://mirror.lab.example:5000"]},
    }
    assert not [d for d in docs if d.get("kind") in ("HostnameConfig", "RegistryMirrorConfig")]


def test_image_cache_volume_uses_talos_name(bundle: SecretsBundle) -> None:
    _, docs = render(bundle, cluster_spec(), worker_spec())
    names = [d["name"] for d in docs if d.get("kind") == "VolumeConfig"]
    assert "IMAGECACHE" in names and "IMAGE-CACHE" not in names


def test_disk_selector_replaces_install_disk(bundle: SecretsBundle) -> None:
    _, docs = render(bundle, cluster_spec(), worker_spec())
    install = docs[0]["machine"]["install"]
    assert "disk" not in install
    assert install["diskSelector"] == {"size": ">= 200GB", "type": "nvme"}


def test_cni_choices(bundle: SecretsBundle) -> None:
    _, docs = render(bundle, cluster_spec(cni={"name": "none", "disableKubeProxy": True}), device_spec())
    assert docs[0]["cluster"]["network"]["cni"] == {"name": "none"}
    assert docs[0]["cluster"]["proxy"] == {"disabled": True}
    urls = ["https://example.com/cni.yaml"]
    _, docs = render(bundle, cluster_spec(cni={"name": "custom", "urls": urls}), worker_spec())
    assert docs[0]["cluster"]["network"]["cni"] == {"name": "custom", "urls": urls}


@pytest.mark.parametrize(
    ("patches", "message"),
    [
        ({"strategic": [{"machine": {"type": "controlplane"}}]}, "machine.type"),
        ({"json6902": [{"op": "remove", "path": "/machine/install/diskSelector"}]}, "install needs a disk"),
        ({"json6902": [{"op": "replace", "path": "/machine/nothing", "value": 1}]}, "device patches"),
        ({"strategic": [{"cluster": {"ca": {"key": "c2VjcmV0"}}}]}, "must not carry CA keys"),
        ({"strategic": [{"machine": {"network": {"hostname": "other"}}}]}, "hostname is set both"),
    ],
)
def test_patches_cannot_break_the_rules(bundle: SecretsBundle, patches: dict[str, Any], message: str) -> None:
    with pytest.raises(RenderError, match=message):
        render(bundle, cluster_spec(), worker_spec() | {"patches": patches})


def test_unsupported_talos_line_is_refused(bundle: SecretsBundle) -> None:
    with pytest.raises(UnsupportedTalosVersion, match=r"1\.14 is not supported"):
        render(bundle, cluster_spec(talosVersion="v1.14.0"), device_spec())


@pytest.mark.parametrize(
    ("value", "expected"),
    [(1024, 1024), ("10Gi", "10GiB"), ("500M", "500MB"), ("2.5GiB", "2.5GiB"), ("80%", "80%"), ("1k", "1kB")],
)
def test_sizes_become_talos_units(value: int | str, expected: int | str) -> None:
    assert talos_size(value) == expected
