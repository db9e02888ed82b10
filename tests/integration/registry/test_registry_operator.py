"""The Registry operator as a real `kopf run` process against the real control plane.

The test control plane has no kubelet or scheduler, so managed Deployments never get pods: these
tests check the objects the operator writes, and the external mode is probed against the real
registry binary running on loopback.
"""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.kube import ControlPlane
from tests.support.oci import registry_binary
from tests.support.operators import OperatorProcess, free_port, running_operator
from tests.support.wait import wait_for
from trellis.operators.registry import fragments, htpasswd, pki
from trellis.operators.registry.config import ServeOptions, render_config
from trellis.operators.registry.workload import CHECKSUM_ANNOTATION

MODULE = "trellis.operators.registry.handlers"


@pytest.fixture(scope="module")
def home(crds: ControlPlane) -> Iterator[str]:
    """The operator's own namespace (consumer ConfigMaps of external registries land here)."""
    name = f"t-registry-op-{secrets.token_hex(3)}"
    crds.kubectl("create", "namespace", name)
    yield name
    crds.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture(scope="module")
def operator(
    crds: ControlPlane, home: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    env = {"TRELLIS_REGISTRY_RESYNC_SECONDS": "2", "TRELLIS_NAMESPACE": home}
    with running_operator(crds, MODULE, tmp_path_factory.mktemp("registry-op"), env=env) as op:
        yield op
    assert "Traceback" not in op.logs(), op.logs()[-5000:]


@pytest.fixture
def workload_ns(crds: ControlPlane, namespace: str) -> Iterator[str]:
    """The test namespace, with registry data volumes released afterwards.

    The test control plane runs no pvc-protection controller, so the claims' protection
    finalizer would otherwise keep the namespace from ever being deleted.
    """
    yield namespace
    out = crds.kubectl("-n", namespace, "get", "pvc", "-o", "name", check=False).stdout.split()
    for pvc in out:
        crds.kubectl(
            "-n",
            namespace,
            "patch",
            pvc,
            "--type=merge",
            "-p",
            '{"metadata":{"finalizers":null}}',
            check=False,
        )


def unique(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(3)}"


def registry(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "trellis.dev/v1alpha1",
        "kind": "Registry",
        "metadata": {"name": name},
        "spec": spec,
    }


def get(cp: ControlPlane, kind: str, name: str, namespace: str) -> dict[str, Any]:
    return dict(json.loads(cp.kubectl("-n", namespace, "get", kind, name, "-o", "json").stdout))


def exists(cp: ControlPlane, kind: str, name: str, namespace: str) -> bool:
    return cp.kubectl("-n", namespace, "get", kind, name, check=False).returncode == 0


def events(cp: ControlPlane, name: str, reason: str) -> list[dict[str, Any]]:
    out = cp.kubectl(
        "get", "events", "-A", "-o", "json", "--field-selector", f"involvedObject.name={name},reason={reason}"
    ).stdout
    return list(json.loads(out)["items"])


def condition(cp: ControlPlane, name: str, cond_type: str) -> dict[str, Any] | None:
    return cp.condition("registries", name, cond_type)


def wait_reason(cp: ControlPlane, name: str, cond_type: str, status: str, reason: str) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        cond = condition(cp, name, cond_type)
        return cond if cond and cond["status"] == status and cond["reason"] == reason else None

    return wait_for(probe, timeout=60, what=f"registry {name} {cond_type}={status}/{reason}")


def htpasswd_secret(cp: ControlPlane, namespace: str, name: str) -> None:
    cp.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name},
            "stringData": {"htpasswd": htpasswd.render({"ci": "pw"})},
        },
        namespace=namespace,
    )


