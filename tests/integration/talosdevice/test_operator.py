"""The TalosDevice operator on the real apiserver: secrets, approval, auto-approval and device rules."""

from __future__ import annotations

import base64
import json

import yaml

from tests.integration.talosdevice.conftest import cluster, device, events, get, patch, wait_ready
from tests.support.kube import ControlPlane
from tests.support.operators import OperatorProcess
from tests.support.wait import wait_for
from trellis.operators.talosdevice.bundle import SecretsBundle

DISCOVERED = {"talos.trellis.dev/discovered": "2026-01-01T00:00:00Z"}


def bundle_of(cp: ControlPlane, namespace: str, name: str) -> SecretsBundle:
    secret = get(cp, "secret", f"{name}-talos-secrets", namespace)
    return SecretsBundle.from_yaml(base64.b64decode(secret["data"]["bundle.yaml"]).decode())


def test_cluster_secrets_are_generated_once_and_owned(
    crds: ControlPlane, talos_operator: OperatorProcess, namespace: str
) -> None:
    crds.apply(cluster("lab"), namespace=namespace)
    obj = wait_ready(crds, "talosclusters", "lab", namespace, "True")
    assert obj["status"]["contract"] == "1.12"
    assert obj["status"]["secretsSecretName"] == "lab-talos-secrets"
    secret = get(crds, "secret", "lab-talos-secrets", namespace)
    [owner] = secret["metadata"]["ownerReferences"]
    assert owner["kind"] == "TalosCluster" and owner["uid"] == obj["metadata"]["uid"] and owner["controller"]
    first = bundle_of(crds, namespace, "lab")
    talosconfig = yaml.safe_load(base64.b64decode(secret["data"]["talosconfig"]))
    assert talosconfig["contexts"]["lab"]["ca"] == base64.b64encode(first.os.crt.encode()).decode()

    # A spec change does not touch the bundle.
    patch(crds, namespace, "talosclusters", "lab", {"spec": {"dnsDomain": "lab.local"}})
    wait_ready(crds, "talosclusters", "lab", namespace, "True")
    assert bundle_of(crds, namespace, "lab").to_yaml() == first.to_yaml()

    # Regeneration only when asked, once per request value.
    crds.kubectl(
        "-n", namespace, "annotate", "talosclusters", "lab", "talos.trellis.dev/regenerate-secrets=r1"
    )
    wait_for(
        lambda: bundle_of(crds, namespace, "lab").cluster_secret != first.cluster_secret, what="regenerated"
    )
    second = bundle_of(crds, namespace, "lab")
    assert events(crds, namespace, "lab", "SecretsRegenerated")
    patch(crds, namespace, "talosclusters", "lab", {"spec": {"dnsDomain": "lab2.local"}})
    wait_ready(crds, "talosclusters", "lab", namespace, "True")
    assert bundle_of(crds, namespace, "lab").to_yaml() == second.to_yaml()

    # Key material never reaches the operator's log.
    logs = talos_operator.logs()
    for value in (
        first.bootstrap_token,
        second.bootstrap_token,
        first.os.key.splitlines()[1],
        first.cluster_secret,
    ):
        assert value not in logs


def test_imported_bundle_is_used_and_left_alone(
    crds: ControlPlane, talos_operator: OperatorProcess, namespace: str
) -> None:
    from trellis.operators.talosdevice.bundle import generate_bundle
    from trellis.operators.talosdevice.contract import contract_for

    imported = generate_bundle(contract_for("v1.11.0"))
    crds.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "old-talos-secrets"},
            "stringData": {"bundle.yaml": imported.to_yaml()},
        },
        namespace=namespace,
    )
    crds.apply(cluster("old", talosVersion="v1.11.2"), namespace=namespace)
    wait_ready(crds, "talosclusters", "old", namespace, "True")
    secret = get(crds, "secret", "old-talos-secrets", namespace)
    assert "ownerReferences" not in secret["metadata"]
    assert set(secret["data"]) == {"bundle.yaml"}
    assert bundle_of(crds, namespace, "old").to_yaml() == imported.to_yaml()


def test_unsupported_talos_line_is_reported(
    crds: ControlPlane, talos_operator: OperatorProcess, namespace: str
) -> None:
    crds.apply(cluster("future", talosVersion="v1.14.0"), namespace=namespace)
    obj = wait_ready(crds, "talosclusters", "future", namespace, "False", "UnsupportedTalosVersion")
    assert "1.14" in obj["status"]["conditions"][0]["message"]
    wait_for(lambda: events(crds, namespace, "future", "UnsupportedTalosVersion"), what="event")


