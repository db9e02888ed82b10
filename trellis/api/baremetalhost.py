"""BareMetalHost (namespaced): one physical server, its BMC, NICs and what it boots."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field, StringConstraints

from trellis.api.cel import Cel, rules
from trellis.api.common import (
    AGE_COLUMN,
    Hostname,
    IPAddress,
    LongText,
    MACAddress,
    ObjectName,
    ObjectReference,
    ObservedStatus,
    PrinterColumn,
    ResourceInfo,
    ShortText,
    Timestamp,
    TrellisModel,
    TrellisResource,
)

BMC_SCHEMES = ("ipmi", "redfish", "redfish+http", "redfish+https")
BMCAddress = Annotated[
    str,
    StringConstraints(
        max_length=2048, pattern=r"^(ipmi|redfish|redfish\+http|redfish\+https)://[^\s/]+(/[^\s]*)?$"
    ),
    Cel(
        "isURL(self) && url(self).getHostname() != ''",
        "must be ipmi://host[:port] or redfish[+http|+https]://host[:port]/redfish/v1/Systems/<id>",
    ),
]
NICName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9]([-a-z0-9]{0,30}[a-z0-9])?$", max_length=32)]


class BMCDetails(TrellisModel):
    """How to reach the server's baseboard management controller."""

    address: BMCAddress = Field(
        description="BMC URL. ipmi://host[:port] (IPMI 2.0 LAN+, default port 623), or "
        "redfish://, redfish+http://, redfish+https://host[:port]/redfish/v1/Systems/<id> "
        "(redfish:// means https)."
    )
    credentials_name: ObjectName = Field(
        description="Secret in the same namespace with keys username and password."
    )
    disable_certificate_verification: bool = Field(
        default=False, description="Skip TLS certificate verification for Redfish over HTTPS."
    )
    mac: MACAddress | None = Field(
        default=None, description="MAC address of the BMC's own NIC (gets a reservation on its network)."
    )


class NIC(TrellisModel):
    """One network interface of the server that gets a DHCP reservation."""

    name: NICName = Field(description="Name of the NIC, unique within the host (e.g. eno1, bmc).")
    mac: MACAddress = Field(description="MAC address of the NIC.")
    network_ref: ObjectName = Field(description="Name of the Network this NIC is attached to.")
    role: Literal["boot", "bmc", "secondary"] = Field(
        default="secondary",
        description="boot: the PXE NIC (mac must equal bootMACAddress, gets boot options and the default "
        "gateway); bmc: the BMC's NIC (mac must equal bmc.mac when set); secondary: no boot options, "
        "no default gateway.",
    )
    ip: IPAddress | None = Field(
        default=None, description="Fixed address; allocated from the Network when empty."
    )
    hostname: Hostname | None = Field(
        default=None,
        description="Host name for the reservation. Defaults to <host>, <host>-bmc or <host>-<nic>.",
    )


class BootSource(TrellisModel):
    """What the host boots. Setting it provisions the host; removing it deprovisions it."""

    model_config = ConfigDict(
        json_schema_extra=rules(
            Cel(
                "(self.type == 'isocdrom') == has(self.isocdromRef)",
                "isocdromRef is required for type isocdrom and not allowed otherwise",
                field_path=".isocdromRef",
            ),
            Cel(
                "self.type == 'isocdrom' || self.via == 'iscsi'",
                "via only applies to type isocdrom",
                field_path=".via",
            ),
        )
    )

    type: Literal["disk", "pxe", "isocdrom"] = Field(
        description="disk: local disk; pxe: network boot with the Network's PXE options; "
        "isocdrom: an ISOCDROM."
    )
    isocdrom_ref: ObjectName | None = Field(default=None, description="Name of the ISOCDROM to boot.")
    mode: Literal["once", "always"] = Field(
        default="once",
        description="once: boot the source until the install boot is observed, then local disk; "
        "always: keep booting it.",
    )
    via: Literal["iscsi", "virtualMedia"] = Field(
        default="iscsi",
        description="How an ISOCDROM is attached: iSCSI sanboot (root-path) or Redfish virtual media.",
    )


