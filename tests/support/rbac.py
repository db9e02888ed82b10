"""A component's chart RBAC, applied for real: its ServiceAccount, roles and bindings, a token
for that ServiceAccount, and a kubeconfig that authenticates as it.

An operator started with ``env={"KUBECONFIG": access.kubeconfig}`` then has exactly the
permissions the chart grants it, no more.
"""

from __future__ import annotations

import json
import re
import secrets
import subprocess
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.support.kube import BIN, REPO, ControlPlane

CHART = REPO / "charts" / "trellis"
HELM = BIN / "helm"
COMPONENT_LABEL = "app.kubernetes.io/component"
ROLE_KINDS = ("ClusterRole", "Role")
BINDING_KINDS = ("ClusterRoleBinding", "RoleBinding")
CLUSTER_SCOPED = ("ClusterRole", "ClusterRoleBinding")
# The chart refuses to render without a Kubernetes version; this one when no server is asked.
KUBE_VERSION = "v1.35.4"
# What a log shows when the apiserver refused a request: the client's HTTP 403 or kopf's
# own warnings about watches it was not allowed to open.
DENIAL = re.compile(
    r"forbidden|not enough (rbac )?permissions|\b(status|code)\W{0,4}403\b|\(403\)", re.IGNORECASE
)


def render_chart(
    namespace: str, release: str = "trellis", sets: Iterable[str] = (), kube_version: str = KUBE_VERSION
) -> list[dict[str, Any]]:
    """``helm template`` of the chart: every rendered document (CRDs excluded)."""
    if not HELM.exists():
        raise AssertionError(f"{HELM} is missing: run the tests through `make test`, which builds it")
    args = [
        str(HELM),
        "template",
        release,
        str(CHART),
        "--namespace",
        namespace,
        "--kube-version",
        kube_version,
    ]
    for setting in sets:
        args += ["--set", setting]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)
    if proc.returncode != 0:
        raise AssertionError(f"helm template failed:\n{proc.stderr}")
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]


@dataclass(frozen=True)
class Rule:
    """One PolicyRule, with where it applies: the whole cluster or one namespace."""

    role: str
    scope: str  # "cluster" or a namespace
    api_groups: tuple[str, ...]
    resources: tuple[str, ...]
    verbs: tuple[str, ...]
    resource_names: tuple[str, ...]
    non_resource_urls: tuple[str, ...]

    def grants(self, verb: str, group: str, resource: str) -> bool:
        return (
            (verb in self.verbs or "*" in self.verbs)
            and (group in self.api_groups or "*" in self.api_groups)
            and (resource in self.resources or "*" in self.resources)
        )

    def __str__(self) -> str:
        names = f" names={list(self.resource_names)}" if self.resource_names else ""
        groups = [g or "core" for g in self.api_groups]
        return f"{self.role} [{self.scope}] {groups} {list(self.resources)} {list(self.verbs)}{names}"


