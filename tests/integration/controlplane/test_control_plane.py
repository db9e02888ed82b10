"""The test control plane is a real Kubernetes: version, RBAC, garbage collection, namespaces."""

from __future__ import annotations

import json

from tests.support.kube import ControlPlane
from tests.support.wait import wait_for


def test_server_reports_a_real_release(control_plane: ControlPlane) -> None:
    version = json.loads(control_plane.kubectl("version", "-o", "json").stdout)["serverVersion"]
    assert version["major"] == "1"
    assert int(version["minor"]) >= 34
    assert version["gitVersion"].startswith(f"v1.{version['minor']}.")


def test_owner_references_are_garbage_collected(control_plane: ControlPlane, namespace: str) -> None:
    control_plane.kubectl("-n", namespace, "create", "configmap", "owner")
    uid = control_plane.kubectl(
        "-n", namespace, "get", "cm", "owner", "-o", "jsonpath={.metadata.uid}"
    ).stdout
    control_plane.apply(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": "owned",
                "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": uid}],
            },
        },
        namespace=namespace,
    )
    control_plane.kubectl("-n", namespace, "delete", "cm", "owner")

    def owned_gone() -> bool:
        proc = control_plane.kubectl("-n", namespace, "get", "cm", "owned", check=False)
        return proc.returncode != 0 and "NotFound" in proc.stderr

    wait_for(owned_gone, timeout=60, what="garbage collection of the owned ConfigMap")


def test_rbac_is_enforced_for_service_accounts(control_plane: ControlPlane, namespace: str) -> None:
    """Operators' least-privilege RBAC is only meaningful if the apiserver enforces it."""
    control_plane.kubectl("-n", namespace, "create", "serviceaccount", "probe")
    subject = f"system:serviceaccount:{namespace}:probe"
    denied = control_plane.kubectl(
        "auth", "can-i", "list", "secrets", "-n", namespace, "--as", subject, check=False
    )
    assert denied.stdout.strip() == "no"
    control_plane.kubectl(
        "-n", namespace, "create", "role", "read-cm", "--verb=get,list", "--resource=configmaps"
    )
    control_plane.kubectl(
        "-n",
        namespace,
        "create",
        "rolebinding",
        "probe",
        "--role=read-cm",
        f"--serviceaccount={namespace}:probe",
    )
    allowed = control_plane.kubectl("auth", "can-i", "list", "configmaps", "-n", namespace, "--as", subject)
    assert allowed.stdout.strip() == "yes"
    token = control_plane.kubectl("-n", namespace, "create", "token", "probe").stdout.strip()
    assert token.count(".") == 2, "TokenRequest returns a signed JWT"