class RootDeviceHints(TrellisModel):
    """Which disk is the root disk; every given hint must match."""

    device_name: Annotated[str, StringConstraints(pattern=r"^/dev/\S+$", max_length=256)] | None = Field(
        default=None, description="Device path, e.g. /dev/sda or /dev/disk/by-path/..."
    )
    hctl: (
        Annotated[str, StringConstraints(pattern=r"^[0-9]+:[0-9]+:[0-9]+:[0-9]+$", max_length=64)] | None
    ) = Field(default=None, description="SCSI host:channel:target:lun.")
    model: ShortText | None = Field(default=None, description="Disk model (substring match).")
    vendor: ShortText | None = Field(default=None, description="Disk vendor (substring match).")
    serial_number: ShortText | None = Field(default=None, description="Disk serial number.")
    min_size_gigabytes: int | None = Field(default=None, ge=0, description="Minimum size in GB.")
    wwn: ShortText | None = Field(default=None, description="World wide name.")
    rotational: bool | None = Field(default=None, description="true for spinning disks, false for SSD/NVMe.")


class BareMetalHostSpec(TrellisModel):
    """Desired state of a BareMetalHost."""

    model_config = ConfigDict(
        json_schema_extra=rules(
            Cel(
                "!has(self.nics) || self.nics.filter(n, n.role == 'boot').size() <= 1",
                "at most one NIC may have role boot",
                field_path=".nics",
            ),
            Cel(
                "!has(self.nics) || self.nics.filter(n, n.role == 'bmc').size() <= 1",
                "at most one NIC may have role bmc",
                field_path=".nics",
            ),
            Cel(
                "!has(self.nics) || self.nics.all(n, n.role != 'boot' || "
                "n.mac.lowerAscii() == self.bootMACAddress.lowerAscii())",
                "the NIC with role boot must have mac equal to bootMACAddress",
                field_path=".nics",
            ),
            Cel(
                "!has(self.nics) || !has(self.bmc) || !has(self.bmc.mac) || "
                "self.nics.all(n, n.role != 'bmc' || n.mac.lowerAscii() == self.bmc.mac.lowerAscii())",
                "the NIC with role bmc must have mac equal to bmc.mac",
                field_path=".nics",
            ),
            Cel(
                "!has(self.nics) || self.nics.all(a, self.nics.exists_one(b, "
                "b.mac.lowerAscii() == a.mac.lowerAscii()))",
                "NIC MAC addresses must be unique",
                field_path=".nics",
            ),
            Cel(
                "!has(self.bmc) || !has(self.bmc.mac) || "
                "self.bmc.mac.lowerAscii() != self.bootMACAddress.lowerAscii()",
                "bootMACAddress must not be the BMC's MAC address",
                field_path=".bootMACAddress",
            ),
            Cel(
                "!has(self.bootSource) || self.bootSource.via != 'virtualMedia' || "
                "(has(self.bmc) && self.bmc.address.startsWith('redfish'))",
                "virtual media needs a Redfish BMC",
                field_path=".bootSource.via",
            ),
            Cel(
                "!has(self.bootSource) || has(self.bmc)",
                "a host without bmc (Unmanaged) cannot be provisioned: set bmc first",
                field_path=".bootSource",
            ),
        )
    )

    bmc: BMCDetails | None = Field(
        default=None,
        description="Baseboard management controller. A host without it (e.g. discovered from DHCP) is "
        "Unmanaged: nothing is sent to it until bmc is set, which adopts it (Registering).",
    )
    boot_mac_address: MACAddress = Field(
        description="MAC address of the NIC the host network-boots from (never the BMC's)."
    )
    online: bool = Field(default=False, description="Desired power state, enforced at all times.")
    nics: (
        Annotated[
            list[NIC],
            Field(
                json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]}
            ),
        ]
        | None
    ) = Field(default=None, max_length=16, description="NICs that get a DHCPReservation owned by this host.")
    boot_source: BootSource | None = Field(
        default=None, description="What to boot. Set it to provision the host, remove it to deprovision."
    )
    boot_mode: Literal["UEFI", "UEFISecureBoot", "legacy"] = Field(
        default="UEFI", description="Firmware boot mode requested from the BMC."
    )
    root_device_hints: RootDeviceHints | None = Field(default=None, description="How to pick the root disk.")
    architecture: Literal["x86_64", "aarch64"] | None = Field(
        default=None, description="CPU architecture; filled from inspection when empty."
    )
    inspection_mode: Literal["bmc", "disabled"] = Field(
        default="bmc", description="bmc: read inventory from the BMC while registering; disabled: skip."
    )
    externally_provisioned: bool = Field(
        default=False, description="An OS is already installed by other means; only power is managed."
    )
    provisioning_timeout_seconds: int = Field(
        default=1800,
        ge=5,
        le=86400,
        description="A host linked to a TalosDevice stays Provisioning until the device reports Installed; "
        "an install not reported this many seconds after the install boot is a ProvisioningError and the "
        "install boot is retried (with backoff).",
    )
    consumer_ref: ObjectReference | None = Field(default=None, description="The object using this host.")
    description: LongText | None = Field(default=None, description="Free text.")


