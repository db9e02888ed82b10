"""TalosCluster and TalosDevice (namespaced): Talos Linux clusters provisioned over PXE."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, ConfigDict, Field, StringConstraints, WithJsonSchema

from trellis.api.cel import Cel, immutable, immutable_once_set, rules
from trellis.api.common import (
    AGE_COLUMN,
    CIDR,
    HTTPURL,
    NOT_NEGATIVE,
    READY_COLUMN,
    VLANID,
    AnyValue,
    FreeForm,
    Hostname,
    IPAddress,
    IPPrefix,
    LabelSelector,
    LinuxInterfaceName,
    LongText,
    MACAddress,
    ObjectName,
    ObservedStatus,
    PrinterColumn,
    ResourceInfo,
    ShortText,
    Timestamp,
    TrellisModel,
    TrellisResource,
)

TalosVersion = Annotated[str, StringConstraints(pattern=r"^v1\.[0-9]+(\.[0-9]+)?$", max_length=16)]
KubernetesVersion = Annotated[str, StringConstraints(pattern=r"^v?1\.[0-9]+\.[0-9]+$", max_length=16)]
ImageRef = Annotated[str, StringConstraints(pattern=r"^[a-zA-Z0-9][a-zA-Z0-9._:/@-]*$", max_length=512)]
DevicePath = Annotated[str, StringConstraints(pattern=r"^/dev/[A-Za-z0-9._/:-]+$", max_length=256)]
_TALOS_SIZE = r"[0-9]+(\.[0-9]+)?\s?([kKMGTPE]i?B?)?"


def _size_schema(pattern: str) -> WithJsonSchema:
    return WithJsonSchema(
        {
            "x-kubernetes-int-or-string": True,
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "pattern": pattern,
            "maxLength": 32,
        }
    )


def _size_check(pattern: str) -> AfterValidator:
    def check(value: int | str) -> int | str:
        ok = value >= 0 if isinstance(value, int) else re.match(pattern, value) is not None
        if not ok or isinstance(value, bool):
            raise ValueError(f"{value!r} is not a size such as 10GiB")
        return value

    return AfterValidator(check)


_SIZE_PATTERN = f"^{_TALOS_SIZE}$"
_SIZE_OR_PERCENT_PATTERN = f"^({_TALOS_SIZE}|[0-9]{{1,3}}%)$"
TalosSize = Annotated[int | str, _size_schema(_SIZE_PATTERN), _size_check(_SIZE_PATTERN), NOT_NEGATIVE]
"""A Talos size: bytes, or a number with a unit such as 2.5GiB or 100GB."""
TalosSizeOrPercent = Annotated[
    int | str, _size_schema(_SIZE_OR_PERCENT_PATTERN), _size_check(_SIZE_OR_PERCENT_PATTERN), NOT_NEGATIVE
]
CELExpression = Annotated[str, StringConstraints(max_length=1024)]
MACPrefix = Annotated[
    str, StringConstraints(pattern=r"^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){0,5}$", max_length=17)
]
TalosRole = Literal["controlplane", "worker"]


class VolumeProvisioning(TrellisModel):
    """Talos VolumeConfig provisioning section."""

    disk_selector: CELExpression | None = Field(
        default=None, description="Talos CEL disk selector, e.g. disk.transport == 'nvme' && !system_disk."
    )
    min_size: TalosSize | None = Field(default=None, description="Minimum size: bytes or e.g. 10GiB.")
    max_size: TalosSizeOrPercent | None = Field(
        default=None, description="Maximum size in bytes, human units (50GiB) or percent of the disk (80%)."
    )
    grow: bool | None = Field(default=None, description="Grow the volume to fill the disk up to maxSize.")


class VolumeOverride(TrellisModel):
    """A Talos system volume's placement and size."""

    name: Literal["EPHEMERAL", "IMAGE-CACHE"] = Field(description="Talos volume name.")
    provisioning: VolumeProvisioning = Field(description="Provisioning settings.")


