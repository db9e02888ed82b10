"""Talos config contracts: which machine-config shape each supported Talos version line gets.

One table, so supporting a new line (or correcting a fact) is one edit. Talos 1.14 moves most of
the v1alpha1 document into new document kinds (UnattendedInstall, KubeClusterConfig, ...); that
shape is not rendered yet and 1.14+ clusters are refused with a clear reason.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Contract:
    line: str
    # Talos >= 1.12 takes the hostname from a HostnameConfig document; earlier lines only know
    # machine.network.hostname. Never both: the document's conflict validator rejects that.
    hostname_document: bool
    # Talos >= 1.12 deprecates machine.registries in favour of RegistryMirrorConfig documents.
    registry_mirror_documents: bool
    # cluster.id uses the URL-safe base64 alphabet up to 1.13 and the standard one from 1.14.
    cluster_id_urlsafe: bool
    # False where the shape was inferred from release notes rather than checked by Talos' own
    # validator for that line.
    confirmed: bool = True


CONTRACTS: dict[str, Contract] = {
    "1.10": Contract(
        "1.10", hostname_document=False, registry_mirror_documents=False, cluster_id_urlsafe=True
    ),
    "1.11": Contract(
        "1.11", hostname_document=False, registry_mirror_documents=False, cluster_id_urlsafe=True
    ),
    "1.12": Contract("1.12", hostname_document=True, registry_mirror_documents=True, cluster_id_urlsafe=True),
    # GUESS: 1.13 keeps the 1.12 shape (the 1.14 release notes list the next breaking changes).
    "1.13": Contract(
        "1.13",
        hostname_document=True,
        registry_mirror_documents=True,
        cluster_id_urlsafe=True,
        confirmed=False,
    ),
}

_VERSION = re.compile(r"^v?(\d+)\.(\d+)(?:\.\d+)?(?:[-+][0-9A-Za-z.-]+)?$")


class UnsupportedTalosVersion(ValueError):
    pass


def version_line(talos_version: str) -> str:
    match = _VERSION.match(talos_version.strip())
    if not match:
        raise UnsupportedTalosVersion(f"talosVersion {talos_version!r} is not a version like v1.12.0")
    return f"{int(match.group(1))}.{int(match.group(2))}"


def contract_for(talos_version: str) -> Contract:
    line = version_line(talos_version)
    try:
        return CONTRACTS[line]
    except KeyError:
        supported = ", ".join(sorted(CONTRACTS, key=lambda v: tuple(int(p) for p in v.split("."))))
        raise UnsupportedTalosVersion(
            f"Talos {line} is not supported (supported version lines: {supported})"
        ) from None