@dataclass
class ComponentRbac:
    """The ServiceAccount of one component and the chart documents that grant it anything."""

    component: str
    namespace: str
    service_account: dict[str, Any]
    roles: list[dict[str, Any]]
    bindings: list[dict[str, Any]]
    unresolved_role_refs: list[str]
    workload: dict[str, Any] | None

    @property
    def name(self) -> str:
        return str(self.service_account["metadata"]["name"])

    @property
    def user(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.name}"

    @property
    def documents(self) -> list[dict[str, Any]]:
        return [self.service_account, *self.roles, *self.bindings]

    def rules(self) -> list[Rule]:
        """Every rule granted to the ServiceAccount, with the scope the binding gives it."""
        by_key = {(r["kind"], r["metadata"]["name"]): r for r in self.roles}
        found: list[Rule] = []
        for binding in self.bindings:
            ref = binding["roleRef"]
            role = by_key.get((ref["kind"], ref["name"]))
            if role is None:
                continue
            scope = (
                "cluster"
                if binding["kind"] == "ClusterRoleBinding"
                else _namespace_of(binding, self.namespace)
            )
            for raw in role.get("rules") or []:
                found.append(
                    Rule(
                        role=f"{role['kind']}/{role['metadata']['name']}",
                        scope=scope,
                        api_groups=tuple(raw.get("apiGroups") or ()),
                        resources=tuple(raw.get("resources") or ()),
                        verbs=tuple(raw.get("verbs") or ()),
                        resource_names=tuple(raw.get("resourceNames") or ()),
                        non_resource_urls=tuple(raw.get("nonResourceURLs") or ()),
                    )
                )
        return found

    def workload_env(self) -> dict[str, str]:
        """The operator container's environment as the chart sets it: literal values and the
        pod's own namespace (the downward API); anything else needs a kubelet and is left out."""
        if self.workload is None:
            return {}
        container = self.workload["spec"]["template"]["spec"]["containers"][0]
        env: dict[str, str] = {}
        for item in container.get("env") or []:
            field = ((item.get("valueFrom") or {}).get("fieldRef") or {}).get("fieldPath")
            if "value" in item:
                env[item["name"]] = str(item["value"])
            elif field == "metadata.namespace":
                env[item["name"]] = _namespace_of(self.workload, self.namespace)
        return env

    def watch_namespace(self) -> str | None:
        """The namespace the chart's Deployment confines kopf to, or None for all namespaces."""
        if self.workload is None:
            return None
        containers = self.workload["spec"]["template"]["spec"].get("containers") or []
        argv = [str(a) for c in containers[:1] for a in (c.get("command") or []) + (c.get("args") or [])]
        for i, arg in enumerate(argv):
            if arg in ("-n", "--namespace") and i + 1 < len(argv):
                return argv[i + 1]
            if arg.startswith("--namespace="):
                return arg.split("=", 1)[1]
        return None


def _namespace_of(doc: dict[str, Any], default: str) -> str:
    return str(doc["metadata"].get("namespace") or default)


def _subject_is(subject: dict[str, Any], name: str, namespace: str) -> bool:
    return (
        subject.get("kind") == "ServiceAccount"
        and subject.get("name") == name
        and (subject.get("namespace") or namespace) == namespace
    )


def component_rbac(docs: list[dict[str, Any]], component: str, namespace: str) -> ComponentRbac | None:
    """The component's ServiceAccount (the one its Deployment runs as) and what is bound to it.

    None when the chart renders no ServiceAccount for the component.
    """
    labelled = [d for d in docs if (d["metadata"].get("labels") or {}).get(COMPONENT_LABEL) == component]
    workloads = [d for d in labelled if d["kind"] == "Deployment"]
    accounts = [d for d in labelled if d["kind"] == "ServiceAccount"]
    if not accounts:
        return None
    workload = workloads[0] if workloads else None
    account = accounts[0]
    if workload is not None:
        wanted = workload["spec"]["template"]["spec"].get("serviceAccountName")
        account = next((a for a in accounts if a["metadata"]["name"] == wanted), account)
    sa_name = account["metadata"]["name"]
    sa_namespace = _namespace_of(account, namespace)
    bindings = [
        d
        for d in docs
        if d["kind"] in BINDING_KINDS
        and any(_subject_is(s, sa_name, sa_namespace) for s in d.get("subjects") or [])
    ]
    roles: list[dict[str, Any]] = []
    unresolved: list[str] = []
    for binding in bindings:
        ref = binding["roleRef"]
        match = [
            d
            for d in docs
            if d["kind"] == ref["kind"]
            and d["metadata"]["name"] == ref["name"]
            and (
                d["kind"] == "ClusterRole" or _namespace_of(d, namespace) == _namespace_of(binding, namespace)
            )
        ]
        if match:
            roles.extend(m for m in match if m not in roles)
        else:
            unresolved.append(
                f"{binding['kind']}/{binding['metadata']['name']} -> {ref['kind']}/{ref['name']}"
            )
    return ComponentRbac(component, sa_namespace, account, roles, bindings, unresolved, workload)


def server_version(cp: ControlPlane) -> str:
    return str(json.loads(cp.kubectl("version", "-o", "json").stdout)["serverVersion"]["gitVersion"])


def unique_release() -> str:
    """A release name of its own, so cluster-scoped roles of concurrent tests never collide."""
    return f"rbac{secrets.token_hex(3)}"