class JSONPatchOperation(TrellisModel):
    """One RFC 6902 operation on the v1alpha1 machine config document."""

    model_config = ConfigDict(
        json_schema_extra=rules(
            Cel(
                "!(self.op in ['move', 'copy']) || has(self.from)",
                "from is required for move and copy",
                field_path=".from",
            ),
        )
    )

    op: Literal["add", "remove", "replace", "move", "copy", "test"] = Field(description="Operation.")
    path: Annotated[str, StringConstraints(pattern=r"^(/[^/]*)*$", max_length=1024)] = Field(
        description="JSON pointer, e.g. /machine/network/hostname."
    )
    from_: Annotated[str, StringConstraints(pattern=r"^(/[^/]*)*$", max_length=1024)] | None = Field(
        default=None, alias="from", description="Source pointer for move and copy."
    )
    # Free-form values are invisible to CEL, so "value is required for add/replace/test" is checked
    # when the patch is applied, not at admission.
    value: AnyValue = Field(default=None, description="Value for add, replace and test (required for those).")


class ConfigPatches(TrellisModel):
    """Machine config patches, applied in order: strategic merge first, then RFC 6902."""

    strategic: list[FreeForm] | None = Field(
        default=None,
        max_length=32,
        description="Strategic merge patches: partial config documents (v1alpha1 or typed documents).",
    )
    json6902: list[JSONPatchOperation] | None = Field(
        default=None, max_length=128, description="RFC 6902 operations on the v1alpha1 document."
    )


class RegistryMirror(TrellisModel):
    """A manual registry mirror entry."""

    registry: Annotated[
        str, StringConstraints(pattern=r"^[a-z0-9*]([-a-z0-9.]*[a-z0-9])?(:[0-9]{1,5})?$", max_length=253)
    ] = Field(description="Registry host being mirrored, e.g. docker.io, or * for all.")
    endpoints: list[HTTPURL] = Field(
        min_length=1, max_length=8, description="Mirror endpoints, tried in order."
    )
    skip_fallback: bool = Field(default=False, description="Do not fall back to the upstream registry.")


class CNI(TrellisModel):
    """Cluster network plugin."""

    model_config = ConfigDict(
        json_schema_extra=rules(
            Cel(
                "(self.name == 'custom') == has(self.urls)",
                "urls are required for name custom and not allowed otherwise",
                field_path=".urls",
            )
        )
    )

    name: Literal["flannel", "custom", "none"] = Field(
        default="flannel", description="flannel (Talos default), custom (manifests from urls) or none."
    )
    urls: list[HTTPURL] | None = Field(default=None, max_length=16, description="Manifests for name custom.")
    disable_kube_proxy: bool = Field(default=False, description="Do not deploy kube-proxy (e.g. for Cilium).")


