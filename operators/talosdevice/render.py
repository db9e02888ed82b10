"""The one render path: TalosCluster + TalosDevice + secrets bundle -> multi-document machine config.

Configs are built as data, patched (cluster patches, then device patches; strategic merge before
RFC 6902 within each), checked, and only then emitted as YAML. The iPXE script and the config
endpoint both go through `render_device`, so per-device settings cannot be dropped at serve time.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from trellis.api.talos import (
    ConfigPatches,
    HostDisk,
    TalosClusterSpec,
    TalosDeviceSpec,
)
from trellis.operators.talosdevice.bundle import SecretsBundle, b64
from trellis.operators.talosdevice.contract import Contract, contract_for
from trellis.operators.talosdevice.documents import (
    manual_mirror_documents,
    manual_mirrors_legacy,
    volume_documents,
)
from trellis.operators.talosdevice.patching import Document, PatchError, json6902, strategic_merge

DEFAULT_INSTALLER = "ghcr.io/siderolabs/installer"
KUBELET_IMAGE = "ghcr.io/siderolabs/kubelet"
K8S_REGISTRY = "registry.k8s.io"
DEFAULT_INSTALL_DISK = "/dev/sda"
KUBEPRISM_PORT = 7445
# The rds.csi.trellis.dev node plugin attaches volumes with nvme-cli over NVMe/TCP; Talos loads
# nvme_fabrics with it (modprobe resolves dependencies).
RDS_CSI_KERNEL_MODULES = ("nvme_tcp",)


_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


class RenderError(ValueError):
    """The inputs cannot produce a valid config; the message says which input and why."""


@dataclass(frozen=True)
class ClusterInput:
    name: str
    spec: TalosClusterSpec
    # Registry fragments published by Registry objects the cluster selects: for the legacy
    # contract a machine.registries patch, for 1.12+ RegistryMirrorConfig/RegistryTLSConfig docs.
    registry_patches: Sequence[Document] = ()
    registry_documents: Sequence[Document] = ()

    @property
    def cluster_name(self) -> str:
        return self.spec.cluster_name or self.name

    @property
    def contract(self) -> Contract:
        return contract_for(self.spec.talos_version)


@dataclass(frozen=True)
class DeviceInput:
    name: str
    spec: TalosDeviceSpec
    wipe: bool = False
    # From the linked BareMetalHost's rootDeviceHints (status.hostDisk): used when the device
    # names no disk itself, ahead of the cluster's default.
    host_disk: HostDisk | None = None


@dataclass
class Rendered:
    documents: list[Document]
    warnings: list[str] = field(default_factory=list)

    def to_yaml(self) -> str:
        # libyaml's emitter is ~10x faster than PyYAML's and is what a boot storm needs.
        return yaml.dump_all(
            self.documents, Dumper=_DUMPER, sort_keys=False, default_flow_style=False, width=1 << 16
        )


def config_hash(text: str) -> str:
    """Short, stable identity of a rendered config (status fields compare these, never the text)."""
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def k8s_version(spec: TalosClusterSpec) -> str:
    version = spec.kubernetes_version
    return version if version.startswith("v") else f"v{version}"


def installer_image(spec: TalosClusterSpec) -> str:
    return spec.installer_image or f"{DEFAULT_INSTALLER}:{spec.talos_version}"


# --- base documents -------------------------------------------------------------------------------


def _admission_control() -> list[dict[str, Any]]:
    return [
        {
            "name": "PodSecurity",
            "configuration": {
                "apiVersion": "pod-security.admission.config.k8s.io/v1alpha1",
                "kind": "PodSecurityConfiguration",
                "defaults": {
                    "audit": "restricted",
                    "audit-version": "latest",
                    "enforce": "baseline",
                    "enforce-version": "latest",
                    "warn": "restricted",
                    "warn-version": "latest",
                },
                "exemptions": {"namespaces": ["kube-system"], "runtimeClasses": [], "usernames": []},
            },
        }
    ]


def _cni(spec: TalosClusterSpec) -> dict[str, Any] | None:
    if spec.cni is None or spec.cni.name == "flannel":
        return None
    if spec.cni.name == "custom":
        return {"name": "custom", "urls": list(spec.cni.urls or [])}
    return {"name": "none"}


def base_document(cluster: ClusterInput, role: str, bundle: SecretsBundle) -> Document:
    spec = cluster.spec
    version = k8s_version(spec)
    controlplane = role == "controlplane"
    machine: dict[str, Any] = {
        "type": role,
        "token": bundle.trustd_token,
        "ca": {"crt": b64(bundle.os.crt), "key": b64(bundle.os.key) if controlplane else ""},
        "certSANs": [],
        "kubelet": {
            "image": f"{KUBELET_IMAGE}:{version}",
            "defaultRuntimeSeccompProfileEnabled": True,
            "disableManifestsDirectory": True,
        },
        "network": {},
        "install": {
            "disk": spec.install_disk or DEFAULT_INSTALL_DISK,
            "image": installer_image(spec),
            "wipe": False,
        },
        "features": {
            "rbac": True,
            "apidCheckExtKeyUsage": True,
            "diskQuotaSupport": True,
            "kubePrism": {"enabled": True, "port": KUBEPRISM_PORT},
            "hostDNS": {"enabled": True, "forwardKubeDNSToHost": True},
        },
    }
    network: dict[str, Any] = {
        "dnsDomain": spec.dns_domain,
        "podSubnets": list(spec.pod_cidrs),
        "serviceSubnets": list(spec.service_cidrs),
    }
    cni = _cni(spec)
    if cni:
        network["cni"] = cni
    cluster_doc: dict[str, Any] = {
        "id": bundle.cluster_id,
        "secret": bundle.cluster_secret,
        "controlPlane": {"endpoint": spec.endpoint},
        "clusterName": cluster.cluster_name,
        "network": network,
        "token": bundle.bootstrap_token,
        "ca": {"crt": b64(bundle.k8s.crt), "key": b64(bundle.k8s.key) if controlplane else ""},
        "discovery": {"enabled": True, "registries": {"kubernetes": {"disabled": True}, "service": {}}},
    }
    if spec.cni is not None and spec.cni.disable_kube_proxy:
        cluster_doc["proxy"] = {"disabled": True}
    if spec.storage is not None and spec.storage.rds_csi:
        machine["kernel"] = {"modules": [{"name": module} for module in RDS_CSI_KERNEL_MODULES]}
    if controlplane:
        machine["nodeLabels"] = {"node.kubernetes.io/exclude-from-external-load-balancers": ""}
        cluster_doc.update(
            {
                "secretboxEncryptionSecret": bundle.secretbox_secret,
                "aggregatorCA": {
                    "crt": b64(bundle.k8s_aggregator.crt),
                    "key": b64(bundle.k8s_aggregator.key),
                },
                "serviceAccount": {"key": b64(bundle.service_account_key)},
                "apiServer": {
                    "image": f"{K8S_REGISTRY}/kube-apiserver:{version}",
                    "certSANs": [],
                    "admissionControl": _admission_control(),
                    "auditPolicy": {
                        "apiVersion": "audit.k8s.io/v1",
                        "kind": "Policy",
                        "rules": [{"level": "Metadata"}],
                    },
                },
                "controllerManager": {"image": f"{K8S_REGISTRY}/kube-controller-manager:{version}"},
                "scheduler": {"image": f"{K8S_REGISTRY}/kube-scheduler:{version}"},
                "etcd": {"ca": {"crt": b64(bundle.etcd.crt), "key": b64(bundle.etcd.key)}},
            }
        )
        proxy = cluster_doc.setdefault("proxy", {})
        if not proxy.get("disabled"):
            proxy["image"] = f"{K8S_REGISTRY}/kube-proxy:{version}"
    return {
        "version": "v1alpha1",
        "debug": False,
        "persist": True,
        "machine": machine,
        "cluster": cluster_doc,
    }


# --- per-device settings --------------------------------------------------------------------------


def _routes(routes: Sequence[Any] | None) -> list[dict[str, Any]]:
    out = []
    for route in routes or ():
        item: dict[str, Any] = {"network": route.network}
        if route.gateway:
            item["gateway"] = route.gateway
        if route.metric is not None:
            item["metric"] = route.metric
        out.append(item)
    return out


def _link_settings(target: dict[str, Any], source: Any) -> None:
    if source.addresses:
        target["addresses"] = list(source.addresses)
    routes = _routes(source.routes)
    if routes:
        target["routes"] = routes
    if source.dhcp:
        target["dhcp"] = True
    if source.mtu:
        target["mtu"] = source.mtu


def network_interfaces(device: TalosDeviceSpec) -> list[dict[str, Any]]:
    interfaces = []
    for iface in (device.network.interfaces if device.network else None) or ():
        sel = iface.selector
        item: dict[str, Any]
        if sel.name:
            item = {"interface": sel.name}
        elif sel.bus_path:
            item = {"deviceSelector": {"busPath": sel.bus_path}}
        else:
            item = {"deviceSelector": {"hardwareAddr": (sel.hardware_addr or device.mac).lower()}}
        _link_settings(item, iface)
        vlans = []
        for vlan in iface.vlans or ():
            v: dict[str, Any] = {"vlanId": vlan.vlan_id}
            _link_settings(v, vlan)
            vlans.append(v)
        if vlans:
            item["vlans"] = vlans
        interfaces.append(item)
    return interfaces


def _disk_selector(device: TalosDeviceSpec) -> dict[str, Any]:
    selector = device.disk_selector
    assert selector is not None
    return selector.model_dump(by_alias=True, exclude_none=True)


def apply_device(doc: Document, cluster: ClusterInput, device: DeviceInput) -> None:
    spec, contract = device.spec, cluster.contract
    machine = doc["machine"]
    network = machine["network"]
    if spec.hostname and not contract.hostname_document:
        network["hostname"] = spec.hostname
    interfaces = network_interfaces(spec)
    if interfaces:
        network["interfaces"] = interfaces
    if spec.network and spec.network.nameservers:
        network["nameservers"] = list(spec.network.nameservers)
    install = machine["install"]
    if spec.disk_selector is not None:
        install.pop("disk", None)
        install["diskSelector"] = _disk_selector(spec)
    elif spec.install_disk:
        install["disk"] = spec.install_disk
    elif device.host_disk is not None and device.host_disk.disk_selector is not None:
        install.pop("disk", None)
        install["diskSelector"] = device.host_disk.disk_selector.model_dump(by_alias=True, exclude_none=True)
    elif device.host_disk is not None and device.host_disk.disk:
        install["disk"] = device.host_disk.disk
    install["wipe"] = bool(device.wipe)


def apply_patches(documents: list[Document], patches: ConfigPatches | None, origin: str) -> list[Document]:
    if patches is None:
        return documents
    try:
        for patch in patches.strategic or ():
            documents = strategic_merge(documents, [patch])
        if patches.json6902:
            ops = [op.model_dump(by_alias=True, exclude_none=False) for op in patches.json6902]
            for op in ops:
                if op.get("from") is None:
                    op.pop("from", None)
                if op["op"] in ("remove", "move", "copy") and op.get("value") is None:
                    op.pop("value", None)
            documents = json6902(documents, ops)
    except PatchError as exc:
        raise RenderError(f"{origin} patches: {exc}") from None
    return documents


def device_input_of(name: str, spec: TalosDeviceSpec, status: Any, wipe: bool = False) -> DeviceInput:
    """The render input of a device object: its spec, and the host disk the operator recorded."""
    host_disk = (status or {}).get("hostDisk") if isinstance(status, dict) else None
    return DeviceInput(name, spec, wipe, HostDisk.model_validate(host_disk) if host_disk else None)


def render_device(cluster: ClusterInput, device: DeviceInput, bundle: SecretsBundle) -> Rendered:
    contract = cluster.contract
    spec = device.spec
    if spec.role not in ("controlplane", "worker"):
        raise RenderError(f"role {spec.role!r} is not controlplane or worker")
    doc = base_document(cluster, spec.role, bundle)
    apply_device(doc, cluster, device)
    documents: list[Document] = [doc]
    warnings: list[str] = []
    if not contract.confirmed:
        warnings.append(f"Talos {contract.line} is rendered with an unconfirmed config contract")
    manual = cluster.spec.registry_mirrors or []
    if contract.registry_mirror_documents:
        documents = strategic_merge(documents, list(cluster.registry_documents))
        documents = strategic_merge(documents, manual_mirror_documents(manual))
    else:
        for fragment in cluster.registry_patches:
            documents = strategic_merge(documents, [fragment])
        if manual:
            documents = strategic_merge(documents, [manual_mirrors_legacy(manual)])
    if spec.hostname and contract.hostname_document:
        documents.append(
            {"apiVersion": "v1alpha1", "kind": "HostnameConfig", "auto": "off", "hostname": spec.hostname}
        )
    documents.extend(volume_documents(cluster.spec, spec))
    documents = apply_patches(documents, cluster.spec.patches, "cluster")
    documents = apply_patches(documents, spec.patches, "device")
    check_rendered(documents, spec.role)
    return Rendered(documents, warnings)


def check_rendered(documents: list[Document], role: str) -> None:
    """Rules Talos enforces that a patch could break; caught here with a readable reason."""
    v1 = [d for d in documents if "kind" not in d]
    if len(v1) != 1:
        raise RenderError("the config must hold exactly one v1alpha1 document")
    machine = v1[0].get("machine") or {}
    if machine.get("type") != role:
        raise RenderError(
            f"patches changed machine.type to {machine.get('type')!r}; the device role is {role}"
        )
    if role == "worker":
        if (machine.get("ca") or {}).get("key") or ((v1[0].get("cluster") or {}).get("ca") or {}).get("key"):
            raise RenderError("a worker config must not carry CA keys")
        if (v1[0].get("cluster") or {}).get("etcd"):
            raise RenderError("a worker config must not have an etcd section")
    hostname_docs = [d for d in documents if d.get("kind") == "HostnameConfig"]
    if hostname_docs and (machine.get("network") or {}).get("hostname"):
        raise RenderError("hostname is set both in machine.network.hostname and a HostnameConfig document")
    install = machine.get("install") or {}
    if not install.get("disk") and not install.get("diskSelector"):
        raise RenderError("machine.install needs a disk or diskSelector on metal")