@dataclass
class ServiceAccountAccess:
    """A component's RBAC applied on the control plane, and a kubeconfig acting as its ServiceAccount."""

    rbac: ComponentRbac
    kubeconfig: Path
    token: str

    @property
    def env(self) -> dict[str, str]:
        return {"KUBECONFIG": str(self.kubeconfig)}


def mint_token(cp: ControlPlane, namespace: str, service_account: str, duration: str = "2h") -> str:
    """A bound token for the ServiceAccount from the TokenRequest API."""
    out = cp.kubectl("create", "token", service_account, "-n", namespace, f"--duration={duration}").stdout
    return out.strip()


def token_kubeconfig(cp: ControlPlane, token: str, user: str, namespace: str, path: Path) -> Path:
    """A kubeconfig with the admin's server and CA but ``token`` as the only credential."""
    admin = yaml.safe_load(cp.kubeconfig.read_text())
    context = next(c for c in admin["contexts"] if c["name"] == admin["current-context"])["context"]
    cluster = next(c for c in admin["clusters"] if c["name"] == context["cluster"])["cluster"]
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "trellis", "cluster": dict(cluster)}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": user, "context": {"cluster": "trellis", "user": user, "namespace": namespace}}],
        "current-context": user,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text(yaml.safe_dump(config))
    return path


def apply_rbac(cp: ControlPlane, rbac: ComponentRbac) -> None:
    cp.kubectl("apply", "-n", rbac.namespace, "-f", "-", input=yaml.safe_dump_all(rbac.documents))


def remove_cluster_scoped(cp: ControlPlane, rbac: ComponentRbac) -> None:
    """Namespaced objects go with the test's namespace; cluster-wide ones are deleted here."""
    for doc in rbac.documents:
        if doc["kind"] in CLUSTER_SCOPED:
            cp.kubectl(
                "delete", doc["kind"].lower(), doc["metadata"]["name"], "--ignore-not-found", check=False
            )


@contextmanager
def service_account_access(
    cp: ControlPlane, component: str, namespace: str, workdir: Path, sets: Iterable[str] = ()
) -> Iterator[ServiceAccountAccess]:
    """Apply the component's chart RBAC in ``namespace`` and act as its ServiceAccount.

    The chart is rendered under a release name of its own; cluster-scoped roles and bindings
    are removed afterwards.
    """
    docs = render_chart(namespace, unique_release(), sets, server_version(cp))
    rbac = component_rbac(docs, component, namespace)
    if rbac is None:
        raise AssertionError(f"the chart renders no ServiceAccount for {component}")
    apply_rbac(cp, rbac)
    try:
        token = mint_token(cp, rbac.namespace, rbac.name)
        path = token_kubeconfig(cp, token, rbac.user, namespace, workdir / f"{component}.kubeconfig")
        yield ServiceAccountAccess(rbac, path, token)
    finally:
        remove_cluster_scoped(cp, rbac)


def can_i(
    cp: ControlPlane,
    rbac: ComponentRbac,
    verb: str,
    resource: str,
    namespace: str | None = None,
    subresource: str | None = None,
) -> bool:
    """``kubectl auth can-i`` as the component's ServiceAccount (with its groups).

    ``namespace=None`` asks about all namespaces (a cluster-wide grant).
    """
    args = ["auth", "can-i", verb, resource, "--as", rbac.user]
    for group in (
        "system:serviceaccounts",
        f"system:serviceaccounts:{rbac.namespace}",
        "system:authenticated",
    ):
        args += ["--as-group", group]
    args += ["-n", namespace] if namespace else ["--all-namespaces"]
    if subresource:
        args += ["--subresource", subresource]
    proc = cp.kubectl(*args, check=False)
    answer = proc.stdout.strip()
    if answer not in ("yes", "no"):
        raise AssertionError(f"kubectl {' '.join(args)}: {proc.stdout}{proc.stderr}")
    return answer == "yes"


def denials(log: str) -> list[str]:
    """Lines of an operator log that show a request the apiserver refused."""
    return [line for line in log.splitlines() if DENIAL.search(line)]
