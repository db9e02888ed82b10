"""Registry spec → objects and status values (managed and external modes)."""

from __future__ import annotations

import base64
from typing import Any

import pytest
import yaml

from trellis.api.registry import RegistrySpec
from trellis.operators.registry import desired, fragments, htpasswd, pki
from trellis.operators.registry.workload import CHECKSUM_ANNOTATION, child_name

UID = "0a1b2c3d-0000-0000-0000-000000000001"


def spec(**managed: Any) -> RegistrySpec:
    return RegistrySpec.model_validate({"mode": "managed", "managed": managed})


def by_kind(want: desired.Desired) -> dict[str, dict[str, Any]]:
    return {f"{o['kind']}/{o['metadata']['name']}": o for o in want.objects}


def secret_text(obj: dict[str, Any], key: str) -> str:
    return base64.b64decode(obj["data"][key]).decode()


def carry_over(want: desired.Desired, name: str) -> desired.Resolved:
    """What the next reconcile reads back from the cluster after applying ``want``."""
    objs = by_kind(want)
    ca = objs.get(f"Secret/{child_name(name, 'ca')}")
    tls = objs[f"Secret/{child_name(name, 'tls')}"]
    return desired.Resolved(
        generated_ca=pki.KeyPair(secret_text(ca, "ca.crt"), secret_text(ca, "ca.key")) if ca else None,
        generated_serving=pki.KeyPair(secret_text(tls, "tls.crt"), secret_text(tls, "tls.key")),
        http_secret=secret_text(objs[f"Secret/{child_name(name, 'http')}"], "secret"),
    )


def test_managed_defaults_produce_a_complete_workload() -> None:
    want = desired.managed("lab", UID, spec(), desired.Resolved(), "infra")
    objs = by_kind(want)
    assert set(objs) == {
        "Secret/registry-lab-ca",
        "Secret/registry-lab-tls",
        "Secret/registry-lab-http",
        "ConfigMap/registry-lab-config",
        "PersistentVolumeClaim/registry-lab-data",
        "Service/registry-lab",
        "Deployment/registry-lab",
        "ConfigMap/registry-lab-consumers",
    }
    assert all(o["metadata"]["namespace"] == "infra" for o in want.objects)
    # The data volume is not owned: deleting the Registry keeps the images.
    assert "ownerReferences" not in objs["PersistentVolumeClaim/registry-lab-data"]["metadata"]
    owner = objs["Deployment/registry-lab"]["metadata"]["ownerReferences"][0]
    assert owner == {
        "apiVersion": "trellis.dev/v1alpha1",
        "kind": "Registry",
        "name": "lab",
        "uid": UID,
        "controller": True,
        "blockOwnerDeletion": True,
    }
    config = yaml.safe_load(objs["ConfigMap/registry-lab-config"]["data"]["config.yml"])
    assert config["http"]["tls"]["certificate"] == "/etc/trellis/registry-tls/tls.crt"
    assert config["http"]["debug"]["addr"] == ":5001"
    assert want.endpoint == "https://registry-lab.infra.svc:5000"
    assert want.probe_url == "https://registry-lab.infra.svc:5000/v2/"
    tls = objs["Secret/registry-lab-tls"]
    assert tls["type"] == "kubernetes.io/tls"
    assert pki.signed_by(secret_text(tls, "tls.crt"), want.ca_bundle or "")
    assert "registry-lab.infra.svc.cluster.local" in pki.certificate_names(secret_text(tls, "tls.crt"))
    pod = objs["Deployment/registry-lab"]["spec"]["template"]["spec"]
    assert pod["containers"][0]["args"] == ["serve", "/etc/trellis/registry/config.yml"]
    assert pod["securityContext"]["runAsNonRoot"] is True


def test_second_reconcile_with_read_back_state_is_identical() -> None:
    first = desired.managed("lab", UID, spec(), desired.Resolved(), "infra")
    second = desired.managed("lab", UID, spec(), carry_over(first, "lab"), "infra")
    assert second.objects == first.objects


def test_config_change_rolls_the_deployment() -> None:
    first = desired.managed("lab", UID, spec(), desired.Resolved(), "infra")
    state = carry_over(first, "lab")
    changed = desired.managed("lab", UID, spec(deleteEnabled=True), state, "infra")

    def checksum(want: desired.Desired) -> str:
        dep = by_kind(want)["Deployment/registry-lab"]
        return str(dep["spec"]["template"]["metadata"]["annotations"][CHECKSUM_ANNOTATION])

    assert checksum(changed) != checksum(first)
    assert checksum(desired.managed("lab", UID, spec(), state, "infra")) == checksum(first)