def test_managed_registry_objects_roll_and_stay_quiet(
    crds: ControlPlane, operator: OperatorProcess, workload_ns: str
) -> None:
    namespace = workload_ns
    name = unique("managed")
    htpasswd_secret(crds, namespace, "users")
    spec = {
        "mode": "managed",
        "managed": {
            "namespace": namespace,
            "auth": {"htpasswdSecretRef": {"name": "users", "key": "htpasswd"}},
            "gcSchedule": "0 3 * * *",
            "tls": {"dnsNames": ["registry.lab.example"]},
        },
        "mirrorOf": ["docker.io"],
    }
    crds.apply(registry(name, spec))
    wait_reason(crds, name, "Reconciled", "True", "Applied")
    base = f"registry-{name}"
    for kind, obj in [
        ("deployment", base),
        ("service", base),
        ("pvc", f"{base}-data"),
        ("configmap", f"{base}-config"),
        ("secret", f"{base}-tls"),
        ("secret", f"{base}-ca"),
        ("secret", f"{base}-auth"),
        ("secret", f"{base}-http"),
        ("cronjob", f"{base}-gc"),
        ("configmap", f"{base}-consumers"),
    ]:
        assert exists(crds, kind, obj, namespace), f"{kind}/{obj} missing"

    reg = crds.get("registries", name)
    status = reg["status"]
    assert status["endpoint"] == "https://registry.lab.example:5000"
    assert status["consumerConfigMap"] == f"{namespace}/{base}-consumers"
    ca_secret = get(crds, "secret", f"{base}-ca", namespace)
    assert status["caBundle"] == base64.b64decode(ca_secret["data"]["ca.crt"]).decode()
    tls = get(crds, "secret", f"{base}-tls", namespace)
    assert pki.signed_by(base64.b64decode(tls["data"]["tls.crt"]).decode(), status["caBundle"])
    # No kubelet here: no pod ever becomes ready, and the operator says so.
    ready = condition(crds, name, "Ready")
    assert ready and ready["status"] == "False"
    assert status["readyReplicas"] == 0

    consumers = get(crds, "configmap", f"{base}-consumers", namespace)["data"]
    assert consumers[fragments.KEY_ENDPOINT] == status["endpoint"]
    patch = yaml.safe_load(consumers[fragments.KEY_TALOS_PATCH])
    assert patch["machine"]["registries"]["mirrors"]["docker.io"]["endpoints"] == [status["endpoint"]]
    config = yaml.safe_load(get(crds, "configmap", f"{base}-config", namespace)["data"]["config.yml"])
    assert config["auth"]["htpasswd"]["path"] == "/etc/trellis/registry-auth/htpasswd"
    assert config["storage"]["delete"]["enabled"] is False

    # A no-op resync writes nothing.
    def versions() -> tuple[str, ...]:
        objs = [("deployment", base), ("configmap", f"{base}-config"), ("secret", f"{base}-tls")]
        rvs = [get(crds, k, n, namespace)["metadata"]["resourceVersion"] for k, n in objs]
        return (*rvs, crds.get("registries", name)["metadata"]["resourceVersion"])

    before = versions()
    runs = operator.logs().count("Timer 'resync' succeeded")
    wait_for(
        lambda: operator.logs().count("Timer 'resync' succeeded") >= runs + 3, timeout=30, what="3 resyncs"
    )
    assert versions() == before

    # A config change rolls the Deployment through the checksum annotation.
    old_sum = get(crds, "deployment", base, namespace)["spec"]["template"]["metadata"]["annotations"][
        CHECKSUM_ANNOTATION
    ]
    crds.kubectl(
        "patch", "registry", name, "--type=merge", "-p", '{"spec":{"managed":{"deleteEnabled":true}}}'
    )

    def rolled() -> bool:
        dep = get(crds, "deployment", base, namespace)
        return dep["spec"]["template"]["metadata"]["annotations"][CHECKSUM_ANNOTATION] != old_sum

    wait_for(rolled, timeout=30, what="deployment checksum change")
    config = yaml.safe_load(get(crds, "configmap", f"{base}-config", namespace)["data"]["config.yml"])
    assert config["storage"]["delete"]["enabled"] is True

    # Deleting the Registry removes what it owns but keeps the images' volume.
    crds.kubectl("delete", "registry", name)
    wait_for(lambda: not exists(crds, "deployment", base, namespace), timeout=60, what="deployment GC")
    wait_for(
        lambda: not exists(crds, "configmap", f"{base}-consumers", namespace), timeout=60, what="configmap GC"
    )
    assert exists(crds, "pvc", f"{base}-data", namespace)


