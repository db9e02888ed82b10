"""The chart's CSI part: renders with the driver enabled, validates values, and the apiserver accepts it."""

from __future__ import annotations

import subprocess

import pytest
import yaml

from tests.support.kube import BIN, REPO, ControlPlane

pytestmark = pytest.mark.integration
CHART = REPO / "charts" / "trellis"
ENABLED = [
    "--set", "csi.enabled=true",
    "--set", "csi.rds.address=10.0.0.5",
    "--set-string", "csi.rds.knownHosts=10.0.0.5 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB",
    "--set", "csi.rds.password=secret",
]  # fmt: skip


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "helm"), *args], capture_output=True, text=True, timeout=120, check=False
    )


def render(*extra: str) -> subprocess.CompletedProcess[str]:
    return helm("template", "trellis", str(CHART), "--kube-version", "v1.35.4", *ENABLED, *extra)


def test_csi_objects_render_and_are_accepted(control_plane: ControlPlane, namespace: str) -> None:
    out = render("-n", namespace, "--set", "csi.node.transport=loop", "--set", "csi.node.loopRoot=/srv/rds")
    assert out.returncode == 0, out.stderr
    docs = [
        d
        for d in yaml.safe_load_all(out.stdout)
        if d and d["metadata"]["labels"].get("app.kubernetes.io/component", "").startswith("csi")
    ]
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == sorted(
        ["CSIDriver", "ClusterRole", "ClusterRoleBinding", "DaemonSet", "Deployment", "Role", "RoleBinding",
         "Secret", "ServiceAccount", "ServiceAccount", "StorageClass"]
    )  # fmt: skip
    driver = next(d for d in docs if d["kind"] == "CSIDriver")
    assert driver["metadata"]["name"] == "rds.csi.trellis.dev" and driver["spec"]["attachRequired"] is False
    node = next(d for d in docs if d["kind"] == "DaemonSet")["spec"]["template"]["spec"]
    plugin = node["containers"][0]
    assert plugin["securityContext"]["privileged"] is True
    assert any(m.get("mountPropagation") == "Bidirectional" for m in plugin["volumeMounts"])
    # The plugin registers itself with kubelet: no node-driver-registrar sidecar.
    assert [c["name"] for c in node["containers"]] == ["plugin"]  # no registrar, no liveness sidecar
    assert plugin["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert "--registration-dir=/registration" in plugin["args"]
    kubelet_path = "--kubelet-registration-path=/var/lib/kubelet/plugins/rds.csi.trellis.dev/csi.sock"
    assert kubelet_path in plugin["args"]
    volumes = {v["name"]: v for v in node["volumes"]}
    mounts = {m["name"]: m["mountPath"] for m in plugin["volumeMounts"]}
    assert mounts["registration-dir"] == "/registration"
    assert volumes["registration-dir"]["hostPath"]["path"] == "/var/lib/kubelet/plugins_registry"
    # The CSI socket kubelet is told about is the one the plugin serves: plugin-dir at /csi.
    assert "--endpoint=unix:///csi/csi.sock" in plugin["args"] and mounts["plugin-dir"] == "/csi"
    assert volumes["plugin-dir"]["hostPath"]["path"] == "/var/lib/kubelet/plugins/rds.csi.trellis.dev"
    controller = next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]["spec"]
    assert {c["name"] for c in controller["containers"]} == {
        "plugin", "csi-provisioner", "csi-resizer", "csi-snapshotter"
    }  # fmt: skip
    applied = control_plane.kubectl(
        "apply", "--dry-run=server", "-n", namespace, "-f", "-", input=yaml.safe_dump_all(docs), check=False
    )
    assert applied.returncode == 0, applied.stderr


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            [
                "--set",
                "csi.storageClasses[0].name=x",
                "--set",
                "csi.storageClasses[0].parameters.fstype=ext4",
            ],
            "fstype",
        ),
        (["--set", "csi.defaults.fsType=btrfs"], "fsType"),
        (["--set", "csi.node.transport=iscsi"], "transport"),
        (["--set", "csi.rds.address="], "csi.rds.address is required"),
        (["--set", "csi.rds.password=", "--set", "csi.rds.privateKey="], "password or csi.rds.privateKey"),
    ],
)
def test_bad_values_are_refused_with_a_clear_message(extra: list[str], message: str) -> None:
    out = render(*extra)
    assert out.returncode != 0
    assert message in out.stderr
