"""Our renders, secrets bundles and patch semantics checked by Talos' own Go machinery module.

bin/talos-validate (hack/talosvalidate) imports github.com/siderolabs/talos/pkg/machinery: config
validation in metal mode, secrets bundle loading, and Talos' configpatcher for a differential test
of our strategic merge implementation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.talos import cluster_spec, device_spec, talos_patch, talos_validate
from trellis.api.talos import HostDisk, TalosClusterSpec, TalosDeviceSpec
from trellis.operators.talosdevice.bundle import SecretsBundle, b64, generate_bundle
from trellis.operators.talosdevice.contract import CONTRACTS, contract_for
from trellis.operators.talosdevice.patching import strategic_merge
from trellis.operators.talosdevice.render import ClusterInput, DeviceInput, render_device

WORKER = {
    "role": "worker",
    "hostname": "worker-1",
    "installDisk": None,
    "diskSelector": {"type": "nvme"},
    "network": {"interfaces": [{"selector": {"name": "eth0"}, "dhcp": True}]},
    "volumes": [{"name": "IMAGE-CACHE", "provisioning": {"maxSize": "20Gi"}}],
}


@pytest.fixture(scope="module")
def bundle() -> SecretsBundle:
    return generate_bundle(CONTRACTS["1.12"])


def _render(
    bundle: SecretsBundle,
    version: str,
    device: dict[str, Any],
    wipe: bool = False,
    host_disk: HostDisk | None = None,
    **cluster: Any,
) -> str:
    spec = TalosClusterSpec.model_validate(cluster_spec(talosVersion=version, **cluster))
    dev = DeviceInput("node", TalosDeviceSpec.model_validate(device), wipe=wipe, host_disk=host_disk)
    return render_device(ClusterInput("lab", spec), dev, bundle).to_yaml()


@pytest.mark.parametrize("role", ["controlplane", "worker"])
def test_storage_ready_nodes_pass_talos_validation(bundle: SecretsBundle, tmp_path: Path, role: str) -> None:
    """storage.rdsCSI loads nvme_tcp; host rootDeviceHints become the install disk selector."""
    device = device_spec() if role == "controlplane" else device_spec("52:54:00:aa:bb:02", role="worker")
    device.pop("installDisk", None)
    hints = HostDisk(diskSelector={"serial": "S4EVNX0N", "size": ">= 100GB", "type": "ssd"}, host="server1")
    text = _render(bundle, "v1.12.0", device, host_disk=hints, storage={"rdsCSI": True})
    machine = yaml.safe_load_all(text).__next__()["machine"]
    assert machine["kernel"]["modules"] == [{"name": "nvme_tcp"}]
    assert machine["install"]["diskSelector"] == {"size": ">= 100GB", "serial": "S4EVNX0N", "type": "ssd"}
    path = tmp_path / f"{role}.yaml"
    path.write_text(text)
    [finding] = talos_validate("validate", "--mode", "metal", "--strict", path)
    assert finding["ok"], finding


@pytest.mark.parametrize("version", ["v1.10.0", "v1.11.0", "v1.12.0", "v1.13.0"])
@pytest.mark.parametrize("role", ["controlplane", "worker"])
def test_renders_pass_talos_validation_in_metal_mode(
    bundle: SecretsBundle, tmp_path: Path, version: str, role: str
) -> None:
    device = device_spec() if role == "controlplane" else device_spec("52:54:00:aa:bb:02", **WORKER)
    path = tmp_path / f"{role}.yaml"
    path.write_text(_render(bundle, version, device, wipe=role == "worker"))
    [finding] = talos_validate("validate", "--mode", "metal", "--strict", path)
    assert finding["ok"], finding


def test_validator_rejects_what_talos_rejects(bundle: SecretsBundle, tmp_path: Path) -> None:
    """The check can fail: keys on a worker, unknown fields, no install disk."""
    docs = list(yaml.safe_load_all(_render(bundle, "v1.12.0", device_spec("52:54:00:aa:bb:02", **WORKER))))
    broken: dict[str, list[dict[str, Any]]] = {}
    with_key = yaml.safe_load(yaml.safe_dump(docs))
    with_key[0]["machine"]["ca"]["key"] = with_key[0]["machine"]["ca"]["crt"]
    broken["worker-with-ca-key"] = with_key
    unknown = yaml.safe_load(yaml.safe_dump(docs))
    unknown[0]["machine"]["install"]["force"] = True
    broken["install-force"] = unknown
    no_disk = yaml.safe_load(yaml.safe_dump(docs))
    del no_disk[0]["machine"]["install"]["diskSelector"]
    broken["no-install-disk"] = no_disk
    paths = []
    for name, content in broken.items():
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump_all(content, sort_keys=False))
        paths.append(path)
    findings = talos_validate("validate", "--mode", "metal", *paths)
    assert [f["ok"] for f in findings] == [False, False, False], findings


def test_secrets_bundle_loads_in_talos(bundle: SecretsBundle, tmp_path: Path) -> None:
    path = tmp_path / "secrets.yaml"
    path.write_text(bundle.to_yaml())
    legacy = tmp_path / "secrets-urlsafe-id.yaml"
    legacy.write_text(generate_bundle(contract_for("v1.10.0")).to_yaml())
    broken = tmp_path / "broken.yaml"
    doc = yaml.safe_load(bundle.to_yaml())
    doc["certs"]["os"]["key"] = b64(
        "-----BEGIN ED25519 PRIVATE KEY-----\nAAAA\n-----END ED25519 PRIVATE KEY-----\n"
    )
    broken.write_text(yaml.safe_dump(doc))
    findings = talos_validate("secrets", path, legacy, broken)
    assert findings[0]["ok"] and findings[1]["ok"], findings
    assert not findings[2]["ok"], "a corrupted OS CA key must be rejected"


def _normalise(value: Any) -> Any:
    """Talos' encoder writes empty lists/maps and orders keys its own way: compare content only."""
    if isinstance(value, dict):
        items = {k: _normalise(v) for k, v in value.items()}
        return {k: v for k, v in items.items() if v not in ([], {}, None)}
    if isinstance(value, list):
        return [_normalise(v) for v in value]
    return value


