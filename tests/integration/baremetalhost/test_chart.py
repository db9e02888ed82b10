"""The chart's BareMetalHost part: values reach the operator, and its RBAC allows exactly what it uses."""

from __future__ import annotations

import secrets
import subprocess

import pytest
import yaml

from tests.support.kube import BIN, REPO, ControlPlane

pytestmark = pytest.mark.integration


def render(cp: ControlPlane, namespace: str, *sets: str) -> list[dict]:
    args = [str(BIN / "helm"), "template", "rack", str(REPO / "charts" / "trellis"), "-n", namespace]
    args += ["--kube-version", "1.35.0", "--show-only", "templates/baremetalhost/rbac.yaml"]
    args += ["--show-only", "templates/baremetalhost/deployment.yaml"]
    for value in sets:
        args += ["--set", value]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=60, check=False, env=cp.env())
    assert proc.returncode == 0, proc.stderr
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


def test_values_reach_the_operator_and_rbac_is_least_privilege(crds: ControlPlane) -> None:
    cp = crds
    namespace = f"t-bmh-chart-{secrets.token_hex(3)}"
    cp.kubectl("create", "namespace", namespace)
    try:
        docs = render(
            cp, namespace, "baremetalhost.pollIntervalSeconds=45", "baremetalhost.watchNamespaces={rack}"
        )
        deployment = next(d for d in docs if d["kind"] == "Deployment")
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        env = {e["name"]: e.get("value") or e.get("valueFrom") for e in container["env"]}
        assert env["TRELLIS_BMH_POLL_INTERVAL"] == "45"
        # Discovered hosts default to the release namespace.
        assert env["TRELLIS_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
        assert container["command"] == ["trellis-baremetalhost-operator"]
        assert "--namespace=rack" in container["args"]
        cp.apply(docs, namespace=namespace)
        sa = f"system:serviceaccount:{namespace}:rack-trellis-baremetalhost"

        def can(verb: str, resource: str, ns: str = "default") -> bool:
            proc = cp.kubectl("auth", "can-i", verb, resource, "-n", ns, "--as", sa, check=False)
            return proc.stdout.strip() == "yes"

        assert can("patch", "baremetalhosts.trellis.dev/status")
        assert can("watch", "baremetalhosts.trellis.dev", "other")
        assert can("create", "dhcpreservations.trellis.dev") and can("delete", "dhcpreservations.trellis.dev")
        assert can("get", "isocdroms.trellis.dev") and can("get", "networks.trellis.dev")
        assert can("watch", "networks.trellis.dev") and can("watch", "talosdevices.trellis.dev", "other")
        assert not can("patch", "talosdevices.trellis.dev") and not can("patch", "networks.trellis.dev")
        assert can("get", "secrets")
        assert not can("list", "secrets")  # credentials are read by name, never listed
        assert not can("delete", "baremetalhosts.trellis.dev")
        assert can("create", "baremetalhosts.trellis.dev", "rack")  # discovered hosts; never updated
        assert not can("update", "baremetalhosts.trellis.dev")
        assert not can("update", "networks.trellis.dev")
    finally:
        cp.kubectl("delete", "clusterrole,clusterrolebinding", "rack-trellis-baremetalhost", check=False)
        cp.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
