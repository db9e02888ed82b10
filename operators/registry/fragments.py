"""Client-side configuration fragments published for a registry's consumers.

Two consumers read them from the Registry's output ConfigMap:

* containerd: ``certs.d/<host>/hosts.toml`` files (one directory per registry host name that
  should be served by this registry: its own ``host:port`` and every mirrored upstream);
* Talos: a machine-config patch (legacy ``machine.registries``, Talos ≤ 1.11 and still accepted
  later) and the multi-document form (``RegistryMirrorConfig`` / ``RegistryTLSConfig``, 1.12+).

ConfigMap keys cannot hold ``/`` or ``:``, so containerd files are stored under flat keys and
``containerd-files.yaml`` maps each key to its path relative to the certs.d directory.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import yaml

CERTS_D = "/etc/containerd/certs.d"
# Docker Hub's registry name and the host its API really lives on.
DOCKER_HUB_NAMES = ("docker.io", "index.docker.io", "registry-1.docker.io")
DOCKER_HUB_API = "https://registry-1.docker.io"

KEY_ENDPOINT = "endpoint"
KEY_CA = "ca.crt"
KEY_CONTAINERD_FILES = "containerd-files.yaml"
KEY_TALOS_PATCH = "talos-machine-patch.yaml"
KEY_TALOS_DOCUMENTS = "talos-registry-documents.yaml"

_UNSAFE_KEY_CHARS = re.compile(r"[^-._a-zA-Z0-9]")


@dataclass(frozen=True)
class Consumer:
    """What consumers need to know: where the registry is and what it mirrors."""

    endpoint: str  # https://host[:port]
    ca_pem: str | None
    mirrors: Sequence[str] = ()
    push: bool = True


def endpoint_host(endpoint: str) -> str:
    """``host[:port]`` as containerd and Talos name a registry."""
    parts = urlsplit(endpoint)
    if not parts.hostname:
        raise ValueError(f"endpoint {endpoint!r} has no host")
    return parts.netloc.rsplit("@", 1)[-1]


def upstream_server(name: str) -> str:
    return DOCKER_HUB_API if name in DOCKER_HUB_NAMES else f"https://{name}"


def _toml_string(value: str) -> str:
    # json.dumps yields a valid TOML basic string for the printable ASCII we accept here.
    return json.dumps(value)


def hosts_toml(server: str, endpoint: str, ca_path: str | None, capabilities: Sequence[str]) -> str:
    lines = [
        f"server = {_toml_string(server)}",
        "",
        f"[host.{_toml_string(endpoint)}]",
        f"  capabilities = [{', '.join(_toml_string(c) for c in capabilities)}]",
    ]
    if ca_path:
        lines.append(f"  ca = {_toml_string(ca_path)}")
    return "\n".join(lines) + "\n"


def _file_key(directory: str, filename: str) -> str:
    return f"containerd.{_UNSAFE_KEY_CHARS.sub('_', directory)}.{filename}"


def containerd_files(consumer: Consumer, certs_d: str = CERTS_D) -> dict[str, tuple[str, str]]:
    """ConfigMap key → (path relative to certs.d, content)."""
    own = endpoint_host(consumer.endpoint)
    files: dict[str, tuple[str, str]] = {}
    directories = [(own, consumer.endpoint, ["pull", "resolve", "push"] if consumer.push else None)]
    directories += [(m, upstream_server(m), None) for m in consumer.mirrors if m != own]
    for directory, server, caps in directories:
        ca_path = None
        if consumer.ca_pem:
            ca_path = f"{certs_d}/{directory}/ca.crt"
            files[_file_key(directory, "ca.crt")] = (f"{directory}/ca.crt", consumer.ca_pem)
        text = hosts_toml(server, consumer.endpoint, ca_path, caps or ["pull", "resolve"])
        files[_file_key(directory, "hosts.toml")] = (f"{directory}/hosts.toml", text)
    return files


def talos_machine_patch(consumer: Consumer) -> str:
    """Legacy ``machine.registries`` patch; its ``tls.ca`` is base64 of the PEM (v1alpha1 bytes)."""
    own = endpoint_host(consumer.endpoint)
    registries: dict[str, object] = {
        "mirrors": {m: {"endpoints": [consumer.endpoint]} for m in consumer.mirrors if m != own}
    }
    if consumer.ca_pem:
        ca_b64 = base64.b64encode(consumer.ca_pem.encode()).decode()
        registries["config"] = {own: {"tls": {"ca": ca_b64}}}
    return yaml.safe_dump({"machine": {"registries": registries}}, sort_keys=True)


def talos_documents(consumer: Consumer) -> str:
    """Talos 1.12+ documents: one RegistryMirrorConfig per mirror plus a RegistryTLSConfig."""
    own = endpoint_host(consumer.endpoint)
    docs: list[dict[str, object]] = [
        {
            "apiVersion": "v1alpha1",
            "kind": "RegistryMirrorConfig",
            "name": m,
            "endpoints": [{"url": consumer.endpoint}],
        }
        for m in consumer.mirrors
        if m != own
    ]
    if consumer.ca_pem:
        docs.append(
            {"apiVersion": "v1alpha1", "kind": "RegistryTLSConfig", "name": own, "ca": consumer.ca_pem}
        )
    return yaml.safe_dump_all(docs, sort_keys=False) if docs else ""


def configmap_data(consumer: Consumer, certs_d: str = CERTS_D) -> dict[str, str]:
    files = containerd_files(consumer, certs_d)
    data = {key: content for key, (_, content) in files.items()}
    data[KEY_CONTAINERD_FILES] = yaml.safe_dump(
        {key: path for key, (path, _) in files.items()}, sort_keys=True
    )
    data[KEY_ENDPOINT] = consumer.endpoint
    if consumer.ca_pem:
        data[KEY_CA] = consumer.ca_pem
    data[KEY_TALOS_PATCH] = talos_machine_patch(consumer)
    data[KEY_TALOS_DOCUMENTS] = talos_documents(consumer)
    return data