ProvisioningState = Literal[
    "Unmanaged",
    "Registering",
    "Inspecting",
    "Available",
    "Provisioning",
    "Provisioned",
    "ExternallyProvisioned",
    "Deprovisioning",
    "PoweringOffBeforeDelete",
    "Deleting",
]
ErrorType = Literal[
    "RegistrationError",
    "InspectionError",
    "ProvisioningError",
    "DeprovisioningError",
    "PowerManagementError",
    "ReservationError",
    "DetachError",
]


class ProvisioningStatus(TrellisModel):
    """Where the host is in its lifecycle."""

    state: ProvisioningState | None = Field(default=None, description="Lifecycle state.")
    boot_source: BootSource | None = Field(
        default=None, description="Boot source applied by the last provisioning."
    )
    install_boot_observed: bool | None = Field(
        default=None,
        description="The install boot was observed (bootSource.mode once then switches to disk).",
    )
    step: (
        Literal["PowerOff", "ConfigureBoot", "PowerOn", "AwaitInstall", "InventoryRead", "LocalBoot"] | None
    ) = Field(
        default=None,
        description="Progress inside the current state (PowerOff, ConfigureBoot, PowerOn, AwaitInstall while "
        "provisioning; InventoryRead after inspection; LocalBoot once a once-source switched to disk), so a "
        "restarted operator resumes without repeating a step.",
    )
    install_boot_time: Timestamp | None = Field(
        default=None, description="When the current install boot was observed (starts provisioningTimeout)."
    )
    device_config_served: bool | None = Field(
        default=None, description="The linked TalosDevice fetched its machine config after the install boot."
    )
    install_timeouts: int | None = Field(
        default=None, ge=0, description="Install boots of this provisioning that timed out."
    )
    reprovisioned_for: ShortText | None = Field(
        default=None, description="Value of the reprovision annotation last acted on."
    )


class CPUInfo(TrellisModel):
    """CPU inventory."""

    arch: ShortText | None = Field(default=None, description="Architecture.")
    model: ShortText | None = Field(default=None, description="Model name.")
    count: int | None = Field(
        default=None, ge=0, description="Number of CPUs (sockets or cores, as reported)."
    )
    clock_megahertz: int | None = Field(default=None, ge=0, description="Clock speed in MHz.")


class NICInfo(TrellisModel):
    """A NIC found by inspection."""

    name: ShortText | None = Field(default=None, description="Name as reported by the BMC.")
    mac: ShortText | None = Field(default=None, description="MAC address.")
    speed_gbps: int | None = Field(default=None, ge=0, description="Link speed in Gbit/s.")


class StorageInfo(TrellisModel):
    """A disk found by inspection."""

    name: ShortText | None = Field(default=None, description="Device name.")
    model: ShortText | None = Field(default=None, description="Model.")
    serial_number: ShortText | None = Field(default=None, description="Serial number.")
    size_bytes: int | None = Field(default=None, ge=0, description="Size in bytes.")
    rotational: bool | None = Field(default=None, description="Spinning disk.")


