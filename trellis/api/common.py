"""Types shared by every Trellis kind: base models, references, conditions and validated scalars.

Every scalar type carries both an OpenAPI constraint (pattern / maxLength, enforced by the apiserver
and by pydantic) and, where a regular expression is not enough, a CEL rule evaluated by the
apiserver. maxLength / maxItems bound the cost the apiserver estimates for those rules.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, WithJsonSchema

from trellis.api.cel import Cel

# --- scalar types -------------------------------------------------------------------------------

MAC_PATTERN = r"^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$"
HOSTNAME_PATTERN = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*$"
NAME_PATTERN = HOSTNAME_PATTERN  # Kubernetes object names (DNS-1123 subdomain)
QUANTITY_PATTERN = r"^(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[kMGTPE]|([eE]\+?[0-9]+))?$"
DURATION_PATTERN = r"^[1-9][0-9]{0,8}[smhdw]$"
SHA256_PATTERN = r"^[0-9a-f]{64}$"
# Names that end up in RouterOS items (bridges, interfaces, pools, slots): a conservative set
# that never needs quoting tricks.
ROUTEROS_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
LINUX_IFNAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,14}$"


def normalize_mac(mac: str) -> str:
    """Canonical form used as identity everywhere: lowercase, colon separated."""
    return mac.strip().lower().replace("-", ":")


def _check_ip(value: str) -> str:
    ipaddress.ip_address(value)
    return value


def _check_cidr(value: str) -> str:
    ipaddress.ip_network(value, strict=True)
    return value


def _check_prefix(value: str) -> str:
    ipaddress.ip_interface(value)
    return value


def _check_quantity(value: int | str) -> int | str:
    if isinstance(value, bool):
        raise ValueError("a size must be a number or a quantity string")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("a size must not be negative")
        return value
    if not re.match(QUANTITY_PATTERN, value):
        raise ValueError(f"{value!r} is not a non-negative quantity such as 10Gi")
    return value


MACAddress = Annotated[str, StringConstraints(pattern=MAC_PATTERN, max_length=17)]
"""Colon-separated MAC address (either case; operators normalise to lowercase)."""

IPAddress = Annotated[
    str,
    StringConstraints(max_length=45),
    AfterValidator(_check_ip),
    Cel("isIP(self)", "must be a valid IPv4 or IPv6 address"),
]
IPv4Address = Annotated[
    str,
    StringConstraints(max_length=15, pattern=r"^[0-9.]+$"),
    AfterValidator(_check_ip),
    Cel("isIP(self) && ip(self).family() == 4", "must be a valid IPv4 address"),
]
CIDR = Annotated[
    str,
    StringConstraints(max_length=49),
    AfterValidator(_check_cidr),
    Cel(
        "isCIDR(self) && cidr(self) == cidr(self).masked()",
        "must be a network in CIDR notation with no host bits set, e.g. 10.0.0.0/24",
    ),
]
IPPrefix = Annotated[
    str,
    StringConstraints(max_length=49),
    AfterValidator(_check_prefix),
    Cel("isCIDR(self)", "must be an address with prefix length, e.g. 10.0.0.5/24"),
]
"""An interface address with its prefix length (host bits allowed)."""

Hostname = Annotated[str, StringConstraints(pattern=HOSTNAME_PATTERN, max_length=253)]
"""RFC 1123 host name: lowercase letters, digits, '-' and '.'; labels of at most 63 characters."""

ObjectName = Annotated[str, StringConstraints(pattern=NAME_PATTERN, max_length=253)]
RouterOSName = Annotated[str, StringConstraints(pattern=ROUTEROS_NAME_PATTERN, max_length=63)]
LinuxInterfaceName = Annotated[str, StringConstraints(pattern=LINUX_IFNAME_PATTERN, max_length=15)]
Port = Annotated[int, Field(ge=1, le=65535)]
VLANID = Annotated[int, Field(ge=1, le=4094)]
Duration = Annotated[str, StringConstraints(pattern=DURATION_PATTERN, max_length=10)]
"""A whole number of seconds, minutes, hours, days or weeks: 30s, 10m, 1h, 7d, 2w."""
SHA256 = Annotated[str, StringConstraints(pattern=SHA256_PATTERN, max_length=64)]
ShortText = Annotated[str, StringConstraints(max_length=256)]
LongText = Annotated[str, StringConstraints(max_length=4096)]
Timestamp = dt.datetime

HTTPURL = Annotated[
    str,
    StringConstraints(pattern=r"^https?://[^\s]+$", max_length=2048),
    Cel("isURL(self) && url(self).getHostname() != ''", "must be an http:// or https:// URL with a host"),
]

NOT_NEGATIVE = Cel("type(self) != int || self >= 0", "must not be negative")
Quantity = Annotated[
    int | str,
    WithJsonSchema(
        {
            "x-kubernetes-int-or-string": True,
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "pattern": QUANTITY_PATTERN,
            "maxLength": 32,
        }
    ),
    AfterValidator(_check_quantity),
    NOT_NEGATIVE,
]
"""A non-negative size: an integer number of bytes or a Kubernetes quantity such as 20Gi."""

PositiveQuantity = Annotated[
    Quantity,
    Cel(
        "type(self) == int ? self > 0 : (!isQuantity(self) || quantity(self).isGreaterThan(quantity('0')))",
        "must be greater than zero",
    ),
]

FreeForm = Annotated[
    dict[str, Any],
    WithJsonSchema({"type": "object", "x-kubernetes-preserve-unknown-fields": True}),
]
"""An arbitrary object kept as written (used for Talos config patches only)."""

AnyValue = Annotated[Any, WithJsonSchema({"x-kubernetes-preserve-unknown-fields": True})]


# --- base models --------------------------------------------------------------------------------


# Initialisms keep Kubernetes API spelling on the wire: boot_mac_address -> bootMACAddress.
_INITIALISMS = {
    "url": "URL",
    "ip": "IP",
    "mac": "MAC",
    "cidr": "CIDR",
    "cidrs": "CIDRs",
    "tls": "TLS",
    "csi": "CSI",
    "os": "OS",
}


def wire_name(field_name: str) -> str:
    """snake_case Python name -> camelCase API name."""
    first, *rest = field_name.split("_")
    return first + "".join(_INITIALISMS.get(word, word[:1].upper() + word[1:]) for word in rest)


class TrellisModel(BaseModel):
    """Base for every spec/status part: camelCase on the wire, snake_case in Python."""

    model_config = ConfigDict(
        alias_generator=wire_name,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        extra="ignore",
    )

    def to_k8s(self) -> dict[str, Any]:
        """The object as the apiserver stores it (camelCase, unset fields left out)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class LocalObjectReference(TrellisModel):
    """A reference to an object in the same namespace."""

    name: ObjectName = Field(description="Name of the referenced object.")


