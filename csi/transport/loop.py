"""Lab transport: attach the volume's backing file with losetup.

The RDS simulator keeps each file disk as a real sparse file under one directory (its file
root), so a node on the same host reaches a volume at ``<root>/<filePath>``. Loop devices are
recognised as ours by their backing file: inside that root and named ``<volume id>.img``.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from trellis.csi.mounts import CommandFailed, run
from trellis.csi.params import VolumeContext
from trellis.csi.transport import AttachError

log = logging.getLogger(__name__)
_DELETED = " (deleted)"


def parse_losetup_list(text: str) -> list[tuple[str, str]]:
    """``(device, backing file)`` pairs from ``losetup --list --json -O NAME,BACK-FILE``."""
    data = json.loads(text) if text.strip() else {}
    pairs = []
    for entry in data.get("loopdevices", []):
        back = entry.get("back-file") or ""
        if back.endswith(_DELETED):
            back = back[: -len(_DELETED)]
        pairs.append((entry.get("name", ""), back))
    return pairs


class LoopTransport:
    name = "loop"

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()

    def _file(self, ctx: VolumeContext) -> Path:
        path = (self.root / ctx.file_path.lstrip("/")).resolve()
        if not path.is_relative_to(self.root):
            raise AttachError(f"file path {ctx.file_path!r} leaves the loop root {self.root}")
        return path

    def _loops(self) -> list[tuple[str, str]]:
        proc = run(["losetup", "--list", "--json", "-O", "NAME,BACK-FILE"])
        return parse_losetup_list(proc.stdout)

    def _devices_of(self, volume_id: str) -> list[str]:
        wanted = f"{volume_id}.img"
        found = []
        for device, back in self._loops():
            path = Path(back)
            if path.name == wanted and path.is_relative_to(self.root):
                found.append(device)
        return sorted(found)

    def attach(self, volume_id: str, ctx: VolumeContext) -> str:
        path = self._file(ctx)
        if not path.is_file():
            raise AttachError(f"backing file {path} of {volume_id} does not exist")
        existing = self._devices_of(volume_id)
        if existing:
            return existing[0]
        try:
            proc = run(["losetup", "--find", "--show", "--nooverlap", str(path)])
        except CommandFailed as exc:
            raise AttachError(f"losetup failed: {exc.stderr.strip()}") from exc
        device = proc.stdout.strip()
        if not device.startswith("/dev/loop") or not os.path.exists(device):
            raise AttachError(f"losetup answered {device!r}")
        log.info("attached", extra={"device": device, "file": str(path)})
        return device

    def device(self, volume_id: str) -> str | None:
        devices = self._devices_of(volume_id)
        return devices[0] if devices else None

    def detach(self, volume_id: str) -> None:
        for device in self._devices_of(volume_id):
            run(["losetup", "--detach", device])
            log.info("detached", extra={"device": device})

    def refresh(self, volume_id: str, device: str) -> None:
        run(["losetup", "--set-capacity", device])
