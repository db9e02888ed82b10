"""The CNCF distribution registry's own ``config.yml``, rendered from validated options.

The document is the file the registry binary reads (``registry serve <file>``): top-level keys
``version``, ``log``, ``storage``, ``http``, ``auth``, ``proxy``, ``health``. Secrets never appear
in it: the HTTP secret and the upstream credentials reach the process as ``REGISTRY_*``
environment variables (the binary's documented override mechanism), so the file can live in a
ConfigMap.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import yaml

# Environment variables the binary maps onto config keys (REGISTRY_<PATH_IN_UPPER_CASE>).
ENV_HTTP_SECRET = "REGISTRY_HTTP_SECRET"
ENV_PROXY_USERNAME = "REGISTRY_PROXY_USERNAME"
ENV_PROXY_PASSWORD = "REGISTRY_PROXY_PASSWORD"

DEFAULT_PORT = 5000


@dataclass(frozen=True)
class Paths:
    """Where the files the config refers to live inside the registry's container."""

    config: str = "/etc/trellis/registry/config.yml"
    storage: str = "/var/lib/registry"
    tls_dir: str = "/etc/trellis/registry-tls"
    auth_dir: str = "/etc/trellis/registry-auth"
    upstream_ca_dir: str = "/etc/trellis/registry-upstream-ca"

    @property
    def certificate(self) -> str:
        return f"{self.tls_dir}/tls.crt"

    @property
    def key(self) -> str:
        return f"{self.tls_dir}/tls.key"

    @property
    def htpasswd(self) -> str:
        return f"{self.auth_dir}/htpasswd"


@dataclass(frozen=True)
class ServeOptions:
    """Everything that shapes config.yml; built from a Registry spec by ``desired``."""

    name: str
    port: int = DEFAULT_PORT
    listen_host: str = ""
    tls: bool = True
    htpasswd: bool = False
    auth_realm: str = "trellis-registry"
    proxy_remote_url: str | None = None
    delete_enabled: bool = False
    upload_purge_age: str = "168h"
    log_level: str = "info"
    debug_port: int | None = None
    paths: Paths = field(default_factory=Paths)


class UpstreamURLError(ValueError):
    """The pull-through upstream URL cannot be used by the registry's proxy."""


def validate_upstream_url(url: str) -> str:
    """Return ``url`` normalised (no trailing slash) or raise UpstreamURLError with the reason.

    The registry's proxy appends ``/v2/...`` to the URL itself, so a path, query or fragment
    would silently produce wrong requests; refuse them here rather than at pull time.
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UpstreamURLError(f"upstream URL {url!r} does not parse: {exc}") from exc
    if parts.scheme not in ("http", "https"):
        raise UpstreamURLError(f"upstream URL {url!r} must start with https:// or http://")
    if not parts.hostname:
        raise UpstreamURLError(f"upstream URL {url!r} has no host")
    if parts.username or parts.password:
        raise UpstreamURLError("upstream URL must not carry credentials; use the credentials Secret")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise UpstreamURLError(
            f"upstream URL {url!r} must be the registry's base URL (no path, query or fragment); "
            "the proxy adds /v2/ itself"
        )
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{parts.scheme}://{host}" + (f":{port}" if port else "")


def config_document(opts: ServeOptions) -> dict[str, Any]:
    paths = opts.paths
    storage: dict[str, Any] = {
        "filesystem": {"rootdirectory": paths.storage},
        "delete": {"enabled": opts.delete_enabled},
        "cache": {"blobdescriptor": "inmemory"},
        "maintenance": {
            "uploadpurging": {
                "enabled": True,
                "age": opts.upload_purge_age,
                "interval": "24h",
                "dryrun": False,
            }
        },
    }
    http: dict[str, Any] = {
        "addr": f"{opts.listen_host}:{opts.port}",
        "headers": {"X-Content-Type-Options": ["nosniff"]},
    }
    if opts.debug_port:
        # Health (/debug/health) and Prometheus metrics on a plain-HTTP side port, without auth.
        http["debug"] = {
            "addr": f"{opts.listen_host}:{opts.debug_port}",
            "prometheus": {"enabled": True, "path": "/metrics"},
        }
    if opts.tls:
        http["tls"] = {"certificate": paths.certificate, "key": paths.key, "minimumtls": "tls1.2"}
    doc: dict[str, Any] = {
        "version": "0.1",
        "log": {
            "level": opts.log_level,
            "formatter": "text",
            "accesslog": {"disabled": False},
            "fields": {"service": "registry", "registry": opts.name},
        },
        "storage": storage,
        "http": http,
        "health": {"storagedriver": {"enabled": True, "interval": "10s", "threshold": 3}},
    }
    if opts.htpasswd:
        doc["auth"] = {"htpasswd": {"realm": opts.auth_realm, "path": paths.htpasswd}}
    if opts.proxy_remote_url:
        doc["proxy"] = {"remoteurl": validate_upstream_url(opts.proxy_remote_url)}
    return doc


def render_config(opts: ServeOptions) -> str:
    """config.yml text; stable for equal options so its checksum only moves on real changes."""
    return yaml.safe_dump(config_document(opts), sort_keys=True, default_flow_style=False)


def checksum(parts: Mapping[str, str | bytes]) -> str:
    """sha256 over named inputs, order-independent; goes into the pod template annotation."""
    digest = hashlib.sha256()
    for key in sorted(parts):
        value = parts[key]
        data = value.encode() if isinstance(value, str) else value
        digest.update(key.encode() + b"\0" + len(data).to_bytes(8, "big") + data)
    return digest.hexdigest()
