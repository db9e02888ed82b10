"""Cluster-wide device rules as pure functions over plain device summaries.

- auto-approval: a discovered Pending device matching a rule (MAC prefix, boot-address CIDR, labels)
  is approved with the rule's role, at most `limit` devices per rule;
- the cluster endpoint address (when the endpoint is an IP) must belong to a control plane: the
  oldest approved control plane is held back until one owns it, a worker may never carry it;
- static addresses are unique among a cluster's approved devices (the older device keeps it);
- the last control plane cannot be removed or demoted while other approved devices remain.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from trellis.api.common import LabelSelector, normalize_mac
from trellis.api.talos import AutoApprovalRule


@dataclass(frozen=True)
class DeviceFacts:
    """What the rules need to know about one TalosDevice."""

    name: str
    created: str  # metadata.creationTimestamp (RFC 3339 sorts chronologically)
    mac: str
    cluster: str | None
    role: str
    approval: str
    addresses: frozenset[str] = frozenset()  # static IPs from the rendered config, no prefix
    labels: Mapping[str, str] = field(default_factory=dict)
    boot_ip: str | None = None
    approved_by_rule: str | None = None
    deleting: bool = False
    served_role: str | None = None  # role of the config last admitted for serving

    @property
    def approved(self) -> bool:
        return self.approval == "Approved" and not self.deleting

    @property
    def age_key(self) -> tuple[str, str]:
        return (self.created, self.name)


@dataclass(frozen=True)
class Verdict:
    """Whether a device's config may be served, and if not, why (condition reason + message)."""

    ok: bool
    reason: str
    message: str = ""


def endpoint_ip(endpoint: str) -> str | None:
    """The endpoint's host when it is an IP literal; None for DNS names."""
    host = urlsplit(endpoint).hostname or ""
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return None


def addresses_of(documents: Sequence[Mapping[str, Any]]) -> frozenset[str]:
    """Static addresses (and VIPs) a rendered config puts on the machine."""
    found: set[str] = set()
    for doc in documents:
        if "kind" in doc:
            continue
        network = ((doc.get("machine") or {}).get("network")) or {}
        links = list(network.get("interfaces") or [])
        links += [vlan for link in list(links) for vlan in (link.get("vlans") or [])]
        for link in links:
            for cidr in link.get("addresses") or ():
                found.add(str(ipaddress.ip_interface(cidr).ip))
            vip = (link.get("vip") or {}).get("ip")
            if vip:
                found.add(str(ipaddress.ip_address(vip)))
    return frozenset(found)


def cluster_verdicts(devices: Iterable[DeviceFacts], endpoint: str) -> dict[str, Verdict]:
    """Verdict per approved device of one cluster (unapproved devices are not in the result)."""
    approved = sorted((d for d in devices if d.approved), key=lambda d: d.age_key)
    verdicts: dict[str, Verdict] = {}
    owner_of: dict[str, str] = {}
    for dev in approved:
        taken = sorted(a for a in dev.addresses if a in owner_of)
        if taken:
            verdicts[dev.name] = Verdict(
                False,
                "AddressConflict",
                f"address {', '.join(taken)} already belongs to {owner_of[taken[0]]}",
            )
            continue
        for address in dev.addresses:
            owner_of[address] = dev.name
    ep = endpoint_ip(endpoint)
    controlplanes = [d for d in approved if d.role == "controlplane" and d.name not in verdicts]
    if ep:
        for dev in approved:
            if dev.role == "worker" and ep in dev.addresses and dev.name not in verdicts:
                verdicts[dev.name] = Verdict(
                    False, "EndpointOnWorker", f"the cluster endpoint address {ep} belongs on a control plane"
                )
        if controlplanes and not any(ep in d.addresses for d in controlplanes):
            first = controlplanes[0]
            verdicts[first.name] = Verdict(
                False,
                "EndpointNotOwned",
                f"the first control plane must own the cluster endpoint address {ep}: add {ep}/<prefix> to "
                "its addresses (or use a DNS name as endpoint)",
            )
    if len(approved) > 1 and not any(d.role == "controlplane" for d in approved):
        for dev in approved:
            if dev.served_role == "controlplane" and dev.name not in verdicts:
                verdicts[dev.name] = Verdict(
                    False,
                    "LastControlPlane",
                    "this is the cluster's last control plane and other devices remain: approve another "
                    "control plane before changing its role",
                )
    for dev in approved:
        if dev.name not in verdicts:
            verdicts[dev.name] = Verdict(True, "ConfigReady", f"{dev.role} config can be served")
    return verdicts


def blocks_deletion(device: DeviceFacts, siblings: Iterable[DeviceFacts]) -> str | None:
    """Why deleting this device must wait, or None: the last control plane stays while others remain."""
    if not (device.approval == "Approved" and device.role == "controlplane"):
        return None
    others = [d for d in siblings if d.name != device.name and d.approved]
    if not others or any(d.role == "controlplane" for d in others):
        return None
    return (
        f"{device.name} is the last control plane of cluster {device.cluster} and {len(others)} other "
        "approved device(s) remain: approve another control plane, or delete the workers or the TalosCluster "
        "first"
    )


def _selector_matches(selector: LabelSelector, labels: Mapping[str, str]) -> bool:
    for key, value in (selector.match_labels or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.match_expressions or ():
        present = expr.key in labels
        if expr.operator == "Exists" and not present:
            return False
        if expr.operator == "DoesNotExist" and present:
            return False
        values = expr.values or []
        if expr.operator == "In" and labels.get(expr.key) not in values:
            return False
        if expr.operator == "NotIn" and present and labels.get(expr.key) in values:
            return False
    return True


def rule_matches(rule: AutoApprovalRule, device: DeviceFacts) -> bool:
    if rule.mac_prefix and not normalize_mac(device.mac).startswith(normalize_mac(rule.mac_prefix)):
        return False
    if rule.cidr:
        if not device.boot_ip:
            return False
        try:
            if ipaddress.ip_address(device.boot_ip) not in ipaddress.ip_network(rule.cidr):
                return False
        except ValueError:
            return False
    return not (rule.selector and not _selector_matches(rule.selector, device.labels))


def auto_approval(
    device: DeviceFacts, rules: Sequence[AutoApprovalRule], devices: Iterable[DeviceFacts]
) -> AutoApprovalRule | None:
    """The first rule that matches this Pending device and still has room under its limit."""
    if device.approval != "Pending" or device.deleting:
        return None
    used: dict[str, int] = {}
    for other in devices:
        if other.approved_by_rule and other.name != device.name:
            used[other.approved_by_rule] = used.get(other.approved_by_rule, 0) + 1
    for rule in rules:
        if rule_matches(rule, device) and used.get(rule.name, 0) < rule.limit:
            return rule
    return None
