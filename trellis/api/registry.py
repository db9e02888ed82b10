"""Registry (cluster-scoped): a managed CNCF distribution registry, or an existing one by URL."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field, StringConstraints

from trellis.api.cel import Cel, immutable, rules
from trellis.api.common import (
    AGE_COLUMN,
    HTTPURL,
    READY_COLUMN,
    Hostname,
    IPAddress,
    ObjectName,
    ObservedStatus,
    Port,
    PositiveQuantity,
    PrinterColumn,
    ResourceInfo,
    SecretKeyReference,
    SecretReference,
    ShortText,
    Timestamp,
    TrellisModel,
    TrellisResource,
)

CronSchedule = Annotated[
    str,
    StringConstraints(
        pattern=r"^(@(yearly|annually|monthly|weekly|daily|hourly)|(\S+\s+){4}\S+)$", max_length=128
    ),
]
ImageRef = Annotated[str, StringConstraints(pattern=r"^[a-zA-Z0-9][a-zA-Z0-9._:/@-]*$", max_length=512)]
RegistryHost = Annotated[
    str, StringConstraints(pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?(:[0-9]{1,5})?$", max_length=253)
]
"""A registry host name as used in image references, e.g. docker.io or ghcr.io or 10.0.0.5:5000."""


class RegistryStorage(TrellisModel):
    """Persistent volume holding the registry's blobs."""

    size: PositiveQuantity = Field(default="20Gi", description="Volume size, e.g. 20Gi.")
    storage_class_name: ObjectName | None = Field(
        default=None, description="StorageClass of the volume. Empty uses the cluster default."
    )


class RegistryTLS(TrellisModel):
    """Serving certificate of a managed registry."""

    model_config = ConfigDict(
        json_schema_extra=rules(
            Cel(
                "(self.mode == 'secret') == has(self.secretRef)",
                "secretRef is required for mode secret and not allowed for mode generate",
                field_path=".secretRef",
            )
        )
    )

    mode: Literal["generate", "secret"] = Field(
        default="generate",
        description="generate: the operator creates a CA and a serving certificate; secret: use secretRef.",
    )
    secret_ref: SecretReference | None = Field(
        default=None, description="kubernetes.io/tls Secret (tls.crt, tls.key, optional ca.crt)."
    )
    dns_names: list[Hostname] | None = Field(
        default=None, max_length=16, description="Extra DNS names in a generated certificate."
    )
    ip_addresses: list[IPAddress] | None = Field(
        default=None, max_length=16, description="Extra IP addresses in a generated certificate."
    )


class RegistryAuth(TrellisModel):
    """Basic authentication for a managed registry."""

    htpasswd_secret_ref: SecretKeyReference = Field(
        description="Secret key holding an htpasswd file (bcrypt)."
    )


class RegistryProxy(TrellisModel):
    """Pull-through cache of one upstream registry."""

    upstream_url: HTTPURL = Field(
        description="URL of the upstream registry, e.g. https://registry-1.docker.io."
    )
    credentials_secret_ref: SecretReference | None = Field(
        default=None, description="Secret with username and password for the upstream."
    )
    ca_secret_ref: SecretKeyReference | None = Field(
        default=None,
        description="CA certificate (PEM) of an upstream whose certificate is not publicly trusted.",
    )


class RegistryService(TrellisModel):
    """How the managed registry is exposed."""

    type: Literal["ClusterIP", "NodePort", "LoadBalancer"] = Field(
        default="ClusterIP", description="Service type."
    )
    port: Port = Field(default=5000, description="Service port.")
    node_port: Annotated[int, Field(ge=30000, le=32767)] | None = Field(
        default=None, description="Node port for type NodePort."
    )
    load_balancer_ip: IPAddress | None = Field(
        default=None, description="Requested address for type LoadBalancer."
    )


