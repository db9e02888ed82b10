"""From a Registry spec (plus what was read from the cluster) to the objects and status we want.

Pure apart from key generation: a CA, a serving certificate or the HTTP secret are created only
when the cluster does not already hold a usable one, so repeated calls with the same inputs give
the same objects and a no-op reconcile writes nothing.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from trellis.api.registry import RegistrySpec
from trellis.operators.registry import fragments, htpasswd, pki
from trellis.operators.registry.config import (
    ServeOptions,
    UpstreamURLError,
    checksum,
    render_config,
    validate_upstream_url,
)
from trellis.operators.registry.workload import (
    DEBUG_PORT,
    Owner,
    WorkloadPlan,
    child_name,
    config_map,
    consumer_config_map,
    deployment,
    gc_cron_job,
    persistent_volume_claim,
    secret,
    service,
)

DEFAULT_IMAGE = "docker.io/library/registry:2.8.3"
DEFAULT_STORAGE = "20Gi"


class InvalidSpec(Exception):
    """A setting that cannot work; ``reason`` goes into the condition and the Event."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class UserTLS:
    cert_pem: str
    key_pem: str
    ca_pem: str | None


@dataclass(frozen=True)
class Resolved:
    """Cluster state the plan depends on, read by the client layer."""

    user_tls: UserTLS | None = None
    htpasswd: str | None = None
    upstream_credentials: tuple[str, str] | None = None
    upstream_ca: str | None = None
    external_ca: str | None = None
    generated_ca: pki.KeyPair | None = None
    generated_serving: pki.KeyPair | None = None
    http_secret: str | None = None
    ingress_hosts: tuple[str, ...] = ()


@dataclass
class Desired:
    namespace: str
    endpoint: str
    ca_bundle: str | None
    probe_url: str
    consumer_config_map: str
    objects: list[dict[str, Any]] = field(default_factory=list)
    insecure_skip_verify: bool = False
    probe_credentials: tuple[str, str] | None = None
    upstream_url: str | None = None
    upstream_has_credentials: bool = False
    upstream_ca: str | None = None


