"""Least privilege of every operator's chart RBAC: the rendered rules (static) and what the
apiserver's authorizer answers for the applied roles (``kubectl auth can-i``).

The tables below are the documented needs of each operator; a rule beyond them is an over-grant.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.chart.conftest import OPERATORS, chart_rbac
from tests.support.kube import ControlPlane
from tests.support.rbac import ComponentRbac, Rule, apply_rbac, can_i, remove_cluster_scoped, unique_release

pytestmark = pytest.mark.integration

TRELLIS = "trellis.dev"
SAMPLE_NAMESPACE = "trellis-system"
WRITE_VERBS = {"create", "update", "patch", "delete", "deletecollection"}
ESCALATING_VERBS = {"escalate", "bind", "impersonate", "approve", "sign"}
TRELLIS_KINDS = {
    "networks", "dhcpreservations", "routers", "baremetalhosts", "registries", "isocdroms",
    "talosclusters", "talosdevices",
}  # fmt: skip
OWN_KINDS = {
    "network": {"networks", "dhcpreservations", "routers"},
    "baremetalhost": {"baremetalhosts"},
    "registry": {"registries"},
    "isocdrom": {"isocdroms"},
    "talosdevice": {"talosclusters", "talosdevices"},
}
# Writes on another operator's kinds: a BareMetalHost owns one DHCPReservation per NIC
# (operators/baremetalhost/reservations.py; their status stays the network operator's), and a
# TalosDevice consumes its BareMetalHost: the reprovision annotation to reinstall, online false to
# retire (operators/talosdevice/hardware.py, retire.py).
CROSS_WRITES = {
    ("baremetalhost", "dhcpreservations"): {"create", "update", "delete"},
    ("talosdevice", "baremetalhosts"): {"patch"},
}
# Every write on trellis.dev an operator makes. kopf itself only PATCHes (finalizers, progress
# annotations, status); the operators' own code patches too, except the BareMetalHost operator
# replacing (update) the reservations it owns.
PATCHED = {"patch"}
TRELLIS_WRITES = {
    "network": {
        "networks": PATCHED, "routers": PATCHED,  # kopf finalizers (deletion guard, probe daemon)
        "networks/status": PATCHED, "routers/status": PATCHED, "dhcpreservations/status": PATCHED,
    },
    "baremetalhost": {
        # create: discovered hosts (operators/baremetalhost/discovery.py); never update or delete.
        "baremetalhosts": PATCHED | {"create"}, "baremetalhosts/status": PATCHED,
        "dhcpreservations": CROSS_WRITES[("baremetalhost", "dhcpreservations")],
    },
    "registry": {"registries": PATCHED, "registries/status": PATCHED},
    "isocdrom": {"isocdroms": PATCHED, "isocdroms/status": PATCHED},
    "talosdevice": {
        "talosclusters": PATCHED, "talosdevices": PATCHED,
        "talosclusters/status": PATCHED, "talosdevices/status": PATCHED,
        "baremetalhosts": CROSS_WRITES[("talosdevice", "baremetalhosts")],
    },
}  # fmt: skip
# Secrets, by what each operator's code does with them.
SECRET_VERBS = {
    "network": {"get"},  # Router credentials, read by name (operators/network/kube.py)
    "baremetalhost": {"get"},  # BMC credentials, read by name (operators/baremetalhost/kube.py)
    "isocdrom": {"get"},  # Router credentials and pinned host keys (operators/isocdrom/cluster.py)
    "registry": {"get", "create", "patch"},  # CA, TLS, htpasswd, http secret (operators/registry/client.py)
    "talosdevice": {"get", "create", "update", "patch"},  # secrets bundle (operators/talosdevice/kube.py)
}
# Writes outside trellis.dev other than Secrets and Events: the objects each operator manages.
WORKLOAD_WRITES = {
    "network": {("", "configmaps"), ("apps", "deployments")},  # the managed dnsmasq
    "registry": {
        ("", "configmaps"),
        ("", "services"),
        ("", "persistentvolumeclaims"),
        ("apps", "deployments"),
        ("batch", "cronjobs"),
    },
    "talosdevice": {("", "configmaps")},  # the cluster's registry fragments
    "baremetalhost": set(),
    "isocdrom": set(),
}
# Workload writes that must stay inside the release namespace (a Role, not a ClusterRole).
RELEASE_NAMESPACE_ONLY = {"network": {("", "configmaps"), ("apps", "deployments")}}
# Reads that must stay inside the release namespace: the managed dnsmasq's Pods and their logs
# (hardware discovery reads dnsmasq's DHCP log; operators/network/observe.py).
RELEASE_NAMESPACE_READS = {"network": {("", "pods"), ("", "pods/log")}}
EVENTS = {("", "events"), ("events.k8s.io", "events")}
# Never granted to an operator: a path to more privileges than the chart gives.
NEVER = {
    ("rbac.authorization.k8s.io", r)
    for r in ("roles", "clusterroles", "rolebindings", "clusterrolebindings")
} | {
    ("", "pods/exec"), ("", "pods/attach"), ("", "pods/portforward"), ("", "nodes/proxy"),
    ("", "serviceaccounts/token"), ("certificates.k8s.io", "certificatesigningrequests"),
    ("admissionregistration.k8s.io", "validatingwebhookconfigurations"),
    ("admissionregistration.k8s.io", "mutatingwebhookconfigurations"),
}  # fmt: skip


def _pairs(rule: Rule) -> Iterator[tuple[str, str]]:
    for group in rule.api_groups:
        for resource in rule.resources:
            yield group, resource


def _writes(rule: Rule) -> set[str]:
    return set(rule.verbs) & WRITE_VERBS


def _static(component: str) -> ComponentRbac:
    return chart_rbac(component, SAMPLE_NAMESPACE)


@pytest.mark.parametrize("component", OPERATORS)
def test_rbac_is_bound_to_the_deployment_service_account(component: str) -> None:
    rbac = _static(component)
    assert rbac.workload is not None, f"{component}: no Deployment renders"
    pod = rbac.workload["spec"]["template"]["spec"]
    assert pod.get("serviceAccountName") == rbac.name
    projected = [
        source
        for volume in pod.get("volumes") or []
        for source in (volume.get("projected") or {}).get("sources") or []
        if "serviceAccountToken" in source
    ]
    assert pod.get("automountServiceAccountToken") is not False or projected, "the operator needs its token"
    assert rbac.bindings, f"{component}: nothing is bound to {rbac.name}"
    assert not rbac.unresolved_role_refs, (
        f"bindings to roles the chart does not render: {rbac.unresolved_role_refs}"
    )


@pytest.mark.parametrize("component", OPERATORS)
def test_no_wildcards_and_no_escalation(component: str) -> None:
    problems = []
    for rule in _static(component).rules():
        if "*" in rule.verbs or "*" in rule.resources or "*" in rule.api_groups:
            problems.append(f"wildcard: {rule}")
        if rule.non_resource_urls:
            problems.append(f"non-resource URLs: {rule}")
        if set(rule.verbs) & ESCALATING_VERBS:
            problems.append(f"escalating verbs: {rule}")
        for pair in _pairs(rule):
            if pair in NEVER:
                problems.append(f"{pair[0] or 'core'}/{pair[1]}: {rule}")
            if pair == ("apiextensions.k8s.io", "customresourcedefinitions") and _writes(rule):
                problems.append(f"CRD writes: {rule}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("component", OPERATORS)
def test_trellis_writes_stay_on_the_operators_own_kinds(component: str) -> None:
    problems = []
    for rule in _static(component).rules():
        if TRELLIS not in rule.api_groups or not _writes(rule):
            continue
        for resource in rule.resources:
            kind, _, sub = resource.partition("/")
            if kind in OWN_KINDS[component]:
                continue
            allowed = set() if sub else CROSS_WRITES.get((component, kind), set())
            extra = _writes(rule) - allowed
            if extra:
                problems.append(f"{sorted(extra)} on {resource} (another operator's kind): {rule}")
            unknown = kind not in TRELLIS_KINDS
            if unknown:
                problems.append(f"{resource} is no Trellis kind: {rule}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("component", OPERATORS)
def test_trellis_writes_are_the_ones_the_operator_makes(component: str) -> None:
    problems = []
    for rule in _static(component).rules():
        if TRELLIS not in rule.api_groups:
            continue
        for resource in rule.resources:
            extra = _writes(rule) - TRELLIS_WRITES[component].get(resource, set())
            if extra:
                problems.append(f"{sorted(extra)} on {resource} is never used: {rule}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("component", OPERATORS)
def test_secret_access_is_what_the_operator_uses(component: str) -> None:
    granted: set[str] = set()
    for rule in _static(component).rules():
        if ("", "secrets") in set(_pairs(rule)):
            granted |= set(rule.verbs)
    extra = granted - SECRET_VERBS[component]
    assert not extra, (
        f"{component} may {sorted(extra)} Secrets but only needs {sorted(SECRET_VERBS[component])}"
    )
    assert "list" not in granted and "watch" not in granted, "listing Secrets reads every one of them"


@pytest.mark.parametrize("component", OPERATORS)
def test_other_writes_are_the_operators_own_objects(component: str) -> None:
    problems = []
    for rule in _static(component).rules():
        if not _writes(rule) or TRELLIS in rule.api_groups:
            continue
        for pair in _pairs(rule):
            if pair in EVENTS or pair == ("", "secrets"):
                continue  # events: anyone reports; secrets: test_secret_access_is_what_the_operator_uses
            if pair not in WORKLOAD_WRITES[component]:
                problems.append(f"{sorted(_writes(rule))} on {pair[0] or 'core'}/{pair[1]}: {rule}")
            elif pair in RELEASE_NAMESPACE_ONLY.get(component, set()) and rule.scope != SAMPLE_NAMESPACE:
                problems.append(
                    f"{pair[0] or 'core'}/{pair[1]} writable beyond the release namespace: {rule}"
                )
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("component", OPERATORS)
def test_pod_reads_stay_in_the_release_namespace(component: str) -> None:
    allowed = RELEASE_NAMESPACE_READS.get(component, set())
    problems = []
    for rule in _static(component).rules():
        for pair in _pairs(rule):
            if pair[0] != "" or not pair[1].startswith("pods"):
                continue
            if pair not in allowed:
                problems.append(f"{pair[1]} is never read by {component}: {rule}")
            elif rule.scope != SAMPLE_NAMESPACE or set(rule.verbs) - {"get", "list"}:
                problems.append(f"{pair[1]} beyond a read in the release namespace: {rule}")
    assert not problems, "\n".join(problems)


@pytest.fixture
def applied(request: pytest.FixtureRequest, crds: ControlPlane, namespace: str) -> Iterator[ComponentRbac]:
    rbac = chart_rbac(request.param, namespace, release=unique_release())
    apply_rbac(crds, rbac)
    yield rbac
    remove_cluster_scoped(crds, rbac)


@pytest.mark.parametrize("applied", OPERATORS, indirect=True)
def test_authorizer_denies_what_the_operator_must_not_do(
    crds: ControlPlane, namespace: str, applied: ComponentRbac
) -> None:
    rbac, component = applied, applied.component
    own = sorted(OWN_KINDS[component])[0]
    # The grants are live: without these the denials below would prove nothing.
    assert can_i(crds, rbac, "watch", f"{own}.{TRELLIS}")
    assert can_i(crds, rbac, "patch", f"{own}.{TRELLIS}", subresource="status")
    assert can_i(crds, rbac, "get", "secrets", namespace)

    denied = [
        ("create", "clusterrolebindings", None, None),
        ("create", "roles", namespace, None),
        ("create", "pods", namespace, None),
        ("create", "pods", namespace, "exec"),
        ("create", "serviceaccounts", namespace, "token"),
        ("list", "secrets", None, None),
        ("watch", "secrets", namespace, None),
        ("delete", "customresourcedefinitions", None, None),
        ("delete", "namespaces", None, None),
    ]
    if SECRET_VERBS[component] == {"get"}:
        denied += [("create", "secrets", namespace, None), ("update", "secrets", namespace, None)]
    for kind in sorted(TRELLIS_KINDS - OWN_KINDS[component]):
        allowed = CROSS_WRITES.get((component, kind), set())
        denied += [
            (verb, f"{kind}.{TRELLIS}", None, None) for verb in ("update", "delete") if verb not in allowed
        ]
        denied.append(("patch", f"{kind}.{TRELLIS}", None, "status"))
    allowed_anyway = [d for d in denied if can_i(crds, rbac, d[0], d[1], d[2], d[3])]
    assert not allowed_anyway, f"{rbac.user} may: {allowed_anyway}"


# The Talos boot service: its own ServiceAccount, confined to the namespace it serves.
BOOT = "talosdevice-boot"
BOOT_SETS = ("talosdevice.bootService.enabled=true", "talosdevice.bootService.publicURL=http://10.0.0.5:8080")
BOOT_WRITES = {
    ("trellis.dev", "talosdevices"): {"create", "patch"},  # discovery; wipeOnNextBoot cleared once served
    ("trellis.dev", "talosdevices/status"): {"patch"},  # observed facts, ConfigServed
    ("", "events"): {"create", "patch"},
    ("events.k8s.io", "events"): {"create", "patch"},
}


def test_boot_service_rbac_is_namespaced_and_narrow() -> None:
    rbac = chart_rbac(BOOT, SAMPLE_NAMESPACE, sets=BOOT_SETS, package="talosdevice")
    assert (
        rbac.workload is not None
        and rbac.workload["spec"]["template"]["spec"]["serviceAccountName"] == rbac.name
    )
    problems = []
    for rule in rbac.rules():
        if rule.scope != SAMPLE_NAMESPACE:
            problems.append(f"beyond the served namespace: {rule}")
        if "*" in rule.verbs or "*" in rule.resources or "*" in rule.api_groups or rule.non_resource_urls:
            problems.append(f"wildcard: {rule}")
        for pair in _pairs(rule):
            extra = _writes(rule) - BOOT_WRITES.get(pair, set())
            if extra:
                problems.append(f"{sorted(extra)} on {pair[0] or 'core'}/{pair[1]}: {rule}")
    assert not problems, "\n".join(problems)