class AutoApprovalRule(TrellisModel):
    """Approve discovered devices that match, with the given role, up to limit devices."""

    model_config = ConfigDict(
        json_schema_extra=rules(
            Cel(
                "has(self.macPrefix) || has(self.cidr) || has(self.selector)",
                "a rule needs at least one of macPrefix, cidr or selector",
            )
        )
    )

    name: Annotated[
        str, StringConstraints(pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$", max_length=63)
    ] = Field(description="Rule name, recorded on devices it approves.")
    mac_prefix: MACPrefix | None = Field(default=None, description="MAC prefix, e.g. 52:54:00.")
    cidr: CIDR | None = Field(default=None, description="Network the device's boot address must be in.")
    selector: LabelSelector | None = Field(default=None, description="Labels the TalosDevice must carry.")
    role: TalosRole = Field(default="worker", description="Role given to approved devices.")
    limit: int = Field(ge=0, le=10000, description="Maximum number of devices this rule approves.")


class BootSettings(TrellisModel):
    """What the boot service hands to iPXE for this cluster."""

    assets_url: HTTPURL | None = Field(
        default=None,
        description="Base URL of vmlinuz-<arch> and initramfs-<arch>.xz. Defaults to the boot service.",
    )
    extra_kernel_args: (
        list[Annotated[str, StringConstraints(pattern=r"^[^\s'\"`$;]+$", max_length=256)]] | None
    ) = Field(default=None, max_length=32, description="Extra kernel arguments.")


class ConfigUpdates(TrellisModel):
    """How changed configs reach installed machines (every change is first tried without a reboot)."""

    policy: Literal["Reboot", "Staged", "NoRebootOnly", "Manual"] = Field(
        default="Reboot",
        description="When Talos refuses a change without a reboot: Reboot applies it with a reboot "
        "(control planes one at a time), Staged stores it for the machine's next reboot, NoRebootOnly "
        "leaves it pending (condition ConfigApplied=False, reason RebootRequired); Manual applies nothing.",
    )


class UpgradeSettings(TrellisModel):
    """How a talosVersion change rolls through installed machines."""

    worker_batch: int = Field(
        default=1, ge=1, le=100, description="Workers upgraded at once, after every control plane."
    )
    timeout_seconds: int = Field(
        default=1200,
        ge=60,
        le=86400,
        description="A machine that does not report the new version within this time has failed.",
    )
    paused: bool = Field(default=False, description="Start no new upgrades; those under way finish.")


class StorageSettings(TrellisModel):
    """Node settings for the storage drivers the cluster uses."""

    rds_csi: bool = Field(
        default=False,
        description="Nodes run the rds.csi.trellis.dev node plugin: load nvme_tcp (NVMe/TCP initiator).",
    )


class TalosClusterSpec(TrellisModel):
    """Desired state of a TalosCluster."""

    model_config = ConfigDict(
        json_schema_extra=rules(
            Cel(
                "self.podCIDRs.all(p, self.serviceCIDRs.all(s, !isCIDR(p) || !isCIDR(s) || "
                "(!cidr(p).containsCIDR(s) && !cidr(s).containsCIDR(p))))",
                "podCIDRs and serviceCIDRs must not overlap",
                field_path=".serviceCIDRs",
            ),
        )
    )

    cluster_name: Hostname | None = Field(
        default=None, description="Talos cluster name. Defaults to metadata.name."
    )
    endpoint: HTTPURL = Field(description="Control plane endpoint, e.g. https://10.0.0.10:6443.")
    talos_version: TalosVersion = Field(
        description="Talos version, e.g. v1.12.0; selects the config contract."
    )
    kubernetes_version: KubernetesVersion = Field(description="Kubernetes version, e.g. 1.35.0.")
    pod_cidrs: Annotated[list[CIDR], Field(json_schema_extra={"x-kubernetes-list-type": "set"})] = Field(
        default=["10.244.0.0/16"], min_length=1, max_length=2, description="Pod networks."
    )
    service_cidrs: Annotated[list[CIDR], Field(json_schema_extra={"x-kubernetes-list-type": "set"})] = Field(
        default=["10.96.0.0/12"], min_length=1, max_length=2, description="Service networks."
    )
    dns_domain: Hostname = Field(default="cluster.local", description="Cluster DNS domain.")
    cni: CNI | None = Field(default=None, description="Network plugin. Defaults to flannel.")
    installer_image: ImageRef | None = Field(
        default=None, description="Installer image (e.g. an Image Factory installer with extensions)."
    )
    install_disk: DevicePath | None = Field(default=None, description="Default install disk, e.g. /dev/sda.")
    volumes: (
        Annotated[
            list[VolumeOverride],
            Field(
                json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]}
            ),
        ]
        | None
    ) = Field(default=None, max_length=2, description="Default EPHEMERAL / IMAGE-CACHE volume settings.")
    registry_selector: LabelSelector | None = Field(
        default=None, description="Registry objects (by label) used as mirrors."
    )
    registry_mirrors: list[RegistryMirror] | None = Field(
        default=None,
        max_length=32,
        description="Manual registry mirrors, added to those from registrySelector.",
    )
    patches: ConfigPatches | None = Field(
        default=None, description="Patches applied to every machine config."
    )
    strict_boot: bool = Field(
        default=True,
        description="Unknown or unapproved machines get an iPXE exit (boot the next device) and no config.",
    )
    auto_approval: (
        Annotated[
            list[AutoApprovalRule],
            Field(
                json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]}
            ),
        ]
        | None
    ) = Field(default=None, max_length=16, description="Rules approving discovered devices automatically.")
    boot: BootSettings | None = Field(default=None, description="Boot service settings.")
    config_updates: ConfigUpdates | None = Field(
        default=None, description="Applying changed configs to installed machines. Defaults to policy Reboot."
    )
    upgrade: UpgradeSettings | None = Field(default=None, description="Rolling Talos upgrades.")
    storage: StorageSettings | None = Field(default=None, description="Storage driver support on nodes.")


class ClusterUpgradeStatus(TrellisModel):
    """Progress of the rolling upgrade to spec.talosVersion."""

    target_version: ShortText = Field(description="Version being rolled out.")
    phase: Literal["Progressing", "Completed", "Failed", "Paused"] = Field(
        description="Progressing, Completed, Failed (stopped at the first failure) or Paused."
    )
    upgraded: int = Field(default=0, ge=0, description="Installed machines running the target version.")
    total: int = Field(default=0, ge=0, description="Installed machines of the cluster.")
    current: list[ShortText] | None = Field(
        default=None, max_length=100, description="Machines upgrading now."
    )
    held: list[ShortText] | None = Field(default=None, max_length=1000, description="Machines on hold.")
    failed_device: ShortText | None = Field(default=None, description="Machine whose upgrade failed.")
    message: LongText | None = Field(default=None, description="Why the rollout stopped or waits.")
    retry_for: ShortText | None = Field(
        default=None, description="Value of the retry-upgrade annotation last honoured."
    )