def test_missing_secret_then_created(crds: ControlPlane, operator: OperatorProcess, workload_ns: str) -> None:
    namespace = workload_ns
    name = unique("nosecret")
    spec = {
        "mode": "managed",
        "managed": {
            "namespace": namespace,
            "auth": {"htpasswdSecretRef": {"name": "later", "key": "htpasswd"}},
        },
    }
    crds.apply(registry(name, spec))
    cond = wait_reason(crds, name, "Reconciled", "False", "SecretNotFound")
    assert "auth.htpasswdSecretRef" in cond["message"]
    wait_for(lambda: events(crds, name, "SecretNotFound"), timeout=30, what="SecretNotFound event")
    assert events(crds, name, "SecretNotFound")[0]["type"] == "Warning"
    assert not exists(crds, "deployment", f"registry-{name}", namespace)

    htpasswd_secret(crds, namespace, "later")
    wait_reason(crds, name, "Reconciled", "True", "Applied")
    assert exists(crds, "deployment", f"registry-{name}", namespace)
    crds.kubectl("delete", "registry", name)


@pytest.mark.parametrize(
    ("upstream", "cond_type", "reason"),
    [
        ("https://ghcr.io/v2/library", "Reconciled", "InvalidUpstreamURL"),
        ("https://upstream.invalid", "Upstream", "UpstreamUnreachable"),
    ],
)
def test_bad_upstream(
    crds: ControlPlane,
    operator: OperatorProcess,
    workload_ns: str,
    upstream: str,
    cond_type: str,
    reason: str,
) -> None:
    namespace = workload_ns
    name = unique("badup")
    spec = {"mode": "managed", "managed": {"namespace": namespace, "proxy": {"upstreamURL": upstream}}}
    crds.apply(registry(name, spec))
    wait_reason(crds, name, cond_type, "False", reason)
    wait_for(lambda: events(crds, name, reason), timeout=30, what=f"{reason} event")
    crds.kubectl("delete", "registry", name)


def test_external_registry_health_follows_the_real_binary(
    crds: ControlPlane, operator: OperatorProcess, home: str, tmp_path: Path
) -> None:
    ca = pki.generate_ca("external-test-ca")
    serving = pki.issue_serving(ca, ["127.0.0.1"])
    (tmp_path / "tls").mkdir()
    (tmp_path / "tls/tls.crt").write_text(serving.cert_pem)
    (tmp_path / "tls/tls.key").write_text(serving.key_pem)
    port = free_port()
    from trellis.operators.registry.config import Paths

    paths = Paths(
        config=str(tmp_path / "config.yml"), storage=str(tmp_path / "data"), tls_dir=str(tmp_path / "tls")
    )
    config = tmp_path / "config.yml"
    config.write_text(
        render_config(ServeOptions(name="ext", port=port, listen_host="127.0.0.1", paths=paths))
    )
    ca_file = tmp_path / "ca.crt"
    ca_file.write_text(ca.cert_pem)
    url = f"https://127.0.0.1:{port}"

    name = unique("external")
    crds.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": f"{name}-ca"},
            "stringData": {"ca.crt": ca.cert_pem},
        },
        namespace=home,
    )
    spec = {
        "mode": "external",
        "external": {"url": url, "caSecretRef": {"name": f"{name}-ca", "key": "ca.crt"}},
    }
    with registry_binary(config, url, verify=str(ca_file)):
        crds.apply(registry(name, spec))
        crds.wait_condition("registries", name, "Ready", "True", timeout=60)
        status = crds.get("registries", name)["status"]
        assert status["healthy"] is True and status["caBundle"] == ca.cert_pem and status["endpoint"] == url
        consumers = get(crds, "configmap", f"registry-{name}-consumers", home)["data"]
        assert consumers[fragments.KEY_CA] == ca.cert_pem
    cond = wait_reason(crds, name, "Available", "False", "NotAnswering")
    assert url in cond["message"]
    assert crds.get("registries", name)["status"]["healthy"] is False
    wait_for(lambda: events(crds, name, "NotAnswering"), timeout=30, what="NotAnswering event")
    crds.kubectl("delete", "registry", name)
