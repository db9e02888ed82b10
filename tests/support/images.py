"""The container images `make image` builds (build/images/images.json), and running them here.

Containers run with buildah (vfs storage, chroot isolation: no daemon, no runc), from the very OCI
archives images.json lists, so what is tested is what a node imports or a registry receives.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tarfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ociarchive  # hack/ociarchive.py (hack/ is on the test path)

REPO = Path(__file__).resolve().parents[2]
IMAGES_JSON = REPO / "build" / "images" / "images.json"
BUILDAH = [
    shutil.which("buildah") or "buildah",
    "--storage-driver",
    os.environ.get("IMAGE_STORAGE_DRIVER") or "vfs",
]


def build() -> dict[str, Any]:
    """`make image` (cached: unchanged inputs only re-link the archives) and its images.json."""
    proc = subprocess.run(
        ["make", "--no-print-directory", "image"], cwd=REPO, capture_output=True, text=True, timeout=1800
    )
    if proc.returncode != 0:
        raise AssertionError(f"make image failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return load()


def load() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(IMAGES_JSON.read_text())
    return data


def by_name(listing: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {image["name"]: image for image in listing["images"]}


@dataclass
class Container:
    """A buildah working container made from an OCI archive."""

    name: str

    def run(
        self, *argv: str, user: str | None = None, volumes: Sequence[str] = (), timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.command(*argv, user=user, volumes=volumes),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def command(self, *argv: str, user: str | None = None, volumes: Sequence[str] = ()) -> list[str]:
        cmd = [*BUILDAH, "run", "--isolation", "chroot"]
        if user is not None:
            cmd += ["--user", user]
        for volume in volumes:
            cmd += ["--volume", volume]
        return [*cmd, self.name, "--", *argv]


@contextmanager
def container(archive: Path | str) -> Iterator[Container]:
    """A working container of the archive's image; it and the imported image are removed afterwards."""
    image = ociarchive.read(archive)
    pulled = subprocess.run(
        [*BUILDAH, "pull", "--quiet", f"oci-archive:{archive}"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert pulled.returncode == 0, pulled.stderr
    image_id = pulled.stdout.strip().splitlines()[-1]
    made = subprocess.run(
        [*BUILDAH, "from", "--quiet", "--pull-never", image_id],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    name = made.stdout.strip().splitlines()[-1]
    try:
        yield Container(name)
    finally:
        subprocess.run([*BUILDAH, "rm", name], capture_output=True, timeout=120, check=False)
        # Only by ID, and only when nothing else of ours uses it.
        subprocess.run([*BUILDAH, "rmi", image_id], capture_output=True, timeout=120, check=False)
        del image


# --- what must never be in a layer -------------------------------------------------------------------
# A PEM private key with its body (libraries that parse PEM hold the header line alone).
PRIVATE_KEY = re.compile(
    rb"-----BEGIN (?:RSA |EC |DSA |OPENSSH |ENCRYPTED )?PRIVATE KEY-----\r?\n(?:[A-Za-z0-9+/=:, -]*\r?\n)*?"
    rb"[A-Za-z0-9+/=]{16,}"
)
SECRET_NAMES = re.compile(
    r"(^|/)(\.git|\.venv|\.env|\.netrc|\.pypirc|\.git-credentials|\.npmrc|\.ssh|id_rsa|id_ed25519|id_ecdsa"
    r"|ssh_host_[a-z0-9]+_key|.*\.key|\.docker/config\.json|\.kube/config)(/|$)"
)
# The repository's own folders that must not ship: tests, the build tree, the virtualenv, git.
REPO_DIRS = re.compile(r"(^|/)site-packages/(tests|hack|build|bin)/|(^|/)(work|src)/main/|\.egg-info/")
MAX_SCAN = 64 << 20  # files larger than this are listed, not read
# Known public keys inside distribution binaries: GnuTLS embeds the GOST key of its FIPS self-tests.
PUBLIC_TEST_KEYS = re.compile(r"^usr/lib/[a-z0-9_-]+-linux-gnu/libgnutls\.so\.[0-9.]+$")


def findings(archive: Path | str) -> list[str]:
    """Everything in any layer of the archive that looks like a secret or a piece of the work tree."""
    found: list[str] = []
    for digest, entry, layer in ociarchive.layers(archive):
        name = entry.name.removeprefix("./")
        where = f"{digest[:19]} {name}"
        if SECRET_NAMES.search(name):
            found.append(f"{where}: secret-looking name")
        if REPO_DIRS.search(name):
            found.append(f"{where}: part of the work tree")
        if entry.isfile() and entry.size <= MAX_SCAN:
            handle = layer.extractfile(entry)
            if handle is not None and PRIVATE_KEY.search(handle.read()) and not PUBLIC_TEST_KEYS.match(name):
                found.append(f"{where}: holds a private key")
    return found


def write_archive(path: Path, files: dict[str, bytes], user: str = "") -> Path:
    """A minimal one-layer OCI archive (uncompressed layer), for testing the checks themselves."""
    import hashlib
    import io

    blobs: dict[str, bytes] = {}

    def blob(data: bytes) -> str:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        blobs[digest] = data
        return digest

    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    layer_bytes = layer.getvalue()
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"User": user},
            "rootfs": {"type": "layers", "diff_ids": [blob(layer_bytes)]},
        }
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": blob(config),
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": blob(layer_bytes),
                    "size": len(layer_bytes),
                }
            ],
        }
    ).encode()
    manifest_digest = blob(manifest)
    index = json.dumps(
        {
            "schemaVersion": 2,
            "manifests": [
                {
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": manifest_digest,
                    "size": len(manifest),
                }
            ],
        }
    ).encode()
    with tarfile.open(path, "w") as tar:
        for name, data in [("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'), ("index.json", index)] + [
            (f"blobs/sha256/{d.split(':')[1]}", b) for d, b in blobs.items()
        ]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path