PATCHES: dict[str, list[dict[str, Any]]] = {
    "maps-and-lists": [{"machine": {"certSANs": ["a.example"], "sysctls": {"net.core.somaxconn": "65535"}}}],
    "interfaces-and-vlans": [
        {
            "machine": {
                "network": {
                    "interfaces": [
                        {
                            "deviceSelector": {"hardwareAddr": "52:54:00:aa:bb:01"},
                            "mtu": 9000,
                            "vlans": [
                                {"vlanId": 20, "mtu": 1400},
                                {"vlanId": 30, "addresses": ["10.30.0.5/24"]},
                            ],
                        },
                        {"interface": "eth1", "dhcp": True},
                    ]
                }
            }
        }
    ],
    "replaced-subnets": [{"cluster": {"network": {"podSubnets": ["10.200.0.0/16"]}}}],
    "admission-by-name": [
        {
            "cluster": {
                "apiServer": {
                    "admissionControl": [
                        {
                            "name": "PodSecurity",
                            "configuration": {"exemptions": {"namespaces": ["rook-ceph"]}},
                        }
                    ]
                }
            }
        }
    ],
    "audit-policy-replaced": [
        {
            "cluster": {
                "apiServer": {"auditPolicy": {"apiVersion": "audit.k8s.io/v1", "kind": "Policy", "rules": []}}
            }
        }
    ],
    "delete-key": [{"machine": {"features": {"hostDNS": {"$patch": "delete"}}}}],
    # Talos' typed merge overwrites a VolumeConfig's sizes and selector even when the patch leaves
    # them out (ByteSize.Merge); ours keeps them (docs/talos.md), so the patch here gives all three.
    "documents": [
        {
            "apiVersion": "v1alpha1",
            "kind": "VolumeConfig",
            "name": "EPHEMERAL",
            "provisioning": {
                "diskSelector": {"match": "disk.transport == 'nvme'"},
                "minSize": "30GiB",
                "grow": True,
            },
        },
        {"apiVersion": "v1alpha1", "kind": "VolumeConfig", "name": "IMAGECACHE", "$patch": "delete"},
        {
            "apiVersion": "v1alpha1",
            "kind": "RegistryMirrorConfig",
            "name": "quay.io",
            "endpoints": [{"url": "https://m"}],
        },
    ],
}


@pytest.mark.parametrize("name", sorted(PATCHES))
def test_strategic_merge_matches_talos_configpatcher(
    bundle: SecretsBundle, tmp_path: Path, name: str
) -> None:
    device = device_spec(patches=None, volumes=[{"name": "IMAGE-CACHE", "provisioning": {"maxSize": "5GiB"}}])
    base_text = _render(bundle, "v1.12.0", device)
    base_docs = list(yaml.safe_load_all(base_text))
    base_path = tmp_path / "base.yaml"
    base_path.write_text(base_text)
    patch_path = tmp_path / "patch.yaml"
    patch_path.write_text(yaml.safe_dump_all(PATCHES[name], sort_keys=False))

    talos = talos_patch(base_path, patch_path)
    assert talos.returncode == 0, talos.stderr
    theirs = list(yaml.safe_load_all(talos.stdout))
    ours = strategic_merge(base_docs, PATCHES[name])

    def keyed(docs: list[dict[str, Any]]) -> dict[tuple[str, str], Any]:
        return {(d.get("kind", "v1alpha1"), d.get("name", "")): _normalise(d) for d in docs}

    assert keyed(ours) == keyed(theirs)