class TalosClusterStatus(ObservedStatus):
    """Observed state of a TalosCluster."""

    secrets_secret_name: ShortText | None = Field(
        default=None, description="Secret holding the secrets bundle."
    )
    contract: ShortText | None = Field(default=None, description="Talos config contract in use.")
    control_planes: int | None = Field(default=None, ge=0, description="Approved control plane devices.")
    workers: int | None = Field(default=None, ge=0, description="Approved worker devices.")
    pending_devices: int | None = Field(default=None, ge=0, description="Devices waiting for approval.")
    endpoint_device: ShortText | None = Field(default=None, description="Device owning the endpoint address.")
    upgrade: ClusterUpgradeStatus | None = Field(default=None, description="Rolling upgrade progress.")


class TalosCluster(TrellisResource):
    resource = ResourceInfo(
        kind="TalosCluster",
        plural="talosclusters",
        short_names=("tc",),
        scope="Namespaced",
        description="A Talos Linux cluster: versions, endpoint, networks, defaults and approval rules "
        "for its devices; owns the generated secrets bundle.",
        printer_columns=(
            PrinterColumn("Endpoint", ".spec.endpoint"),
            PrinterColumn("Talos", ".spec.talosVersion"),
            PrinterColumn("Kubernetes", ".spec.kubernetesVersion"),
            PrinterColumn("ControlPlanes", ".status.controlPlanes", type="integer"),
            PrinterColumn("Workers", ".status.workers", type="integer"),
            PrinterColumn("Upgrade", ".status.upgrade.phase"),
            READY_COLUMN,
            AGE_COLUMN,
        ),
    )
    kind: Literal["TalosCluster"] = Field(default="TalosCluster", description="Kind of the object.")
    spec: TalosClusterSpec = Field(description="Desired state.")
    status: TalosClusterStatus | None = Field(default=None, description="Observed state.")


class Route(TrellisModel):
    """A static route."""

    network: CIDR = Field(description="Destination, e.g. 0.0.0.0/0.")
    gateway: IPAddress | None = Field(default=None, description="Next hop.")
    metric: int | None = Field(default=None, ge=0, le=65535, description="Route metric.")


class VLANConfig(TrellisModel):
    """A VLAN on an interface."""

    vlan_id: VLANID = Field(description="VLAN id.")
    addresses: list[IPPrefix] | None = Field(default=None, max_length=8, description="Addresses with prefix.")
    routes: list[Route] | None = Field(default=None, max_length=16, description="Routes.")
    dhcp: bool = Field(default=False, description="Use DHCP on the VLAN.")
    mtu: int | None = Field(default=None, ge=576, le=9216, description="MTU.")


class InterfaceSelector(TrellisModel):
    """Selects one interface; exactly one field."""

    model_config = ConfigDict(
        json_schema_extra=rules(
            Cel(
                "[has(self.name), has(self.hardwareAddr), has(self.busPath)].filter(x, x).size() == 1",
                "set exactly one of name, hardwareAddr or busPath",
            )
        )
    )

    name: LinuxInterfaceName | None = Field(default=None, description="Interface name, e.g. eth0.")
    hardware_addr: MACAddress | None = Field(default=None, description="Interface MAC address.")
    bus_path: ShortText | None = Field(default=None, description="PCI bus path, e.g. 0000:00:1f.6.")


class InterfaceConfig(TrellisModel):
    """Network configuration of one interface."""

    selector: InterfaceSelector = Field(description="Which interface.")
    addresses: list[IPPrefix] | None = Field(default=None, max_length=8, description="Addresses with prefix.")
    routes: list[Route] | None = Field(default=None, max_length=16, description="Routes.")
    dhcp: bool = Field(default=False, description="Use DHCP.")
    mtu: int | None = Field(default=None, ge=576, le=9216, description="MTU.")
    vlans: (
        Annotated[
            list[VLANConfig],
            Field(
                json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["vlanId"]}
            ),
        ]
        | None
    ) = Field(default=None, max_length=8, description="VLANs on this interface.")