def _url(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"https://{shown}" + ("" if port == 443 else f":{port}")


def service_dns_names(registry: str, namespace: str) -> list[str]:
    svc = child_name(registry)
    return [svc, f"{svc}.{namespace}", f"{svc}.{namespace}.svc", f"{svc}.{namespace}.svc.cluster.local"]


def _mirrors(spec: RegistrySpec, upstream: str | None) -> list[str]:
    if spec.mirror_of:
        return list(spec.mirror_of)
    if upstream:
        host = urlsplit(upstream).netloc
        return ["docker.io"] if host in fragments.DOCKER_HUB_NAMES else [host]
    return []


def _tls_material(
    name: str, spec: RegistrySpec, resolved: Resolved, sans: list[str]
) -> tuple[pki.KeyPair, str | None, pki.KeyPair | None]:
    """(serving pair, CA bundle, generated CA to keep) for a managed registry."""
    tls = spec.managed.tls if spec.managed else None
    if tls and tls.mode == "secret":
        user = resolved.user_tls
        if user is None:
            raise InvalidSpec("SecretNotFound", "the TLS Secret named in tls.secretRef was not found")
        problem = pki.validate_keypair(user.cert_pem, user.key_pem)
        if problem:
            raise InvalidSpec("InvalidTLSSecret", problem)
        return pki.KeyPair(user.cert_pem, user.key_pem), user.ca_pem, None
    ca = resolved.generated_ca or pki.generate_ca(f"trellis registry {name} CA")
    serving = resolved.generated_serving
    if serving is None or pki.serving_needs_reissue(serving, ca, sans) is not None:
        serving = pki.issue_serving(ca, sans)
    return serving, ca.cert_pem, ca


def managed(
    name: str,
    uid: str,
    spec: RegistrySpec,
    resolved: Resolved,
    namespace: str,
    default_image: str = DEFAULT_IMAGE,
) -> Desired:
    assert spec.managed is not None
    m = spec.managed
    owner = Owner(name, uid)
    svc = m.service
    port = svc.port if svc else 5000
    tls_spec = m.tls
    extra_dns = list(tls_spec.dns_names or []) if tls_spec else []
    extra_ips = list(tls_spec.ip_addresses or []) if tls_spec else []
    lb_ip = [svc.load_balancer_ip] if svc and svc.load_balancer_ip else []
    public = [*extra_dns, *lb_ip, *extra_ips, *resolved.ingress_hosts]
    sans = list(dict.fromkeys([*public, *service_dns_names(name, namespace)]))
    endpoint_host = public[0] if public else service_dns_names(name, namespace)[2]

    upstream = None
    if m.proxy:
        try:
            upstream = validate_upstream_url(m.proxy.upstream_url)
        except UpstreamURLError as exc:
            raise InvalidSpec("InvalidUpstreamURL", str(exc)) from exc
        if m.proxy.credentials_secret_ref and resolved.upstream_credentials is None:
            raise InvalidSpec(
                "SecretNotFound",
                "the upstream credentials Secret (proxy.credentialsSecretRef) was not found "
                "or lacks the keys username and password",
            )
        if m.proxy.ca_secret_ref:
            if resolved.upstream_ca is None:
                raise InvalidSpec(
                    "SecretNotFound", "the upstream CA Secret key (proxy.caSecretRef) was not found"
                )
            problem = pki.validate_ca_bundle(resolved.upstream_ca)
            if problem:
                raise InvalidSpec("InvalidCA", f"proxy.caSecretRef: {problem}")
    if m.auth:
        if resolved.htpasswd is None:
            raise InvalidSpec(
                "SecretNotFound", "the htpasswd Secret key named in auth.htpasswdSecretRef was not found"
            )
        try:
            htpasswd.validate_file(resolved.htpasswd)
        except htpasswd.CredentialsError as exc:
            raise InvalidSpec("InvalidHtpasswd", str(exc)) from exc

    serving, ca_bundle, generated_ca = _tls_material(name, spec, resolved, sans)
    opts = ServeOptions(
        name=name,
        htpasswd=m.auth is not None,
        proxy_remote_url=upstream,
        delete_enabled=m.delete_enabled,
        debug_port=DEBUG_PORT,
    )
    config_text = render_config(opts)
    http_secret = resolved.http_secret or secrets.token_hex(32)
    mounted: dict[str, str] = {
        "config.yml": config_text,
        "tls.crt": serving.cert_pem,
        "tls.key": serving.key_pem,
    }
    if m.auth and resolved.htpasswd is not None:
        mounted["htpasswd"] = resolved.htpasswd
    if resolved.upstream_credentials and upstream:
        mounted["upstream"] = "\0".join(resolved.upstream_credentials)
    upstream_ca = resolved.upstream_ca if upstream and m.proxy and m.proxy.ca_secret_ref else None
    if upstream_ca:
        mounted["upstream-ca"] = upstream_ca
    storage = m.storage
    plan = WorkloadPlan(
        owner=owner,
        namespace=namespace,
        image=m.image or default_image,
        replicas=m.replicas,
        config_text=config_text,
        checksum=checksum(mounted),
        service_type=svc.type if svc else "ClusterIP",
        service_port=port,
        node_port=svc.node_port if svc else None,
        load_balancer_ip=svc.load_balancer_ip if svc else None,
        storage_size=str(storage.size) if storage else DEFAULT_STORAGE,
        storage_class=storage.storage_class_name if storage else None,
        auth=m.auth is not None,
        proxy_credentials=bool(upstream and resolved.upstream_credentials),
        gc_schedule=m.gc_schedule,
        upstream_ca=upstream_ca is not None,
    )
    objects: list[dict[str, Any]] = []
    if generated_ca is not None:
        objects.append(
            secret(
                owner,
                child_name(name, "ca"),
                namespace,
                {"ca.crt": generated_ca.cert_pem, "ca.key": generated_ca.key_pem},
            )
        )
    tls_data = {"tls.crt": serving.cert_pem, "tls.key": serving.key_pem}
    if ca_bundle:
        tls_data["ca.crt"] = ca_bundle
    objects.append(secret(owner, child_name(name, "tls"), namespace, tls_data, "kubernetes.io/tls"))
    objects.append(secret(owner, child_name(name, "http"), namespace, {"secret": http_secret}))
    if m.auth and resolved.htpasswd is not None:
        objects.append(secret(owner, child_name(name, "auth"), namespace, {"htpasswd": resolved.htpasswd}))
    if plan.proxy_credentials and resolved.upstream_credentials:
        user, password = resolved.upstream_credentials
        objects.append(
            secret(owner, child_name(name, "upstream"), namespace, {"username": user, "password": password})
        )
    if upstream_ca:
        objects.append(secret(owner, child_name(name, "upstream-ca"), namespace, {"ca.crt": upstream_ca}))
    objects += [config_map(plan), persistent_volume_claim(plan), service(plan), deployment(plan)]
    cron = gc_cron_job(plan)
    if cron:
        objects.append(cron)

    endpoint = _url(endpoint_host, port)
    consumer = fragments.Consumer(endpoint, ca_bundle, _mirrors(spec, upstream), push=upstream is None)
    objects.append(consumer_config_map(owner, namespace, fragments.configmap_data(consumer)))
    return Desired(
        namespace=namespace,
        endpoint=endpoint,
        ca_bundle=ca_bundle,
        probe_url=_url(service_dns_names(name, namespace)[2], port) + "/v2/",
        consumer_config_map=f"{namespace}/{child_name(name, 'consumers')}",
        objects=objects,
        upstream_url=upstream,
        upstream_has_credentials=plan.proxy_credentials,
        upstream_ca=upstream_ca,
    )


def external(name: str, uid: str, spec: RegistrySpec, resolved: Resolved, namespace: str) -> Desired:
    assert spec.external is not None
    ext = spec.external
    parts = urlsplit(ext.url)
    if parts.path not in ("", "/") or parts.query or parts.fragment or not parts.hostname:
        raise InvalidSpec(
            "InvalidURL", f"external.url {ext.url!r} must be a base URL such as https://host:5000"
        )
    endpoint = f"{parts.scheme}://{parts.netloc}"
    if ext.ca_secret_ref and resolved.external_ca is None:
        raise InvalidSpec("SecretNotFound", "the CA Secret key named in external.caSecretRef was not found")
    if resolved.external_ca:
        problem = pki.validate_ca_bundle(resolved.external_ca)
        if problem:
            raise InvalidSpec("InvalidCA", problem)
    if ext.credentials_secret_ref and resolved.upstream_credentials is None:
        raise InvalidSpec(
            "SecretNotFound",
            "the credentials Secret (external.credentialsSecretRef) was not found "
            "or lacks username and password",
        )
    owner = Owner(name, uid)
    data = fragments.configmap_data(fragments.Consumer(endpoint, resolved.external_ca, _mirrors(spec, None)))
    return Desired(
        namespace=namespace,
        endpoint=endpoint,
        ca_bundle=resolved.external_ca,
        probe_url=endpoint + "/v2/",
        consumer_config_map=f"{namespace}/{child_name(name, 'consumers')}",
        objects=[consumer_config_map(owner, namespace, data)],
        insecure_skip_verify=ext.insecure_skip_verify,
        probe_credentials=resolved.upstream_credentials,
    )
