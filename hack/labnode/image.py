"""The node's pause image: hack/labnode/pause built as a static binary and packaged with buildah
as an OCI archive (``build/labnode/pause.tar``), rebuilt only when its source changes.

buildah runs with its own storage root under build/labnode so it never shares (or locks) the
storage of other image builds on this machine; the vfs driver needs no kernel support.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

from labnode.spec import PAUSE_IMAGE
from labnode.system import run

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent


def pause_archive(out_dir: Path | None = None) -> Path:
    """Path of the pause image's OCI archive, building it if its source changed."""
    out_dir = out_dir or REPO / "build" / "labnode"
    out_dir.mkdir(parents=True, exist_ok=True)
    src = HERE / "pause"
    digest = hashlib.sha256(
        b"".join((src / f).read_bytes() for f in ("main.go", "go.mod")) + PAUSE_IMAGE.encode()
    ).hexdigest()[:16]
    archive = out_dir / f"pause-{digest}.tar"
    if archive.exists():
        return archive
    binary = out_dir / "pause"
    env = {**os.environ, "CGO_ENABLED": "0", "GOTOOLCHAIN": "local", "GOFLAGS": "-mod=mod"}
    subprocess.run(
        ["go", "build", "-trimpath", "-ldflags", "-s -w", "-o", str(binary), "."],
        cwd=src, env=env, check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    storage = out_dir / "buildah"
    bud = [
        "buildah",
        "--root",
        str(storage / "root"),
        "--runroot",
        str(storage / "run"),
        "--storage-driver",
        "vfs",
    ]
    ctr = run([*bud, "from", "scratch"]).stdout.strip()
    try:
        run([*bud, "copy", ctr, str(binary), "/pause"])
        run([*bud, "config", "--entrypoint", '["/pause"]', "--cmd", "", "--user", "65535:65535",
             "--label", "org.opencontainers.image.title=trellis-labnode-pause", ctr])  # fmt: skip
        tmp = archive.with_suffix(".tmp")
        run([*bud, "commit", "--format", "oci", "--rm", ctr, f"oci-archive:{tmp}:{PAUSE_IMAGE}"], timeout=120)
        tmp.rename(archive)
    finally:
        run([*bud, "rm", "--all"], check=False)
        run([*bud, "rmi", "--all", "--force"], check=False)
    for old in out_dir.glob("pause-*.tar"):
        if old != archive:
            old.unlink()
    shutil.rmtree(storage, ignore_errors=True)
    return archive
