"""Reads an OCI image archive (``oci-archive:``: a tar of an OCI image layout) without unpacking it.

Used by hack/image.sh to record each image's digest and sizes in build/images/images.json, and by
the image tests to walk every layer. Standard library only, so any python3 runs it:

    python3 hack/ociarchive.py summary build/images/trellis.tar
"""

from __future__ import annotations

import gzip
import json
import sys
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

GZIP_TYPES = (
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
)


@dataclass(frozen=True)
class Image:
    digest: str  # of the manifest: what a registry serves it by
    ref_name: str  # org.opencontainers.image.ref.name of the index entry
    manifest: dict[str, Any]
    config: dict[str, Any]


def _blob_name(digest: str) -> str:
    algorithm, _, value = digest.partition(":")
    return f"blobs/{algorithm}/{value}"


def _member(tar: tarfile.TarFile, name: str) -> IO[bytes]:
    for candidate in (name, "./" + name):
        try:
            handle = tar.extractfile(candidate)
        except KeyError:
            continue
        if handle is not None:
            return handle
    raise KeyError(f"{name} is not in the archive")


def read(path: Path | str) -> Image:
    """The single image in the archive: its manifest digest, manifest and config."""
    with tarfile.open(path) as tar:
        index = json.load(_member(tar, "index.json"))
        manifests = index.get("manifests", [])
        if len(manifests) != 1:
            raise ValueError(f"{path}: expected one manifest in index.json, found {len(manifests)}")
        entry = manifests[0]
        manifest = json.load(_member(tar, _blob_name(entry["digest"])))
        config = json.load(_member(tar, _blob_name(manifest["config"]["digest"])))
    ref = entry.get("annotations", {}).get("org.opencontainers.image.ref.name", "")
    return Image(entry["digest"], ref, manifest, config)


def layers(path: Path | str) -> Iterator[tuple[str, tarfile.TarInfo, tarfile.TarFile]]:
    """Every entry of every layer, in order: (layer digest, entry, the layer's open tar)."""
    image = read(path)
    with tarfile.open(path) as outer:
        for layer in image.manifest["layers"]:
            blob = _member(outer, _blob_name(layer["digest"]))
            stream: IO[bytes] | gzip.GzipFile = (
                gzip.GzipFile(fileobj=blob) if layer["mediaType"] in GZIP_TYPES else blob
            )
            with tarfile.open(fileobj=stream, mode="r|") as inner:
                for entry in inner:
                    yield layer["digest"], entry, inner


def summary(path: Path | str) -> dict[str, Any]:
    """Digest, uncompressed size (sum of the layers as unpacked tars) and compressed size."""
    image = read(path)
    compressed = sum(int(layer["size"]) for layer in image.manifest["layers"])
    size = 0
    with tarfile.open(path) as outer:
        for layer in image.manifest["layers"]:
            blob = _member(outer, _blob_name(layer["digest"]))
            stream: IO[bytes] | gzip.GzipFile = (
                gzip.GzipFile(fileobj=blob) if layer["mediaType"] in GZIP_TYPES else blob
            )
            while chunk := stream.read(1 << 20):
                size += len(chunk)
    return {
        "digest": image.digest,
        "ref_name": image.ref_name,
        "size": size,
        "compressed_size": compressed,
        "user": image.config.get("config", {}).get("User", ""),
    }


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[1] != "summary":
        print("usage: ociarchive.py summary ARCHIVE", file=sys.stderr)
        return 2
    print(json.dumps(summary(argv[2]), sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