class HardwareInfo(TrellisModel):
    """Inventory read from the BMC."""

    manufacturer: ShortText | None = Field(default=None, description="System manufacturer.")
    model: ShortText | None = Field(default=None, description="System model.")
    serial_number: ShortText | None = Field(default=None, description="System serial number.")
    bios_version: ShortText | None = Field(default=None, description="BIOS/firmware version.")
    cpu: CPUInfo | None = Field(default=None, description="CPUs.")
    ram_mebibytes: int | None = Field(default=None, ge=0, description="Memory in MiB.")
    nics: list[NICInfo] | None = Field(default=None, max_length=64, description="NICs.")
    storage: list[StorageInfo] | None = Field(default=None, max_length=64, description="Disks.")


class ReservationStatus(TrellisModel):
    """A DHCPReservation owned by this host."""

    nic: ShortText = Field(description="NIC name (bmc for the BMC NIC).")
    name: ShortText = Field(description="Name of the DHCPReservation.")
    ip: ShortText | None = Field(default=None, description="Address in effect.")


class CredentialsStatus(TrellisModel):
    """Credentials known to work, to detect rotation."""

    name: ShortText = Field(description="Secret name.")
    resource_version: ShortText | None = Field(
        default=None, description="Secret resourceVersion that worked."
    )


class BareMetalHostStatus(ObservedStatus):
    """Observed state of a BareMetalHost."""

    operational_status: Literal["OK", "discovered", "error", "detached", ""] | None = Field(
        default=None,
        description="OK, discovered (BMC details or credentials missing, e.g. an Unmanaged host), error "
        "or detached.",
    )
    provisioning: ProvisioningStatus | None = Field(default=None, description="Lifecycle.")
    powered_on: bool | None = Field(default=None, description="Power state last observed from the BMC.")
    ip: ShortText | None = Field(default=None, description="Address of the boot NIC.")
    error_type: ErrorType | None = Field(default=None, description="Class of the last error.")
    error_message: Annotated[str, StringConstraints(max_length=4096)] | None = Field(
        default=None, description="Last error (never contains credentials)."
    )
    error_count: int | None = Field(
        default=None, ge=0, description="Errors since the last success; drives backoff."
    )
    hardware: HardwareInfo | None = Field(default=None, description="Inventory.")
    reservations: list[ReservationStatus] | None = Field(
        default=None, max_length=17, description="DHCPReservations owned by this host."
    )
    good_credentials: CredentialsStatus | None = Field(default=None, description="Credentials that worked.")
    last_updated: Timestamp | None = Field(default=None, description="Last status change.")
    last_power_check: Timestamp | None = Field(default=None, description="Last power poll.")


class BareMetalHost(TrellisResource):
    resource = ResourceInfo(
        kind="BareMetalHost",
        plural="baremetalhosts",
        short_names=("bmh",),
        scope="Namespaced",
        description="A physical server: its BMC (IPMI or Redfish), NICs and their reservations, power "
        "and what it boots.",
        printer_columns=(
            PrinterColumn("State", ".status.provisioning.state"),
            PrinterColumn("Status", ".status.operationalStatus"),
            PrinterColumn("Power", ".status.poweredOn", type="boolean"),
            PrinterColumn("Online", ".spec.online", type="boolean"),
            PrinterColumn("BMC", ".spec.bmc.address"),
            PrinterColumn("Network", '.spec.nics[?(@.role=="boot")].networkRef'),
            PrinterColumn("IP", ".status.ip"),
            PrinterColumn("Error", ".status.errorType", priority=1),
            AGE_COLUMN,
        ),
    )
    kind: Literal["BareMetalHost"] = Field(default="BareMetalHost", description="Kind of the object.")
    spec: BareMetalHostSpec = Field(description="Desired state.")
    status: BareMetalHostStatus | None = Field(default=None, description="Observed state.")
