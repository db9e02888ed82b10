"""Valid base objects and the table of invalid variants the apiserver must reject."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

API = "trellis.dev/v1alpha1"
DELETE = object()


def _obj(kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": API, "kind": kind, "metadata": {"name": kind.lower()}, "spec": spec}


BASE: dict[str, dict[str, Any]] = {
    "router": _obj(
        "Router",
        {
            "address": "192.168.88.1",
            "credentialsSecretRef": {"name": "router-credentials", "namespace": "default"},
            "sshHostKey": {"knownHosts": "192.168.88.1 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB7tQ2tq"},
        },
    ),
    "network": _obj(
        "Network",
        {
            "cidr": "10.20.0.0/24",
            "gateway": "10.20.0.1",
            "router": "core",
            "dhcp": {
                "server": "router",
                "range": {"start": "10.20.0.100", "end": "10.20.0.199"},
                "dns": ["10.20.0.1"],
                "pxe": {"bootFile": "undionly.kpxe", "ipxeScriptURL": "http://10.20.0.10/ipxe"},
            },
            "dnsmasq": {"address": "10.20.0.2"},
            "bridge": "bridge-lab",
        },
    ),
    "reservation": _obj(
        "DHCPReservation",
        {"networkRef": "lab", "mac": "52:54:00:12:34:56", "ip": "10.20.0.50", "hostname": "web01"},
    ),
    "bmh": _obj(
        "BareMetalHost",
        {
            "bmc": {
                "address": "ipmi://10.30.0.11:623",
                "credentialsName": "bmc-secret",
                "mac": "0c:c4:7a:00:00:11",
            },
            "bootMACAddress": "0c:c4:7a:10:00:11",
            "online": True,
            "nics": [
                {"name": "eno1", "role": "boot", "mac": "0c:c4:7a:10:00:11", "networkRef": "lab"},
                {"name": "eno2", "role": "secondary", "mac": "0c:c4:7a:10:00:12", "networkRef": "storage"},
            ],
            "bootSource": {"type": "pxe"},
            "rootDeviceHints": {"deviceName": "/dev/sda", "minSizeGigabytes": 100},
        },
    ),
    "registry": _obj(
        "Registry",
        {
            "mode": "managed",
            "managed": {
                "storage": {"size": "20Gi"},
                "tls": {"mode": "generate"},
                "service": {"type": "NodePort"},
            },
        },
    ),
    "isocdrom": _obj(
        "ISOCDROM",
        {
            "source": {"url": "https://example.net/talos.iso", "sha256": "ab" * 32},
            "target": {"routerRef": "rds1"},
        },
    ),
    "taloscluster": _obj(
        "TalosCluster",
        {
            "endpoint": "https://10.20.0.10:6443",
            "talosVersion": "v1.12.0",
            "kubernetesVersion": "1.35.0",
            "volumes": [{"name": "EPHEMERAL", "provisioning": {"minSize": "10GiB", "maxSize": "80%"}}],
            "autoApproval": [{"name": "lab", "macPrefix": "52:54:00", "limit": 3}],
            "patches": {"json6902": [{"op": "add", "path": "/machine/env", "value": {"A": "b"}}]},
        },
    ),
    "talosdevice": _obj(
        "TalosDevice",
        {
            "mac": "52:54:00:aa:bb:01",
            "clusterRef": "homelab",
            "hostname": "node1",
            "approval": "Approved",
            "installDisk": "/dev/sda",
            "network": {"interfaces": [{"selector": {"name": "eth0"}, "addresses": ["10.20.0.21/24"]}]},
        },
    ),
}
NAMESPACED = {"reservation", "bmh", "taloscluster", "talosdevice"}


def build(base: str, changes: dict[str, Any]) -> dict[str, Any]:
    """A copy of BASE[base] with dotted paths (list indices as numbers) set, or removed with DELETE."""
    obj = copy.deepcopy(BASE[base])
    for path, value in changes.items():
        *parents, last = path.split(".")
        node: Any = obj
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
        key: Any = int(last) if isinstance(node, list) else last
        if value is DELETE:
            del node[key]
        else:
            node[key] = value
    return obj


@dataclass(frozen=True)
class Invalid:
    """An object (BASE[base] + changes) the apiserver must refuse, naming `field` in `message`."""

    id: str
    base: str
    changes: dict[str, Any]
    field: str
    message: str
    # For transition rules: the valid base is created first, then updated with the changes.
    update: bool = False


CASES = [
    # Router
    Invalid(
        "router-address-underscore", "router", {"spec.address": "core_router"}, "spec.address", "host name"
    ),
    Invalid(
        "router-api-port-range",
        "router",
        {"spec.apiPort": 70000},
        "spec.apiPort",
        "less than or equal to 65535",
    ),
    Invalid(
        "router-host-key-both",
        "router",
        {"spec.sshHostKey.secretRef": {"name": "kh", "key": "known_hosts"}},
        "spec.sshHostKey",
        "exactly one of knownHosts or secretRef",
    ),
    Invalid("router-role-unknown", "router", {"spec.role": "switch"}, "spec.role", "Unsupported value"),
    Invalid(
        "router-no-credentials",
        "router",
        {"spec.credentialsSecretRef": DELETE},
        "spec.credentialsSecretRef",
        "Required",
    ),
    # Network
    Invalid("network-cidr-garbage", "network", {"spec.cidr": "not-a-network"}, "spec.cidr", "CIDR notation"),
    Invalid("network-cidr-prefix-33", "network", {"spec.cidr": "10.20.0.0/33"}, "spec.cidr", "CIDR notation"),
    Invalid("network-cidr-host-bits", "network", {"spec.cidr": "10.20.0.5/24"}, "spec.cidr", "no host bits"),
    Invalid(
        "network-gateway-outside", "network", {"spec.gateway": "10.21.0.1"}, "spec.gateway", "inside cidr"
    ),
    Invalid(
        "network-gateway-network-address",
        "network",
        {"spec.gateway": "10.20.0.0"},
        "spec.gateway",
        "network address",
    ),
    Invalid(
        "network-gateway-garbage",
        "network",
        {"spec.gateway": "10.20.0.256"},
        "spec.gateway",
        "valid IPv4 or IPv6",
    ),
    Invalid(
        "network-range-reversed",
        "network",
        {"spec.dhcp.range": {"start": "10.20.0.199", "end": "10.20.0.100"}},
        "spec.dhcp.range",
        "must not be after",
    ),
    Invalid(
        "network-range-outside-cidr",
        "network",
        {"spec.dhcp.range.end": "10.20.1.10"},
        "spec.dhcp.range",
        "inside cidr",
    ),
    Invalid(
        "network-range-ipv6",
        "network",
        {"spec.dhcp.range.start": "fd00::10"},
        "spec.dhcp.range.start",
        "IPv4",
    ),
    Invalid(
        "network-gateway-in-range",
        "network",
        {"spec.gateway": "10.20.0.150"},
        "spec.dhcp.range",
        "gateway must not be",
    ),
    Invalid(
        "network-range-on-ipv6-cidr",
        "network",
        {"spec.cidr": "fd00:20::/64", "spec.gateway": "fd00:20::1", "spec.dnsmasq": DELETE},
        "spec.dhcp.range",
        "needs an IPv4 cidr",
    ),
    Invalid("network-gateway-family", "network", {"spec.gateway": "fd00::1"}, "spec.gateway", "inside cidr"),
    Invalid("network-vlan-4095", "network", {"spec.vlan": 4095}, "spec.vlan", "less than or equal to 4094"),
    Invalid(
        "network-dhcp-router-missing", "network", {"spec.router": DELETE}, "spec.router", "need spec.router"
    ),
    Invalid(
        "network-relay-no-target",
        "network",
        {"spec.dhcp.server": "relay"},
        "spec.dhcp.relay",
        "serverAddress",
    ),
    Invalid(
        "network-proxy-on-router",
        "network",
        {"spec.dhcp.mode": "proxy"},
        "spec.dhcp.mode",
        "only served by dnsmasq",
    ),
    Invalid(
        "network-lease-time-words",
        "network",
        {"spec.dhcp.leaseTime": "1 hour"},
        "spec.dhcp.leaseTime",
        "match",
    ),
    Invalid(
        "network-domain-underscore", "network", {"spec.dhcp.domain": "lab_net"}, "spec.dhcp.domain", "match"
    ),
    Invalid(
        "network-dnsmasq-outside",
        "network",
        {"spec.dnsmasq.address": "10.99.0.2"},
        "spec.dnsmasq.address",
        "cidr",
    ),
    Invalid(
        "network-bridge-injection", "network", {"spec.bridge": "br;/system reboot"}, "spec.bridge", "match"
    ),
    Invalid(
        "network-dns-duplicate",
        "network",
        {"spec.dhcp.dns": ["1.1.1.1", "1.1.1.1"]},
        "spec.dhcp.dns[1]",
        "Duplicate",
    ),
    Invalid(
        "network-ipxe-url-scheme",
        "network",
        {"spec.dhcp.pxe.ipxeScriptURL": "ftp://10.20.0.10/x"},
        "spec.dhcp.pxe.ipxeScriptURL",
        "match",
    ),
    Invalid(
        "network-bootfile-metachar",
        "network",
        {"spec.dhcp.pxe.bootFile": "undionly.kpxe;reboot"},
        "spec.dhcp.pxe.bootFile",
        "match",
    ),
    Invalid(
        "network-cidr-immutable",
        "network",
        {"spec.cidr": "10.20.0.0/23"},
        "spec.cidr",
        "immutable",
        update=True,
    ),
    # DHCPReservation
    Invalid("reservation-mac-short", "reservation", {"spec.mac": "00:11:22:33:44"}, "spec.mac", "match"),
    Invalid("reservation-mac-garbage", "reservation", {"spec.mac": "zz:11:22:33:44:55"}, "spec.mac", "match"),
    Invalid("reservation-mac-no-colons", "reservation", {"spec.mac": "001122334455"}, "spec.mac", "match"),
    Invalid(
        "reservation-hostname-underscore",
        "reservation",
        {"spec.hostname": "web_01"},
        "spec.hostname",
        "match",
    ),
    Invalid(
        "reservation-hostname-upper", "reservation", {"spec.hostname": "Web01"}, "spec.hostname", "match"
    ),
    Invalid(
        "reservation-ip-garbage", "reservation", {"spec.ip": "10.20.0.300"}, "spec.ip", "valid IPv4 or IPv6"
    ),
    Invalid(
        "reservation-no-network", "reservation", {"spec.networkRef": DELETE}, "spec.networkRef", "Required"
    ),
    Invalid(
        "reservation-mac-immutable",
        "reservation",
        {"spec.mac": "52:54:00:12:34:57"},
        "spec.mac",
        "immutable",
        update=True,
    ),
    Invalid(
        "reservation-network-immutable",
        "reservation",
        {"spec.networkRef": "other"},
        "spec.networkRef",
        "immutable",
        update=True,
    ),
    Invalid(
        "reservation-pxe-disabled-with-boot-file",
        "reservation",
        {"spec.pxe": {"enabled": False, "bootFile": "undionly.kpxe"}},
        "spec.pxe",
        "boot options cannot be set when enabled is false",
    ),
    # BareMetalHost
    Invalid("bmh-bmc-scheme", "bmh", {"spec.bmc.address": "idrac://10.30.0.11"}, "spec.bmc.address", "match"),
    Invalid("bmh-bmc-no-host", "bmh", {"spec.bmc.address": "ipmi://"}, "spec.bmc.address", "match"),
    Invalid("bmh-bmc-bare-host", "bmh", {"spec.bmc.address": "10.30.0.11"}, "spec.bmc.address", "match"),
    Invalid("bmh-boot-mac", "bmh", {"spec.bootMACAddress": "0c:c4:7a:10:00"}, "spec.bootMACAddress", "match"),
    Invalid(
        "bmh-two-boot-nics",
        "bmh",
        {"spec.nics.1.role": "boot"},
        "spec.nics",
        "at most one NIC may have role boot",
    ),
    Invalid(
        "bmh-boot-nic-mac-mismatch",
        "bmh",
        {"spec.nics.0.mac": "0c:c4:7a:10:00:99"},
        "spec.nics",
        "equal to bootMACAddress",
    ),
    Invalid("bmh-duplicate-nic-mac", "bmh", {"spec.nics.1.mac": "0C:C4:7A:10:00:11"}, "spec.nics", "unique"),
    Invalid("bmh-duplicate-nic-name", "bmh", {"spec.nics.1.name": "eno1"}, "spec.nics[1]", "Duplicate"),
    Invalid(
        "bmh-isocdrom-without-ref",
        "bmh",
        {"spec.bootSource": {"type": "isocdrom"}},
        "spec.bootSource.isocdromRef",
        "required",
    ),
    Invalid(
        "bmh-virtual-media-ipmi",
        "bmh",
        {"spec.bootSource": {"type": "isocdrom", "isocdromRef": "talos", "via": "virtualMedia"}},
        "spec.bootSource.via",
        "Redfish",
    ),
    Invalid(
        "bmh-boot-mac-is-bmc", "bmh", {"spec.bmc.mac": "0c:c4:7a:10:00:11"}, "spec.bootMACAddress", "BMC"
    ),
    Invalid(
        "bmh-unmanaged-with-boot-source",
        "bmh",
        {"spec.bmc": DELETE, "spec.bootSource": {"type": "pxe"}},
        "spec.bootSource",
        "Unmanaged",
    ),
    Invalid(
        "network-discovery-rate",
        "network",
        {"spec.discovery": {"maxPerMinute": 0}},
        "spec.discovery.maxPerMinute",
        "0",
    ),
    Invalid(
        "bmh-root-device-path",
        "bmh",
        {"spec.rootDeviceHints.deviceName": "sda"},
        "spec.rootDeviceHints.deviceName",
        "match",
    ),
    Invalid(
        "bmh-negative-min-size",
        "bmh",
        {"spec.rootDeviceHints.minSizeGigabytes": -1},
        "spec.rootDeviceHints.minSizeGigabytes",
        "greater than or equal to 0",
    ),
    # Registry
    Invalid(
        "registry-negative-size",
        "registry",
        {"spec.managed.storage.size": "-10Gi"},
        "spec.managed.storage.size",
        "match",
    ),
    Invalid(
        "registry-negative-int-size",
        "registry",
        {"spec.managed.storage.size": -5},
        "spec.managed.storage.size",
        "must not be negative",
    ),
    Invalid(
        "registry-zero-size",
        "registry",
        {"spec.managed.storage.size": "0"},
        "spec.managed.storage.size",
        "greater than zero",
    ),
    Invalid(
        "registry-size-unit",
        "registry",
        {"spec.managed.storage.size": "20GB"},
        "spec.managed.storage.size",
        "match",
    ),
    Invalid(
        "registry-external-missing",
        "registry",
        {"spec.mode": "external", "spec.managed": DELETE},
        "spec.external",
        "required for mode external",
    ),
    Invalid(
        "registry-managed-with-external",
        "registry",
        {"spec.external": {"url": "https://r.example.net"}},
        "spec.external",
        "not allowed for mode managed",
    ),
    Invalid(
        "registry-tls-secret-missing",
        "registry",
        {"spec.managed.tls.mode": "secret"},
        "spec.managed.tls.secretRef",
        "required",
    ),
    Invalid(
        "registry-gc-schedule",
        "registry",
        {"spec.managed.gcSchedule": "daily"},
        "spec.managed.gcSchedule",
        "match",
    ),
    Invalid(
        "registry-node-port",
        "registry",
        {"spec.managed.service.nodePort": 80},
        "spec.managed.service.nodePort",
        "30000",
    ),
    Invalid(
        "registry-mode-immutable",
        "registry",
        {"spec.mode": "external", "spec.managed": DELETE, "spec.external": {"url": "https://r.example.net"}},
        "spec.mode",
        "immutable",
        update=True,
    ),
    # ISOCDROM
    Invalid(
        "isocdrom-url-without-sha",
        "isocdrom",
        {"spec.source.sha256": DELETE},
        "spec.source.sha256",
        "required",
    ),
    Invalid(
        "isocdrom-url-and-path",
        "isocdrom",
        {"spec.source.rdsPath": "raid1/iso/x.iso"},
        "spec.source",
        "exactly one of url or rdsPath",
    ),
    Invalid(
        "isocdrom-sha-short", "isocdrom", {"spec.source.sha256": "abc123"}, "spec.source.sha256", "match"
    ),
    Invalid(
        "isocdrom-path-dotdot",
        "isocdrom",
        {"spec.source": {"rdsPath": "raid1/../etc/passwd"}},
        "spec.source.rdsPath",
        "'..'",
    ),
    Invalid(
        "isocdrom-delete-foreign-file",
        "isocdrom",
        {"spec.source": {"rdsPath": "raid1/iso/x.iso"}, "spec.deletePolicy": "Delete"},
        "spec.deletePolicy",
        "never deletes",
    ),
    Invalid("isocdrom-slot-too-long", "isocdrom", {"spec.slot": "s" * 33}, "spec.slot", "32"),
    Invalid(
        "isocdrom-source-immutable",
        "isocdrom",
        {"spec.source.url": "https://example.net/other.iso"},
        "spec.source",
        "immutable",
        update=True,
    ),
    # TalosCluster
    Invalid(
        "taloscluster-cidrs-overlap",
        "taloscluster",
        {"spec.podCIDRs": ["10.96.0.0/16"], "spec.serviceCIDRs": ["10.96.0.0/12"]},
        "spec.serviceCIDRs",
        "must not overlap",
    ),
    Invalid(
        "taloscluster-version", "taloscluster", {"spec.talosVersion": "1.12"}, "spec.talosVersion", "match"
    ),
    Invalid(
        "taloscluster-endpoint",
        "taloscluster",
        {"spec.endpoint": "10.20.0.10:6443"},
        "spec.endpoint",
        "match",
    ),
    Invalid(
        "taloscluster-rule-no-matcher",
        "taloscluster",
        {"spec.autoApproval": [{"name": "all", "limit": 5}]},
        "spec.autoApproval[0]",
        "at least one of macPrefix, cidr or selector",
    ),
    Invalid(
        "taloscluster-rule-negative-limit",
        "taloscluster",
        {"spec.autoApproval.0.limit": -1},
        "spec.autoApproval[0].limit",
        "greater than or equal to 0",
    ),
    Invalid(
        "taloscluster-custom-cni",
        "taloscluster",
        {"spec.cni": {"name": "custom"}},
        "spec.cni.urls",
        "required",
    ),
    Invalid(
        "taloscluster-negative-volume",
        "taloscluster",
        {"spec.volumes.0.provisioning.minSize": "-1GiB"},
        "spec.volumes[0].provisioning.minSize",
        "match",
    ),
    Invalid(
        "taloscluster-move-without-from",
        "taloscluster",
        {"spec.patches.json6902": [{"op": "move", "path": "/a"}]},
        "spec.patches.json6902[0].from",
        "required",
    ),
    Invalid(
        "taloscluster-patch-op",
        "taloscluster",
        {"spec.patches.json6902.0.op": "merge"},
        "spec.patches.json6902[0].op",
        "Unsupported value",
    ),
    # TalosDevice
    Invalid("talosdevice-mac", "talosdevice", {"spec.mac": "52-54-00-aa-bb-01"}, "spec.mac", "match"),
    Invalid(
        "talosdevice-approved-no-cluster",
        "talosdevice",
        {"spec.clusterRef": DELETE},
        "spec.clusterRef",
        "needs clusterRef",
    ),
    Invalid(
        "talosdevice-disk-and-selector",
        "talosdevice",
        {"spec.diskSelector": {"type": "nvme"}},
        "spec.diskSelector",
        "at most one",
    ),
    Invalid(
        "talosdevice-selector-two",
        "talosdevice",
        {"spec.network.interfaces.0.selector.hardwareAddr": "52:54:00:aa:bb:01"},
        "spec.network.interfaces[0].selector",
        "exactly one",
    ),
    Invalid(
        "talosdevice-address-no-prefix",
        "talosdevice",
        {"spec.network.interfaces.0.addresses": ["10.20.0.21"]},
        "spec.network.interfaces[0].addresses[0]",
        "prefix length",
    ),
    Invalid("talosdevice-hostname", "talosdevice", {"spec.hostname": "node_1"}, "spec.hostname", "match"),
    Invalid(
        "talosdevice-approval",
        "talosdevice",
        {"spec.approval": "Maybe"},
        "spec.approval",
        "Unsupported value",
    ),
    Invalid(
        "talosdevice-mac-immutable",
        "talosdevice",
        {"spec.mac": "52:54:00:aa:bb:02"},
        "spec.mac",
        "immutable",
        update=True,
    ),
    Invalid(
        "talosdevice-cluster-immutable",
        "talosdevice",
        {"spec.clusterRef": "other"},
        "spec.clusterRef",
        "cannot be changed",
        update=True,
    ),
]
