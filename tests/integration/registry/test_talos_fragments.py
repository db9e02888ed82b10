"""The Talos fragments of the consumer ConfigMap, checked by Talos' own machinery (bin/talos-validate).

A full machine config is rendered the way the TalosDevice operator renders it; the legacy patch is
applied with Talos' configpatcher and the 1.12 documents are appended, and Talos validates both.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.support.talos import cluster_spec, device_spec, talos_patch, talos_validate
from trellis.api.talos import TalosClusterSpec, TalosDeviceSpec
from trellis.operators.registry import fragments, pki
from trellis.operators.talosdevice.bundle import generate_bundle
from trellis.operators.talosdevice.contract import CONTRACTS
from trellis.operators.talosdevice.render import ClusterInput, DeviceInput, render_device


def machine_config(version: str) -> str:
    bundle = generate_bundle(CONTRACTS["1.12"])
    spec = cluster_spec(talosVersion=version, registryMirrors=[])
    cluster = ClusterInput("lab", TalosClusterSpec.model_validate(spec))
    device = DeviceInput("node", TalosDeviceSpec.model_validate(device_spec()), wipe=False)
    return render_device(cluster, device, bundle).to_yaml()


@pytest.fixture(scope="module")
def consumer_data() -> dict[str, str]:
    ca = pki.generate_ca("talos-fragment-test")
    consumer = fragments.Consumer(
        "https://registry.lab.example:5000", ca.cert_pem, mirrors=["docker.io", "ghcr.io"]
    )
    return fragments.configmap_data(consumer)


def test_legacy_patch_is_accepted_by_talos(consumer_data: dict[str, str], tmp_path: Path) -> None:
    base = tmp_path / "base.yaml"
    base.write_text(machine_config("v1.11.0"))
    patch = tmp_path / "patch.yaml"
    patch.write_text(consumer_data[fragments.KEY_TALOS_PATCH])
    patched = talos_patch(base, patch)
    assert patched.returncode == 0, patched.stderr
    merged = list(yaml.safe_load_all(patched.stdout))
    registries = merged[0]["machine"]["registries"]
    assert registries["mirrors"]["docker.io"]["endpoints"] == ["https://registry.lab.example:5000"]
    result = tmp_path / "patched.yaml"
    result.write_text(patched.stdout)
    [finding] = talos_validate("validate", "--mode", "metal", "--strict", result)
    assert finding["ok"], finding


def test_documents_are_accepted_by_talos_1_12(consumer_data: dict[str, str], tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        machine_config("v1.12.0").rstrip("\n") + "\n---\n" + consumer_data[fragments.KEY_TALOS_DOCUMENTS]
    )
    [finding] = talos_validate("validate", "--mode", "metal", "--strict", config)
    assert finding["ok"], finding


def test_talos_rejects_a_broken_fragment(consumer_data: dict[str, str], tmp_path: Path) -> None:
    """The check can fail: a RegistryTLSConfig whose CA is not PEM."""
    docs = list(yaml.safe_load_all(consumer_data[fragments.KEY_TALOS_DOCUMENTS]))
    docs[-1]["ca"] = "not a certificate"
    config = tmp_path / "broken.yaml"
    config.write_text(machine_config("v1.12.0").rstrip("\n") + "\n---\n" + yaml.safe_dump_all(docs))
    [finding] = talos_validate("validate", "--mode", "metal", "--strict", config)
    assert not finding["ok"], finding