class ManagedRegistry(TrellisModel):
    """A registry deployed and configured by the operator."""

    namespace: ObjectName | None = Field(
        default=None,
        description="Namespace of the registry's workload. Defaults to the operator's namespace.",
    )
    image: ImageRef | None = Field(
        default=None, description="Registry image. Defaults to the chart's setting."
    )
    replicas: int = Field(default=1, ge=0, le=16, description="Registry replicas.")
    storage: RegistryStorage | None = Field(default=None, description="Persistent storage.")
    tls: RegistryTLS | None = Field(default=None, description="Serving certificate.")
    auth: RegistryAuth | None = Field(default=None, description="Basic authentication; anonymous when empty.")
    proxy: RegistryProxy | None = Field(
        default=None, description="Pull-through cache of an upstream registry."
    )
    delete_enabled: bool = Field(
        default=False, description="Allow deleting manifests and blobs through the API."
    )
    gc_schedule: CronSchedule | None = Field(
        default=None, description="Cron schedule for garbage collection, e.g. '0 3 * * *'."
    )
    service: RegistryService | None = Field(default=None, description="Service exposing the registry.")


class ExternalRegistry(TrellisModel):
    """An existing registry, referenced for consumers."""

    url: HTTPURL = Field(description="Base URL, e.g. https://registry.example.net:5000.")
    ca_secret_ref: SecretKeyReference | None = Field(
        default=None, description="CA certificate (PEM) that signed the registry's certificate."
    )
    credentials_secret_ref: SecretReference | None = Field(
        default=None, description="Secret with username and password for pulls."
    )
    insecure_skip_verify: bool = Field(
        default=False, description="Do not verify the certificate (testing only)."
    )


class RegistrySpec(TrellisModel):
    """Desired state of a Registry."""

    model_config = ConfigDict(
        json_schema_extra=rules(
            Cel(
                "(self.mode == 'external') == has(self.external)",
                "external is required for mode external and not allowed for mode managed",
                field_path=".external",
            ),
            Cel(
                "self.mode == 'managed' || !has(self.managed)",
                "managed settings are not allowed for mode external",
                field_path=".managed",
            ),
        )
    )

    mode: Annotated[Literal["managed", "external"], immutable("mode")] = Field(
        description="managed: deployed by the operator; external: an existing registry (immutable)."
    )
    managed: ManagedRegistry | None = Field(default=None, description="Settings for mode managed.")
    external: ExternalRegistry | None = Field(default=None, description="Settings for mode external.")
    mirror_of: list[RegistryHost] | None = Field(
        default=None,
        max_length=32,
        description="Upstream registries this registry mirrors (e.g. docker.io); "
        "consumers configure it as their mirror for them.",
    )


class RegistryStatus(ObservedStatus):
    """Observed state of a Registry."""

    endpoint: ShortText | None = Field(
        default=None, description="URL clients use, e.g. https://10.0.0.5:5000."
    )
    ca_bundle: Annotated[str, StringConstraints(max_length=65536)] | None = Field(
        default=None, description="PEM CA bundle that verifies the endpoint."
    )
    healthy: bool | None = Field(default=None, description="The last /v2/ probe answered.")
    last_probe_time: Timestamp | None = Field(default=None, description="When the last probe ran.")
    consumer_config_map: ShortText | None = Field(
        default=None,
        description="namespace/name of the ConfigMap with containerd hosts.toml "
        "and Talos registry fragments.",
    )
    ready_replicas: int | None = Field(default=None, ge=0, description="Ready registry pods (mode managed).")


class Registry(TrellisResource):
    resource = ResourceInfo(
        kind="Registry",
        plural="registries",
        short_names=("reg",),
        scope="Cluster",
        description="An OCI registry: deployed and managed by Trellis, or an existing one; "
        "publishes endpoint, CA and mirror configuration for consumers.",
        printer_columns=(
            PrinterColumn("Mode", ".spec.mode"),
            PrinterColumn("Endpoint", ".status.endpoint"),
            PrinterColumn("Healthy", ".status.healthy", type="boolean"),
            READY_COLUMN,
            AGE_COLUMN,
        ),
    )
    kind: Literal["Registry"] = Field(default="Registry", description="Kind of the object.")
    spec: RegistrySpec = Field(description="Desired state.")
    status: RegistryStatus | None = Field(default=None, description="Observed state.")