def test_public_names_drive_endpoint_and_certificate() -> None:
    s = spec(
        tls={"dnsNames": ["registry.lab.example"], "ipAddresses": ["10.0.0.5"]},
        service={"type": "LoadBalancer", "port": 443, "loadBalancerIP": "10.0.0.6"},
    )
    want = desired.managed("lab", UID, s, desired.Resolved(ingress_hosts=("10.0.0.7",)), "infra")
    assert want.endpoint == "https://registry.lab.example"
    tls = by_kind(want)["Secret/registry-lab-tls"]
    names = pki.certificate_names(secret_text(tls, "tls.crt"))
    assert {"registry.lab.example", "10.0.0.5", "10.0.0.6", "10.0.0.7"} <= names
    svc = by_kind(want)["Service/registry-lab"]["spec"]
    assert svc["loadBalancerIP"] == "10.0.0.6" and svc["ports"][0]["port"] == 443


def test_auth_proxy_and_gc() -> None:
    s = spec(
        auth={"htpasswdSecretRef": {"name": "users", "key": "htpasswd"}},
        proxy={"upstreamURL": "https://registry-1.docker.io", "credentialsSecretRef": {"name": "hub"}},
        gcSchedule="0 3 * * *",
    )
    resolved = desired.Resolved(htpasswd=htpasswd.render({"ci": "pw"}), upstream_credentials=("bob", "tok"))
    want = desired.managed("hub", UID, s, resolved, "infra")
    objs = by_kind(want)
    config = yaml.safe_load(objs["ConfigMap/registry-hub-config"]["data"]["config.yml"])
    assert config["proxy"] == {"remoteurl": "https://registry-1.docker.io"}
    assert config["auth"]["htpasswd"]["path"] == "/etc/trellis/registry-auth/htpasswd"
    assert "tok" not in objs["ConfigMap/registry-hub-config"]["data"]["config.yml"]
    assert secret_text(objs["Secret/registry-hub-upstream"], "password") == "tok"
    env = {
        e["name"] for e in objs["Deployment/registry-hub"]["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env == {"REGISTRY_HTTP_SECRET", "REGISTRY_PROXY_USERNAME", "REGISTRY_PROXY_PASSWORD"}
    cron = objs["CronJob/registry-hub-gc"]
    assert cron["spec"]["schedule"] == "0 3 * * *"
    job_container = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    assert job_container["args"] == [
        "garbage-collect",
        "--delete-untagged",
        "/etc/trellis/registry/config.yml",
    ]
    consumers = objs["ConfigMap/registry-hub-consumers"]["data"]
    assert "containerd.docker.io.hosts.toml" in consumers
    assert yaml.safe_load(consumers[fragments.KEY_TALOS_PATCH])["machine"]["registries"]["mirrors"] == {
        "docker.io": {"endpoints": [want.endpoint]}
    }
    assert want.upstream_url == "https://registry-1.docker.io" and want.upstream_has_credentials


@pytest.mark.parametrize(
    ("managed", "resolved", "reason"),
    [
        ({"proxy": {"upstreamURL": "https://ghcr.io/v2/x"}}, desired.Resolved(), "InvalidUpstreamURL"),
        (
            {"proxy": {"upstreamURL": "https://ghcr.io", "credentialsSecretRef": {"name": "gone"}}},
            desired.Resolved(),
            "SecretNotFound",
        ),
        ({"auth": {"htpasswdSecretRef": {"name": "u", "key": "h"}}}, desired.Resolved(), "SecretNotFound"),
        (
            {"auth": {"htpasswdSecretRef": {"name": "u", "key": "h"}}},
            desired.Resolved(htpasswd="ci:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g="),
            "InvalidHtpasswd",
        ),
        ({"tls": {"mode": "secret", "secretRef": {"name": "mine"}}}, desired.Resolved(), "SecretNotFound"),
    ],
)
def test_unusable_settings_give_a_reason(
    managed: dict[str, Any], resolved: desired.Resolved, reason: str
) -> None:
    with pytest.raises(desired.InvalidSpec) as err:
        desired.managed("bad", UID, spec(**managed), resolved, "infra")
    assert err.value.reason == reason


def test_user_tls_secret_is_copied_and_its_ca_published() -> None:
    ca = pki.generate_ca("user-ca")
    serving = pki.issue_serving(ca, ["registry.example"])
    s = spec(tls={"mode": "secret", "secretRef": {"name": "mine"}})
    want = desired.managed(
        "u",
        UID,
        s,
        desired.Resolved(user_tls=desired.UserTLS(serving.cert_pem, serving.key_pem, ca.cert_pem)),
        "ns",
    )
    objs = by_kind(want)
    assert "Secret/registry-u-ca" not in objs
    assert secret_text(objs["Secret/registry-u-tls"], "tls.crt") == serving.cert_pem
    assert want.ca_bundle == ca.cert_pem
    mismatched = desired.Resolved(user_tls=desired.UserTLS(serving.cert_pem, ca.key_pem, None))
    with pytest.raises(desired.InvalidSpec, match="does not belong"):
        desired.managed("u", UID, s, mismatched, "ns")


def test_external_mode() -> None:
    ca = pki.generate_ca("ext")
    s = RegistrySpec.model_validate(
        {
            "mode": "external",
            "external": {
                "url": "https://registry.example.net:5000/",
                "caSecretRef": {"name": "ca", "key": "ca.crt"},
            },
            "mirrorOf": ["docker.io", "quay.io"],
        }
    )
    want = desired.external("ext", UID, s, desired.Resolved(external_ca=ca.cert_pem), "trellis-system")
    assert want.endpoint == "https://registry.example.net:5000"
    assert want.probe_url == "https://registry.example.net:5000/v2/"
    assert [o["kind"] for o in want.objects] == ["ConfigMap"]
    data = want.objects[0]["data"]
    assert data[fragments.KEY_CA] == ca.cert_pem
    assert {"containerd.docker.io.hosts.toml", "containerd.quay.io.hosts.toml"} <= set(data)
    with pytest.raises(desired.InvalidSpec) as err:
        desired.external("ext", UID, s, desired.Resolved(), "trellis-system")
    assert err.value.reason == "SecretNotFound"
    with pytest.raises(desired.InvalidSpec) as err:
        desired.external("ext", UID, s, desired.Resolved(external_ca="garbage"), "trellis-system")
    assert err.value.reason == "InvalidCA"


def test_long_names_stay_valid_labels() -> None:
    name = "a" * 200
    for suffix in ("", "consumers", "data"):
        child = child_name(name, suffix)
        assert len(child) <= 63 and child.endswith(suffix)
    assert child_name(name) != child_name("a" * 199)


def test_private_upstream_ca_is_mounted_and_trusted() -> None:
    ca = pki.generate_ca("upstream")
    proxy = {"upstreamURL": "https://mirror.lab.example:5000", "caSecretRef": {"name": "up", "key": "ca.crt"}}
    want = desired.managed("c", UID, spec(proxy=proxy), desired.Resolved(upstream_ca=ca.cert_pem), "ns")
    objs = by_kind(want)
    assert secret_text(objs["Secret/registry-c-upstream-ca"], "ca.crt") == ca.cert_pem
    pod = objs["Deployment/registry-c"]["spec"]["template"]["spec"]
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert env["SSL_CERT_DIR"] == "/etc/ssl/certs:/etc/trellis/registry-upstream-ca"
    assert {"name": "upstream-ca", "mountPath": "/etc/trellis/registry-upstream-ca", "readOnly": True} in (
        pod["containers"][0]["volumeMounts"]
    )
    assert want.upstream_ca == ca.cert_pem
    other = desired.managed(
        "c", UID, spec(proxy=proxy), desired.Resolved(upstream_ca=pki.generate_ca("x").cert_pem), "ns"
    )
    assert (
        by_kind(other)["Deployment/registry-c"]["spec"]["template"]["metadata"]["annotations"]
        != objs["Deployment/registry-c"]["spec"]["template"]["metadata"]["annotations"]
    )
    for resolved, reason in [
        (desired.Resolved(), "SecretNotFound"),
        (desired.Resolved(upstream_ca="junk"), "InvalidCA"),
    ]:
        with pytest.raises(desired.InvalidSpec) as err:
            desired.managed("c", UID, spec(proxy=proxy), resolved, "ns")
        assert err.value.reason == reason
