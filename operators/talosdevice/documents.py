"""Documents and fragments the render adds next to the v1alpha1 document: volumes and mirrors."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from trellis.api.talos import RegistryMirror, TalosClusterSpec, TalosDeviceSpec, VolumeOverride
from trellis.operators.talosdevice.patching import Document

# Talos names the image cache volume IMAGECACHE (constants.ImageCachePartitionLabel); the API
# spells it IMAGE-CACHE as users know it from the Talos docs' prose.
TALOS_VOLUME_NAMES = {"EPHEMERAL": "EPHEMERAL", "IMAGE-CACHE": "IMAGECACHE", "IMAGECACHE": "IMAGECACHE"}
_K8S_SUFFIX = re.compile(r"^([0-9.]+)(Ki|Mi|Gi|Ti|Pi|Ei|k|K|M|G|T|P|E)$")


def talos_size(value: int | str) -> int | str:
    """Kubernetes-style suffixes (10Gi) become Talos units (10GiB); Talos forms pass through."""
    if isinstance(value, int):
        return value
    match = _K8S_SUFFIX.match(value.strip())
    if match:
        unit = match.group(2)
        return f"{match.group(1)}{'kB' if unit in ('k', 'K') else unit + 'B'}"
    return value.strip()


def volume_documents(cluster: TalosClusterSpec, device: TalosDeviceSpec) -> list[Document]:
    """Cluster defaults per volume, with the device's fields taking precedence one by one."""
    merged: dict[str, dict[str, Any]] = {}

    def absorb(overrides: Sequence[VolumeOverride] | None) -> None:
        for vol in overrides or ():
            target = merged.setdefault(TALOS_VOLUME_NAMES[vol.name], {})
            prov = vol.provisioning
            if prov.disk_selector:
                target["diskSelector"] = {"match": prov.disk_selector}
            if prov.min_size is not None:
                target["minSize"] = talos_size(prov.min_size)
            if prov.max_size is not None:
                target["maxSize"] = talos_size(prov.max_size)
            if prov.grow is not None:
                target["grow"] = prov.grow

    absorb(cluster.volumes)
    absorb(device.volumes)
    return [
        {"apiVersion": "v1alpha1", "kind": "VolumeConfig", "name": name, "provisioning": prov}
        for name, prov in merged.items()
        if prov
    ]


def manual_mirrors_legacy(mirrors: Sequence[RegistryMirror]) -> Document:
    entries: dict[str, Any] = {}
    for m in mirrors:
        entry: dict[str, Any] = {"endpoints": list(m.endpoints)}
        if m.skip_fallback:
            entry["skipFallback"] = True
        entries[m.registry] = entry
    return {"machine": {"registries": {"mirrors": entries}}}


def manual_mirror_documents(mirrors: Sequence[RegistryMirror]) -> list[Document]:
    docs = []
    for m in mirrors:
        doc: Document = {
            "apiVersion": "v1alpha1",
            "kind": "RegistryMirrorConfig",
            "name": m.registry,
            "endpoints": [{"url": url} for url in m.endpoints],
        }
        if m.skip_fallback:
            doc["skipFallback"] = True
        docs.append(doc)
    return docs
