"""Applying the desired objects and reading what the plan depends on (synchronous; call from a thread).

Every object we write carries a hash of its desired content. When the hash on the live object
matches, nothing is sent: a no-op reconcile makes no write requests. Otherwise the object is
server-side applied with our field manager, which also drops fields we stopped setting.
"""

from __future__ import annotations

import base64
import hashlib
import json
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from trellis.api.registry import RegistrySpec
from trellis.operators.registry import pki
from trellis.operators.registry.desired import Resolved, UserTLS
from trellis.operators.registry.workload import child_name

FIELD_MANAGER = "trellis-registry-operator"
HASH_ANNOTATION = "trellis.dev/applied-hash"
APPLY = "application/apply-patch+yaml"


def content_hash(obj: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:32]


def _decode(data: dict[str, str] | None) -> dict[str, str]:
    return {k: base64.b64decode(v).decode(errors="replace") for k, v in (data or {}).items()}


class Kube:
    def __init__(self, api: client.ApiClient) -> None:
        self.core = client.CoreV1Api(api)
        self.apps = client.AppsV1Api(api)
        self.batch = client.BatchV1Api(api)

    def _ops(self, kind: str) -> tuple[Any, Any, Any]:
        """(read, create, patch) for a namespaced kind we manage."""
        table = {
            "ConfigMap": (self.core, "config_map"),
            "Secret": (self.core, "secret"),
            "Service": (self.core, "service"),
            "PersistentVolumeClaim": (self.core, "persistent_volume_claim"),
            "Deployment": (self.apps, "deployment"),
            "CronJob": (self.batch, "cron_job"),
        }
        api, suffix = table[kind]
        return (
            getattr(api, f"read_namespaced_{suffix}"),
            getattr(api, f"create_namespaced_{suffix}"),
            getattr(api, f"patch_namespaced_{suffix}"),
        )

    def read(self, kind: str, namespace: str, name: str) -> Any | None:
        read, _, _ = self._ops(kind)
        try:
            return read(name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def apply(self, obj: dict[str, Any]) -> str:
        """Create or update ``obj``; returns created, updated or unchanged."""
        kind, meta = obj["kind"], obj["metadata"]
        name, namespace = meta["name"], meta["namespace"]
        wanted = content_hash(obj)
        body = json.loads(json.dumps(obj))
        body["metadata"].setdefault("annotations", {})[HASH_ANNOTATION] = wanted
        _, create, patch = self._ops(kind)
        live = self.read(kind, namespace, name)
        if live is None:
            create(namespace, body, field_manager=FIELD_MANAGER)
            return "created"
        if (live.metadata.annotations or {}).get(HASH_ANNOTATION) == wanted:
            return "unchanged"
        if kind == "PersistentVolumeClaim":
            # Claims are immutable apart from growing the request; apply only labels and size.
            body = {
                "apiVersion": "v1",
                "kind": kind,
                "metadata": {"name": name, "namespace": namespace, "labels": meta.get("labels", {}),
                             "annotations": body["metadata"]["annotations"]},
                "spec": {"resources": obj["spec"]["resources"]},
            }  # fmt: skip
        patch(name, namespace, body, field_manager=FIELD_MANAGER, force=True, _content_type=APPLY)
        return "updated"

    def secret_data(self, namespace: str, name: str) -> dict[str, str] | None:
        live = self.read("Secret", namespace, name)
        return None if live is None else _decode(live.data)

    def secret_key(self, namespace: str, name: str, key: str) -> str | None:
        data = self.secret_data(namespace, name)
        return None if data is None else data.get(key)

    def credentials(self, namespace: str, name: str) -> tuple[str, str] | None:
        data = self.secret_data(namespace, name) or {}
        user, password = data.get("username"), data.get("password")
        return (user, password) if user and password else None

    def ingress_hosts(self, namespace: str, service_name: str) -> tuple[str, ...]:
        live = self.read("Service", namespace, service_name)
        ingress = (live.status.load_balancer.ingress or []) if live and live.status.load_balancer else []
        return tuple(i.ip or i.hostname for i in ingress if i.ip or i.hostname)

    def ready_replicas(self, namespace: str, name: str) -> int:
        live = self.read("Deployment", namespace, name)
        return int((live.status.ready_replicas or 0) if live and live.status else 0)


def resolve(kube: Kube, name: str, spec: RegistrySpec, namespace: str) -> Resolved:
    """Read every Secret the plan needs; absent ones stay None (desired turns that into a condition)."""

    def ns(ref_ns: str | None) -> str:
        return ref_ns or namespace

    if spec.mode == "external" and spec.external:
        ext = spec.external
        ca = creds = None
        if ext.ca_secret_ref:
            ca = kube.secret_key(
                ns(ext.ca_secret_ref.namespace), ext.ca_secret_ref.name, ext.ca_secret_ref.key
            )
        if ext.credentials_secret_ref:
            ref = ext.credentials_secret_ref
            creds = kube.credentials(ns(ref.namespace), ref.name)
        return Resolved(external_ca=ca, upstream_credentials=creds)

    m = spec.managed
    assert m is not None
    user_tls = htpasswd_text = upstream = None
    if m.tls and m.tls.mode == "secret" and m.tls.secret_ref:
        data = kube.secret_data(ns(m.tls.secret_ref.namespace), m.tls.secret_ref.name)
        if data and data.get("tls.crt") and data.get("tls.key"):
            user_tls = UserTLS(data["tls.crt"], data["tls.key"], data.get("ca.crt") or None)
    if m.auth:
        ref = m.auth.htpasswd_secret_ref
        htpasswd_text = kube.secret_key(ns(ref.namespace), ref.name, ref.key)
    if m.proxy and m.proxy.credentials_secret_ref:
        ref2 = m.proxy.credentials_secret_ref
        upstream = kube.credentials(ns(ref2.namespace), ref2.name)
    upstream_ca = None
    if m.proxy and m.proxy.ca_secret_ref:
        ref3 = m.proxy.ca_secret_ref
        upstream_ca = kube.secret_key(ns(ref3.namespace), ref3.name, ref3.key)
    generated_ca = generated_serving = None
    ca_data = kube.secret_data(namespace, child_name(name, "ca"))
    if ca_data and ca_data.get("ca.crt") and ca_data.get("ca.key"):
        generated_ca = pki.KeyPair(ca_data["ca.crt"], ca_data["ca.key"])
    tls_data = kube.secret_data(namespace, child_name(name, "tls"))
    if tls_data and tls_data.get("tls.crt") and tls_data.get("tls.key"):
        generated_serving = pki.KeyPair(tls_data["tls.crt"], tls_data["tls.key"])
    http = kube.secret_key(namespace, child_name(name, "http"), "secret")
    return Resolved(
        user_tls=user_tls,
        htpasswd=htpasswd_text,
        upstream_credentials=upstream,
        upstream_ca=upstream_ca,
        generated_ca=generated_ca,
        generated_serving=generated_serving,
        http_secret=http,
        ingress_hosts=kube.ingress_hosts(namespace, child_name(name)),
    )


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    status: int | None
    detail: str
    challenge: str = ""


def probe(
    url: str,
    ca_pem: str | None = None,
    insecure: bool = False,
    credentials: tuple[str, str] | None = None,
    timeout: float = 5.0,
) -> ProbeResult:
    """GET a registry's /v2/. Any HTTP answer below 500 (401 included) means the registry is up."""
    ctx = ssl.create_default_context(cadata=ca_pem) if ca_pem else ssl.create_default_context()
    if insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    request = urllib.request.Request(url, headers={"User-Agent": FIELD_MANAGER})
    if credentials:
        token = base64.b64encode(f"{credentials[0]}:{credentials[1]}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=ctx) as resp:
            return ProbeResult(True, resp.status, f"{url} answered {resp.status}")
    except urllib.error.HTTPError as exc:
        challenge = exc.headers.get("WWW-Authenticate", "") if exc.headers else ""
        ok = exc.code < 500
        return ProbeResult(ok, exc.code, f"{url} answered {exc.code}", challenge)
    except (urllib.error.URLError, OSError, ssl.SSLError) as exc:
        reason = getattr(exc, "reason", exc)
        return ProbeResult(False, None, f"{url}: {reason}")