class DeviceNetwork(TrellisModel):
    """Static network configuration of a device."""

    interfaces: list[InterfaceConfig] | None = Field(default=None, max_length=8, description="Interfaces.")
    nameservers: list[IPAddress] | None = Field(default=None, max_length=4, description="DNS servers.")


class DiskSelector(TrellisModel):
    """Talos install disk selector; every given field must match."""

    size: ShortText | None = Field(default=None, description="Size match, e.g. '>= 100GB' or 4GB.")
    model: ShortText | None = Field(default=None, description="Disk model (glob).")
    serial: ShortText | None = Field(default=None, description="Serial number.")
    wwid: ShortText | None = Field(default=None, description="WWID.")
    type: Literal["ssd", "hdd", "nvme", "sd"] | None = Field(default=None, description="Disk type.")
    bus_path: ShortText | None = Field(default=None, description="Bus path (glob).")


class TalosDeviceSpec(TrellisModel):
    """Desired state of a TalosDevice."""

    model_config = ConfigDict(
        json_schema_extra=rules(
            Cel(
                "!(has(self.installDisk) && has(self.diskSelector))",
                "set at most one of installDisk or diskSelector",
                field_path=".diskSelector",
            ),
            Cel(
                "self.approval != 'Approved' || has(self.clusterRef)",
                "an approved device needs clusterRef",
                field_path=".clusterRef",
            ),
            immutable_once_set("clusterRef"),
        )
    )

    mac: Annotated[MACAddress, immutable("mac")] = Field(
        description="MAC address the device PXE-boots from; its identity (immutable)."
    )
    cluster_ref: ObjectName | None = Field(
        default=None, description="TalosCluster in the same namespace; cannot change once set."
    )
    role: TalosRole = Field(default="worker", description="controlplane or worker.")
    hostname: Hostname | None = Field(default=None, description="Host name of the machine.")
    network: DeviceNetwork | None = Field(
        default=None, description="Static addresses, routes, DNS and VLANs."
    )
    install_disk: DevicePath | None = Field(
        default=None, description="Install disk; overrides the cluster default."
    )
    disk_selector: DiskSelector | None = Field(default=None, description="Install disk selector.")
    volumes: (
        Annotated[
            list[VolumeOverride],
            Field(
                json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]}
            ),
        ]
        | None
    ) = Field(default=None, max_length=2, description="EPHEMERAL / IMAGE-CACHE overrides.")
    patches: ConfigPatches | None = Field(
        default=None, description="Per-device patches, after the cluster's."
    )
    approval: Literal["Pending", "Approved", "Rejected"] = Field(
        default="Pending",
        description="Pending until a person (or an auto-approval rule) approves or rejects.",
    )
    wipe_on_next_boot: bool = Field(
        default=False, description="Wipe the system disk on the next boot; cleared once the wipe is observed."
    )
    bare_metal_host_ref: ObjectName | None = Field(
        default=None, description="BareMetalHost in the same namespace this device runs on."
    )


class ObservedMachine(TrellisModel):
    """Facts reported by the machine while booting."""

    uuid: ShortText | None = Field(default=None, description="SMBIOS UUID.")
    serial: ShortText | None = Field(default=None, description="Serial number.")
    ip: ShortText | None = Field(default=None, description="Address the machine booted from.")
    arch: ShortText | None = Field(default=None, description="CPU architecture reported by iPXE.")


class DeviceConfigStatus(TrellisModel):
    """The machine config the installed machine runs, against the one rendered for it now."""

    desired_hash: ShortText | None = Field(default=None, description="Hash of the config rendered now.")
    applied_hash: ShortText | None = Field(default=None, description="Hash of the config the machine runs.")
    desired_generation: int | None = Field(
        default=None, ge=0, description="Counts rendered configs since install (1 = the installed one)."
    )
    applied_generation: int | None = Field(default=None, ge=0, description="Generation the machine runs.")
    state: (
        Literal["InSync", "Pending", "Rebooting", "Staged", "RebootRequired", "Held", "Manual", "Failed"]
        | None
    ) = Field(default=None, description="InSync, or why the desired config is not applied yet.")
    last_apply_mode: ShortText | None = Field(default=None, description="Mode Talos used for the last apply.")
    last_applied: Timestamp | None = Field(default=None, description="When the last apply was accepted.")
    down_seen: bool | None = Field(
        default=None, description="The machine was seen down since a reboot apply."
    )
    pending_hash: ShortText | None = Field(
        default=None, description="Config refused or left pending (not retried until it changes)."
    )
    staged_hash: ShortText | None = Field(default=None, description="Config staged for the next reboot.")
    staged_generation: int | None = Field(default=None, ge=0, description="Generation staged.")
    message: LongText | None = Field(default=None, description="Details of the last apply or refusal.")


