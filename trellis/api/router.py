"""Router (cluster-scoped): how to reach a RouterOS router or ROSE Data Server."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field, StringConstraints

from trellis.api.cel import Cel, rules
from trellis.api.common import (
    AGE_COLUMN,
    HOSTNAME_PATTERN,
    READY_COLUMN,
    ObservedStatus,
    Port,
    PrinterColumn,
    ResourceInfo,
    SecretKeyReference,
    SecretReference,
    ShortText,
    Timestamp,
    TrellisModel,
    TrellisResource,
)

HostAddress = Annotated[
    str,
    StringConstraints(max_length=253),
    Cel(
        f"isIP(self) || self.matches(r'{HOSTNAME_PATTERN}')",
        "must be an IP address or an RFC 1123 host name",
    ),
]
"""An IP address or a DNS name."""

KnownHostsLine = Annotated[str, StringConstraints(max_length=16384, pattern=r"^[^\r\n]+$")]


class RouterAPITLS(TrellisModel):
    """TLS for the RouterOS API (api-ssl service)."""

    enabled: bool = Field(default=False, description="Use the api-ssl service instead of the plain API.")
    port: Port = Field(default=8729, description="api-ssl port.")
    ca_secret_ref: SecretKeyReference | None = Field(
        default=None,
        description="CA certificate (PEM) that signed the router's certificate. "
        "Without it the system CAs are used.",
    )
    insecure_skip_verify: bool = Field(
        default=False, description="Do not verify the router's certificate (testing only)."
    )
    server_name: ShortText | None = Field(
        default=None, description="Name expected in the router's certificate. Defaults to address."
    )


class SSHHostKey(TrellisModel):
    """The pinned SSH host key: exactly one of knownHosts or secretRef."""

    model_config = ConfigDict(
        json_schema_extra=rules(
            Cel(
                "has(self.knownHosts) != has(self.secretRef)",
                "set exactly one of knownHosts or secretRef",
            )
        )
    )

    known_hosts: KnownHostsLine | None = Field(
        default=None, description="known_hosts line(s) for the router, e.g. '10.0.0.1 ssh-ed25519 AAAA...'."
    )
    secret_ref: SecretKeyReference | None = Field(
        default=None, description="Secret key holding known_hosts lines for the router."
    )


class RouterSpec(TrellisModel):
    """How to reach one RouterOS device."""

    address: HostAddress = Field(description="IP address or DNS name of the device.")
    role: Literal["router", "rds"] = Field(
        default="router",
        description="router: serves networks; rds: ROSE Data Server holding disks and exports.",
    )
    api_port: Port = Field(default=8728, description="Plain RouterOS API port.")
    api_tls: RouterAPITLS | None = Field(default=None, description="TLS settings for the RouterOS API.")
    ssh_port: Port = Field(default=22, description="SSH port (RouterOS CLI and SFTP).")
    credentials_secret_ref: SecretReference = Field(
        description="Secret with keys username and password, and optionally ssh-privatekey for SSH key auth."
    )
    ssh_host_key: SSHHostKey | None = Field(
        default=None,
        description="Pinned SSH host key. Required for any SSH use; connections are refused otherwise.",
    )
    probe_interval_seconds: int = Field(
        default=60, ge=5, le=3600, description="How often reachability and version are checked."
    )
    iscsi_lun: int = Field(
        default=0,
        ge=0,
        le=255,
        description="role rds: the LUN at which the device serves an exported disk, put in iSCSI "
        "root-paths for sanboot. RouterOS shows no LUN; 0 is what mkube's sanboot flow uses.",
    )


class RouterStatus(ObservedStatus):
    """Observed state of a Router."""

    reachable: bool | None = Field(default=None, description="The last probe succeeded.")
    router_os_version: ShortText | None = Field(
        default=None, description="RouterOS version reported by the device."
    )
    identity: ShortText | None = Field(default=None, description="/system/identity name.")
    board_name: ShortText | None = Field(default=None, description="Board name from /system/resource.")
    last_probe_time: Timestamp | None = Field(default=None, description="When the last probe ran.")
    last_error: Annotated[str, StringConstraints(max_length=4096)] | None = Field(
        default=None, description="Error of the last failed probe, empty after a success."
    )


class Router(TrellisResource):
    resource = ResourceInfo(
        kind="Router",
        plural="routers",
        short_names=("rtr",),
        scope="Cluster",
        description="A RouterOS device (router or ROSE Data Server): address, API/SSH ports, TLS, "
        "credentials and pinned SSH host key.",
        printer_columns=(
            PrinterColumn("Address", ".spec.address"),
            PrinterColumn("Role", ".spec.role"),
            PrinterColumn("Reachable", ".status.reachable", type="boolean"),
            PrinterColumn("Version", ".status.routerOSVersion"),
            PrinterColumn("Identity", ".status.identity"),
            READY_COLUMN,
            AGE_COLUMN,
        ),
    )
    kind: Literal["Router"] = Field(default="Router", description="Kind of the object.")
    spec: RouterSpec = Field(description="Desired state.")
    status: RouterStatus | None = Field(default=None, description="Observed state.")
