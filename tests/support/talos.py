"""Test inputs for the TalosDevice operator: example specs, golden files and secret redaction."""

from __future__ import annotations

import copy
import json
import os
import subprocess
from pathlib import Path
from typing import Any

from tests.support.kube import BIN, REPO
from trellis.operators.talosdevice.bundle import SecretsBundle, b64

GOLDEN_DIR = REPO / "tests" / "golden" / "talos"
TALOS_VALIDATE = BIN / "talos-validate"


def cluster_spec(**overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "endpoint": "https://10.0.0.10:6443",
        "talosVersion": "v1.12.0",
        "kubernetesVersion": "1.35.0",
        "installDisk": "/dev/sda",
        "volumes": [
            {"name": "EPHEMERAL", "provisioning": {"diskSelector": "!system_disk", "minSize": "20GiB"}},
        ],
        "registryMirrors": [{"registry": "docker.io", "endpoints": ["https://mirror.lab.example:5000"]}],
        "patches": {"strategic": [{"machine": {"sysctls": {"vm.max_map_count": "262144"}}}]},
    }
    spec.update(copy.deepcopy(overrides))
    return spec


def device_spec(mac: str = "52:54:00:aa:bb:01", **overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "mac": mac,
        "clusterRef": "lab",
        "role": "controlplane",
        "hostname": "cp-1",
        "approval": "Approved",
        "network": {
            "interfaces": [
                {
                    "selector": {"hardwareAddr": mac},
                    "addresses": ["10.0.0.10/24"],
                    "routes": [{"network": "0.0.0.0/0", "gateway": "10.0.0.1"}],
                    "vlans": [{"vlanId": 20, "addresses": ["10.20.0.10/24"]}],
                }
            ],
            "nameservers": ["10.0.0.1", "1.1.1.1"],
        },
        "installDisk": "/dev/nvme0n1",
        "volumes": [{"name": "EPHEMERAL", "provisioning": {"maxSize": "200GiB", "grow": False}}],
        "patches": {
            "strategic": [{"machine": {"nodeLabels": {"rack.example/slot": "u12"}}}],
            "json6902": [{"op": "add", "path": "/machine/kubelet/extraArgs", "value": {"max-pods": "150"}}],
        },
    }
    spec.update(copy.deepcopy(overrides))
    return spec


def redact(text: str, bundle: SecretsBundle) -> str:
    """Replace every secret of the bundle by a stable placeholder so golden files hold no keys."""
    values = {
        "os.crt": b64(bundle.os.crt),
        "os.key": b64(bundle.os.key),
        "k8s.crt": b64(bundle.k8s.crt),
        "k8s.key": b64(bundle.k8s.key),
        "aggregator.crt": b64(bundle.k8s_aggregator.crt),
        "aggregator.key": b64(bundle.k8s_aggregator.key),
        "etcd.crt": b64(bundle.etcd.crt),
        "etcd.key": b64(bundle.etcd.key),
        "serviceaccount.key": b64(bundle.service_account_key),
        "cluster.id": bundle.cluster_id,
        "cluster.secret": bundle.cluster_secret,
        "bootstrap.token": bundle.bootstrap_token,
        "trustd.token": bundle.trustd_token,
        "secretbox.secret": bundle.secretbox_secret,
    }
    for name, value in sorted(values.items(), key=lambda kv: -len(kv[1])):
        text = text.replace(value, f"<{name}>")
    return text


def check_golden(name: str, text: str) -> None:
    """Compare with tests/golden/talos/<name>; TRELLIS_UPDATE_GOLDEN=1 rewrites the file."""
    path = GOLDEN_DIR / name
    if os.environ.get("TRELLIS_UPDATE_GOLDEN"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"golden file {path} is missing: run with TRELLIS_UPDATE_GOLDEN=1 and review it"
    expected = path.read_text()
    assert text == expected, f"render differs from {path} (TRELLIS_UPDATE_GOLDEN=1 rewrites it after review)"


def talos_validate(*args: str | Path) -> list[dict[str, Any]]:
    """Run bin/talos-validate (Talos' own machinery module) and return its per-file findings."""
    if not TALOS_VALIDATE.exists():
        raise AssertionError(f"{TALOS_VALIDATE} is missing: `make tools` builds it")
    proc = subprocess.run([str(TALOS_VALIDATE), *map(str, args)], capture_output=True, text=True, check=False)
    if proc.returncode == 2:
        raise AssertionError(f"talos-validate usage error: {proc.stderr}")
    return [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]


def talos_patch(config: Path, *patches: Path) -> subprocess.CompletedProcess[str]:
    if not TALOS_VALIDATE.exists():
        raise AssertionError(f"{TALOS_VALIDATE} is missing: `make tools` builds it")
    return subprocess.run(
        [str(TALOS_VALIDATE), "patch", str(config), *map(str, patches)],
        capture_output=True,
        text=True,
        check=False,
    )