class SecretReference(TrellisModel):
    """A reference to a Secret."""

    name: ObjectName = Field(description="Name of the Secret.")
    namespace: ObjectName | None = Field(
        default=None,
        description="Namespace of the Secret. Defaults to the namespace of the referencing object, or to "
        "the operator's namespace for cluster-scoped objects.",
    )


class SecretKeyReference(SecretReference):
    """A key inside a Secret."""

    key: Annotated[str, StringConstraints(pattern=r"^[-._a-zA-Z0-9]+$", max_length=253)] = Field(
        description="Key inside the Secret's data."
    )


class ObjectReference(TrellisModel):
    """A reference to any Kubernetes object."""

    api_version: ShortText | None = Field(default=None, description="API version of the referent.")
    kind: ShortText | None = Field(default=None, description="Kind of the referent.")
    name: ObjectName = Field(description="Name of the referent.")
    namespace: ObjectName | None = Field(default=None, description="Namespace of the referent.")
    uid: ShortText | None = Field(default=None, description="UID of the referent.")


class LabelSelectorRequirement(TrellisModel):
    """One label selector expression."""

    key: ShortText = Field(description="Label key the selector applies to.")
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"] = Field(
        description="Relationship to the values."
    )
    values: list[ShortText] | None = Field(
        default=None, max_length=64, description="Values for In and NotIn; empty otherwise."
    )


class LabelSelector(TrellisModel):
    """A Kubernetes label selector: all conditions must match."""

    match_labels: dict[str, ShortText] | None = Field(
        default=None, description="Labels that must be present with exactly these values."
    )
    match_expressions: list[LabelSelectorRequirement] | None = Field(
        default=None, max_length=16, description="Set-based requirements."
    )


ConditionStatus = Literal["True", "False", "Unknown"]


class Condition(TrellisModel):
    """The state of one aspect of an object (Kubernetes condition conventions)."""

    type: Annotated[str, StringConstraints(max_length=316)] = Field(
        description="Type of condition in CamelCase, e.g. Ready or Reconciled."
    )
    status: ConditionStatus = Field(description="True, False or Unknown.")
    reason: Annotated[str, StringConstraints(max_length=1024)] | None = Field(
        default=None, description="One CamelCase word giving the reason for the last transition."
    )
    message: Annotated[str, StringConstraints(max_length=32768)] | None = Field(
        default=None, description="Human-readable details about the last transition."
    )
    last_transition_time: Timestamp | None = Field(default=None, description="When the status last changed.")
    observed_generation: int | None = Field(
        default=None, ge=0, description="metadata.generation the condition was computed from."
    )


class ObservedStatus(TrellisModel):
    """Status fields every kind has."""

    observed_generation: int | None = Field(
        default=None, ge=0, description="The metadata.generation last reconciled by the operator."
    )
    conditions: Annotated[
        list[Condition] | None,
        Field(json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]}),
    ] = Field(default=None, max_length=32, description="Current conditions (Ready, Reconciled, ...).")


# --- resource metadata --------------------------------------------------------------------------


@dataclass(frozen=True)
class PrinterColumn:
    name: str
    json_path: str
    type: str = "string"
    description: str = ""
    priority: int = 0


@dataclass(frozen=True)
class ResourceInfo:
    """What the CRD generator needs beyond the schema."""

    kind: str
    plural: str
    short_names: tuple[str, ...]
    scope: Literal["Namespaced", "Cluster"]
    description: str
    printer_columns: tuple[PrinterColumn, ...] = ()
    root_rules: tuple[Cel, ...] = field(default=())

    @property
    def singular(self) -> str:
        return self.kind.lower()


READY_COLUMN = PrinterColumn(
    "Ready", '.status.conditions[?(@.type=="Ready")].status', description="Ready condition status"
)
AGE_COLUMN = PrinterColumn("Age", ".metadata.creationTimestamp", type="date")


class TrellisResource(TrellisModel):
    """A whole Kubernetes object of one Trellis kind."""

    resource: ClassVar[ResourceInfo]

    api_version: Literal["trellis.dev/v1alpha1"] = Field(
        default="trellis.dev/v1alpha1", description="API version."
    )
    kind: str = Field(description="Kind of the object.")
    metadata: dict[str, Any] = Field(default_factory=dict, description="Standard object metadata.")