def test_approval_is_a_spec_change(
    crds: ControlPlane, talos_operator: OperatorProcess, namespace: str
) -> None:
    crds.apply(cluster("lab"), namespace=namespace)
    crds.apply(
        [
            device("cp-1", "52:54:00:00:01:01", role="controlplane", addresses=["10.0.0.10/24"]),
            device("w-1", "52:54:00:00:01:02", addresses=["10.0.0.21/24"], labels={"rack": "a"}),
            device("w-2", "52:54:00:00:01:03", addresses=["10.0.0.22/24"], labels={"rack": "a"}),
        ],
        namespace=namespace,
    )
    obj = wait_ready(crds, "talosdevices", "w-1", namespace, "False", "PendingApproval")
    assert obj["status"]["phase"] == "Pending"
    assert obj["metadata"]["labels"]["talos.trellis.dev/mac"] == "52-54-00-00-01-02"

    patch(crds, namespace, "talosdevices", "cp-1", {"spec": {"approval": "Approved"}})
    obj = wait_ready(crds, "talosdevices", "cp-1", namespace, "True", "ConfigReady")
    assert obj["status"]["phase"] == "Approved" and obj["status"]["role"] == "controlplane"

    # Bulk approval by label selector: plain kubectl.
    names = crds.kubectl("-n", namespace, "get", "talosdevices", "-l", "rack=a", "-o", "name").stdout.split()
    assert len(names) == 2
    for ref in names:
        crds.kubectl(
            "-n",
            namespace,
            "patch",
            ref,
            "--type=merge",
            "-p",
            json.dumps({"spec": {"approval": "Approved"}}),
        )
    for name in ("w-1", "w-2"):
        wait_ready(crds, "talosdevices", name, namespace, "True", "ConfigReady")
    status = wait_ready(crds, "talosclusters", "lab", namespace, "True")["status"]
    wait_for(
        lambda: get(crds, "talosclusters", "lab", namespace)["status"].get("workers") == 2,
        what="cluster counts",
    )
    status = get(crds, "talosclusters", "lab", namespace)["status"]
    assert status["controlPlanes"] == 1 and status["endpointDevice"] == "cp-1"

    patch(crds, namespace, "talosdevices", "w-2", {"spec": {"approval": "Rejected"}})
    obj = wait_ready(crds, "talosdevices", "w-2", namespace, "False", "Rejected")
    assert obj["status"]["phase"] == "Rejected"


def test_auto_approval_rules_respect_their_limit(
    crds: ControlPlane, talos_operator: OperatorProcess, namespace: str
) -> None:
    rules = [
        {"name": "lab-macs", "macPrefix": "52:54:00:aa", "role": "worker", "limit": 2},
        {"name": "rack-b", "cidr": "10.9.0.0/24", "role": "worker", "limit": 5},
        {"name": "labelled", "selector": {"matchLabels": {"pool": "cp"}}, "role": "controlplane", "limit": 1},
    ]
    crds.apply(cluster("lab", endpoint="https://lab.example:6443", autoApproval=rules), namespace=namespace)
    wait_ready(crds, "talosclusters", "lab", namespace, "True")
    crds.apply(
        [device(f"m-{i}", f"52:54:00:aa:00:0{i}", cluster=None, annotations=DISCOVERED) for i in range(1, 4)]
        + [
            device(
                "by-ip",
                "02:00:00:00:00:01",
                cluster=None,
                annotations={**DISCOVERED, "talos.trellis.dev/boot-ip": "10.9.0.7"},
            ),
            device(
                "by-label", "02:00:00:00:00:02", cluster=None, annotations=DISCOVERED, labels={"pool": "cp"}
            ),
            device("nobody", "02:00:00:00:00:03", cluster=None, annotations=DISCOVERED),
            # Created by a person, not discovered: rules never approve it.
            device("manual", "52:54:00:aa:00:09", cluster=None),
        ],
        namespace=namespace,
    )

    def approved() -> dict[str, str] | None:
        items = json.loads(crds.kubectl("-n", namespace, "get", "talosdevices", "-o", "json").stdout)["items"]
        found = {
            d["metadata"]["name"]: (d["metadata"].get("labels") or {}).get(
                "talos.trellis.dev/approved-by-rule", ""
            )
            for d in items
            if d["spec"]["approval"] == "Approved"
        }
        return found if len(found) >= 4 else None

    got = wait_for(approved, timeout=60, what="auto-approvals")
    assert sum(1 for rule in got.values() if rule == "lab-macs") == 2
    assert got["by-ip"] == "rack-b" and got["by-label"] == "labelled"
    assert "nobody" not in got and "manual" not in got
    by_label = wait_ready(crds, "talosdevices", "by-label", namespace, "True")
    assert by_label["spec"]["role"] == "controlplane" and by_label["spec"]["clusterRef"] == "lab"
    assert by_label["status"]["approvedByRule"] == "labelled"
    assert events(crds, namespace, "by-ip", "AutoApproved")
    # The third lab-mac device stays Pending: the rule's limit is used up.
    pending = [f"m-{i}" for i in range(1, 4) if f"m-{i}" not in got]
    assert len(pending) == 1
    assert get(crds, "talosdevices", pending[0], namespace)["spec"]["approval"] == "Pending"


