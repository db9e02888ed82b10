"""ISOCDROM (cluster-scoped): an ISO image stored on the RDS and exported read-only over iSCSI."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field, StringConstraints

from trellis.api.cel import Cel, immutable, rules
from trellis.api.common import (
    AGE_COLUMN,
    HTTPURL,
    READY_COLUMN,
    SHA256,
    IPAddress,
    ObjectName,
    ObservedStatus,
    Port,
    PrinterColumn,
    ResourceInfo,
    ShortText,
    Timestamp,
    TrellisModel,
    TrellisResource,
)

# A path inside the RDS file tree: segments of safe characters, no '..', no leading slash.
RDSPath = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$", max_length=255),
    Cel("!self.split('/').exists(s, s == '..' || s == '.')", "must not contain '.' or '..' segments"),
]
SlotName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", max_length=32)]


class ISOSource(TrellisModel):
    """Where the image comes from: a URL with its checksum, or a file already on the RDS."""

    model_config = ConfigDict(
        json_schema_extra=rules(
            Cel("has(self.url) != has(self.rdsPath)", "set exactly one of url or rdsPath"),
            Cel("!has(self.url) || has(self.sha256)", "sha256 is required with url", field_path=".sha256"),
        )
    )

    url: HTTPURL | None = Field(default=None, description="HTTP(S) URL the operator downloads the ISO from.")
    sha256: SHA256 | None = Field(
        default=None,
        description="Expected SHA-256 of the image (lowercase hex); a mismatch ends in phase Error.",
    )
    rds_path: RDSPath | None = Field(
        default=None,
        description="Path of an ISO already on the RDS (relative to the file tree root). Never deleted.",
    )


class ISOTarget(TrellisModel):
    """Where the image is stored and exported."""

    router_ref: ObjectName = Field(description="Name of the Router (role rds) holding the image.")
    pool: RDSPath | None = Field(
        default=None,
        description="Mount point of the storage pool on the RDS, e.g. raid1. Defaults to the Router's.",
    )
    directory: RDSPath = Field(default="iso", description="Directory inside the pool for transferred images.")


class ISOCDROMSpec(TrellisModel):
    """Desired state of an ISOCDROM."""

    model_config = ConfigDict(
        json_schema_extra=rules(
            Cel(
                "!has(self.source.rdsPath) || self.deletePolicy == 'Keep'",
                "deletePolicy must be Keep for an rdsPath source: "
                "Trellis never deletes files it did not create",
                field_path=".deletePolicy",
            ),
        )
    )

    source: Annotated[ISOSource, immutable("source")] = Field(description="Image source (immutable).")
    target: Annotated[ISOTarget, immutable("target")] = Field(
        description="Storage and export target (immutable)."
    )
    description: Annotated[str, StringConstraints(max_length=1024)] | None = Field(
        default=None, description="Free text."
    )
    version: ShortText | None = Field(
        default=None, description="Version of the image, for display and selection."
    )
    slot: SlotName | None = Field(
        default=None,
        description="RouterOS disk slot name (at most 32 characters). Derived from the name when empty.",
    )
    export: Literal["iscsi"] = Field(default="iscsi", description="Export protocol (iSCSI, read-only).")
    delete_policy: Literal["Keep", "Delete"] = Field(
        default="Keep", description="What happens to a transferred file when the ISOCDROM is deleted."
    )


class Subscriber(TrellisModel):
    """A BareMetalHost booting from this image."""

    namespace: ShortText = Field(description="Namespace of the BareMetalHost.")
    name: ShortText = Field(description="Name of the BareMetalHost.")


class ISOCDROMStatus(ObservedStatus):
    """Observed state of an ISOCDROM."""

    phase: Literal["Pending", "Transferring", "Verifying", "Ready", "Error"] | None = Field(
        default=None, description="Pending, Transferring, Verifying, Ready or Error."
    )
    message: Annotated[str, StringConstraints(max_length=4096)] | None = Field(
        default=None, description="Details for the current phase (the error in phase Error)."
    )
    size: int | None = Field(default=None, ge=0, description="Image size in bytes.")
    transferred_bytes: int | None = Field(default=None, ge=0, description="Bytes transferred so far.")
    sha256: ShortText | None = Field(default=None, description="Verified SHA-256 of the stored image.")
    path: ShortText | None = Field(default=None, description="Path of the image on the RDS.")
    iqn: ShortText | None = Field(default=None, description="iSCSI target IQN.")
    portal_address: IPAddress | None = Field(default=None, description="iSCSI portal address.")
    portal_port: Port | None = Field(default=None, description="iSCSI portal port.")
    lun: int | None = Field(
        default=None, ge=0, le=255, description="iSCSI LUN of the image (the Router's iscsiLun)."
    )
    item_id: ShortText | None = Field(default=None, description="RouterOS /disk item id (.id).")
    slot: ShortText | None = Field(default=None, description="RouterOS disk slot in use.")
    subscribers: list[Subscriber] | None = Field(
        default=None,
        max_length=1024,
        description="BareMetalHosts whose bootSource refers to this image (computed).",
    )
    last_export_check: Timestamp | None = Field(
        default=None, description="When the export was last verified."
    )


class ISOCDROM(TrellisResource):
    resource = ResourceInfo(
        kind="ISOCDROM",
        plural="isocdroms",
        short_names=("icd",),
        scope="Cluster",
        description="An ISO image transferred to the RDS and exported read-only over iSCSI, "
        "for hosts to boot.",
        printer_columns=(
            PrinterColumn("Phase", ".status.phase"),
            PrinterColumn("Version", ".spec.version"),
            PrinterColumn("Router", ".spec.target.routerRef"),
            PrinterColumn("Size", ".status.size", type="integer"),
            PrinterColumn("IQN", ".status.iqn", priority=1),
            READY_COLUMN,
            AGE_COLUMN,
        ),
    )
    kind: Literal["ISOCDROM"] = Field(default="ISOCDROM", description="Kind of the object.")
    spec: ISOCDROMSpec = Field(description="Desired state.")
    status: ISOCDROMStatus | None = Field(default=None, description="Observed state.")