class DeviceUpgradeStatus(TrellisModel):
    """This machine's part of the cluster's rolling upgrade."""

    target_version: ShortText = Field(description="Version requested.")
    from_version: ShortText | None = Field(default=None, description="Version before the upgrade.")
    phase: Literal["Upgrading", "Succeeded", "Failed"] = Field(description="Upgrading, Succeeded or Failed.")
    started: Timestamp | None = Field(default=None, description="When Upgrade was accepted.")
    down_seen: bool | None = Field(default=None, description="The machine was seen down since then.")
    message: LongText | None = Field(default=None, description="Details.")


class HostDisk(TrellisModel):
    """Install disk chosen by the linked BareMetalHost's rootDeviceHints."""

    disk: DevicePath | None = Field(default=None, description="Install disk path.")
    disk_selector: DiskSelector | None = Field(default=None, description="Install disk selector.")
    host: ShortText | None = Field(default=None, description="BareMetalHost the hints come from.")
    ignored: list[ShortText] | None = Field(
        default=None, max_length=8, description="Hints Talos cannot express (vendor, hctl, rotational false)."
    )


class TalosDeviceStatus(ObservedStatus):
    """Observed state of a TalosDevice."""

    phase: Literal["Pending", "Approved", "Rejected", "ConfigServed", "Installed", "Ready"] | None = Field(
        default=None, description="Pending, Approved, Rejected, ConfigServed, Installed or Ready."
    )
    first_seen: Timestamp | None = Field(default=None, description="First boot request seen.")
    last_seen: Timestamp | None = Field(default=None, description="Last boot request seen.")
    last_config_fetch: Timestamp | None = Field(default=None, description="Last machine config download.")
    observed: ObservedMachine | None = Field(default=None, description="Facts reported by the machine.")
    approved_by_rule: ShortText | None = Field(
        default=None, description="Auto-approval rule that approved it."
    )
    token_secret_name: ShortText | None = Field(default=None, description="Secret holding the config token.")
    last_wipe: Timestamp | None = Field(default=None, description="When the last requested wipe was served.")
    role: TalosRole | None = Field(
        default=None,
        description="Role of the config last admitted for serving (guards the last control plane).",
    )
    talos_version: ShortText | None = Field(
        default=None,
        description="Talos version (tag) the machine's API last reported (MachineService.Version).",
    )
    served_config_hash: ShortText | None = Field(
        default=None, description="Hash of the config the boot service last served (the installed one)."
    )
    config: DeviceConfigStatus | None = Field(default=None, description="Config applied vs desired.")
    upgrade: DeviceUpgradeStatus | None = Field(default=None, description="Upgrade of this machine.")
    host_disk: HostDisk | None = Field(
        default=None, description="Install disk from the BareMetalHost's rootDeviceHints."
    )
    bare_metal_host: ShortText | None = Field(
        default=None, description="BareMetalHost linked by bareMetalHostRef or by boot MAC."
    )
    reinstalled_for: ShortText | None = Field(
        default=None, description="Value of the reinstall annotation last acted on."
    )


class TalosDevice(TrellisResource):
    resource = ResourceInfo(
        kind="TalosDevice",
        plural="talosdevices",
        short_names=("td",),
        scope="Namespaced",
        description="A machine that network-boots Talos: identity (MAC), approval, role, host settings and "
        "patches.",
        printer_columns=(
            PrinterColumn("MAC", ".spec.mac"),
            PrinterColumn("Cluster", ".spec.clusterRef"),
            PrinterColumn("Role", ".spec.role"),
            PrinterColumn("Hostname", ".spec.hostname"),
            PrinterColumn("Approval", ".spec.approval"),
            PrinterColumn("Phase", ".status.phase"),
            PrinterColumn("Talos", ".status.talosVersion"),
            PrinterColumn("Config", ".status.config.state"),
            PrinterColumn("IP", ".status.observed.ip"),
            AGE_COLUMN,
        ),
    )
    kind: Literal["TalosDevice"] = Field(default="TalosDevice", description="Kind of the object.")
    spec: TalosDeviceSpec = Field(description="Desired state.")
    status: TalosDeviceStatus | None = Field(default=None, description="Observed state.")