def test_endpoint_owner_and_unique_addresses(
    crds: ControlPlane, talos_operator: OperatorProcess, namespace: str
) -> None:
    crds.apply(cluster("lab"), namespace=namespace)
    crds.apply(
        device(
            "cp-1", "52:54:00:00:02:01", role="controlplane", approval="Approved", addresses=["10.0.0.11/24"]
        ),
        namespace=namespace,
    )
    obj = wait_ready(crds, "talosdevices", "cp-1", namespace, "False", "EndpointNotOwned")
    assert "10.0.0.10" in obj["status"]["conditions"][0]["message"]
    wait_for(lambda: events(crds, namespace, "cp-1", "EndpointNotOwned"), what="warning event")

    patch(crds, namespace, "talosdevices", "cp-1", {"spec": {"network": {"interfaces": [
        {"selector": {"hardwareAddr": "52:54:00:00:02:01"}, "addresses": ["10.0.0.10/24", "10.0.0.11/24"]}
    ]}}})  # fmt: skip
    wait_ready(crds, "talosdevices", "cp-1", namespace, "True", "ConfigReady")

    crds.apply(
        [
            device("w-dup", "52:54:00:00:02:02", approval="Approved", addresses=["10.0.0.11/24"]),
            device("w-ep", "52:54:00:00:02:03", approval="Approved", addresses=["10.0.0.10/24"]),
            device("w-ok", "52:54:00:00:02:04", approval="Approved", addresses=["10.0.0.31/24"]),
        ],
        namespace=namespace,
    )
    dup = wait_ready(crds, "talosdevices", "w-dup", namespace, "False", "AddressConflict")
    assert "cp-1" in dup["status"]["conditions"][0]["message"]
    wait_ready(crds, "talosdevices", "w-ep", namespace, "False", "AddressConflict")
    wait_ready(crds, "talosdevices", "w-ok", namespace, "True")
    # The older device keeps its address even when the newer one changes nothing.
    wait_ready(crds, "talosdevices", "cp-1", namespace, "True")

    # Fixing the conflict frees the device.
    patch(crds, namespace, "talosdevices", "w-dup", {"spec": {"network": {"interfaces": [
        {"selector": {"hardwareAddr": "52:54:00:00:02:02"}, "addresses": ["10.0.0.32/24"]}
    ]}}})  # fmt: skip
    wait_ready(crds, "talosdevices", "w-dup", namespace, "True")


def test_bad_patch_is_reported_not_served(
    crds: ControlPlane, talos_operator: OperatorProcess, namespace: str
) -> None:
    crds.apply(cluster("lab", endpoint="https://lab.example:6443"), namespace=namespace)
    bad = {"json6902": [{"op": "replace", "path": "/machine/doesNotExist", "value": 1}]}
    crds.apply(device("w-1", "52:54:00:00:03:01", approval="Approved", patches=bad), namespace=namespace)
    obj = wait_ready(crds, "talosdevices", "w-1", namespace, "False", "RenderFailed")
    assert "device patches" in obj["status"]["conditions"][0]["message"]


def test_device_of_missing_cluster(
    crds: ControlPlane, talos_operator: OperatorProcess, namespace: str
) -> None:
    crds.apply(
        device("lost", "52:54:00:00:04:01", cluster="nowhere", approval="Approved"), namespace=namespace
    )
    wait_ready(crds, "talosdevices", "lost", namespace, "False", "ClusterNotFound")


def test_last_control_plane_cannot_be_removed(
    crds: ControlPlane, talos_operator: OperatorProcess, namespace: str
) -> None:
    crds.apply(cluster("lab", endpoint="https://lab.example:6443"), namespace=namespace)
    crds.apply(
        [
            device("cp-1", "52:54:00:00:05:01", role="controlplane", approval="Approved"),
            device("w-1", "52:54:00:00:05:02", approval="Approved"),
        ],
        namespace=namespace,
    )
    wait_ready(crds, "talosdevices", "cp-1", namespace, "True")
    wait_ready(crds, "talosdevices", "w-1", namespace, "True")

    # Demoting it is held back...
    patch(crds, namespace, "talosdevices", "cp-1", {"spec": {"role": "worker"}})
    wait_ready(crds, "talosdevices", "cp-1", namespace, "False", "LastControlPlane")
    patch(crds, namespace, "talosdevices", "cp-1", {"spec": {"role": "controlplane"}})
    wait_ready(crds, "talosdevices", "cp-1", namespace, "True")

    # ...and so is deleting it while a worker remains.
    crds.kubectl("-n", namespace, "delete", "talosdevices", "cp-1", "--wait=false")
    wait_for(lambda: events(crds, namespace, "cp-1", "LastControlPlane"), what="LastControlPlane event")
    assert get(crds, "talosdevices", "cp-1", namespace)["metadata"].get("deletionTimestamp")
    crds.kubectl("-n", namespace, "delete", "talosdevices", "w-1", "--wait=true", "--timeout=60s")

    def gone() -> bool:
        return crds.kubectl("-n", namespace, "get", "talosdevices", "cp-1", check=False).returncode != 0

    wait_for(gone, timeout=60, what="cp-1 deleted once it is alone")
