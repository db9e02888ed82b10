"""The /file tree: real files under <data-dir>/files; file disks are real sparse files there."""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from rossim import errors

if TYPE_CHECKING:
    from rossim.device import Device


class Storage:
    # Apparent sizes are re-scanned at most this often unless our own writes invalidate them.
    USED_TTL = 2.0

    def __init__(self, device: Device, root: Path) -> None:
        self.device = device
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self._used: dict[str, tuple[float, int]] = {}
        self._pools: tuple[int, dict[str, int]] = (-1, {})

    def changed(self) -> None:
        self._used.clear()

    def grew(self, rel: str, delta: int) -> None:
        """Keep the cached usage of rel's pool exact after a size change we made ourselves."""
        mount = rel.split("/", 1)[0]
        cached = self._used.get(mount)
        if cached is not None:
            self._used[mount] = (cached[0], cached[1] + delta)

    def rel(self, path: str) -> str:
        """Normalise a RouterOS file name: no leading `/`, no `..`, no empty components."""
        parts = [p for p in PurePosixPath("/" + path).parts[1:] if p not in ("", ".")]
        if ".." in parts or not parts:
            raise errors.RosError(errors.INVALID_PARAMETER)
        return "/".join(parts)

    def real(self, path: str) -> Path:
        return self.root / self.rel(path)

    # ------------------------------------------------------------- pools

    def pools(self) -> dict[str, int]:
        """mount point -> capacity in bytes, for every mounted pool disk."""
        gen = self.device.generation
        if self._pools[0] == gen:
            return self._pools[1]
        out: dict[str, int] = {}
        for item in self.device.table("disk").items.values():
            if item.get("type") != "file" and item.get("pool-size"):
                out[str(item.get("mount-point") or item["slot"])] = int(item["pool-size"])
        self._pools = (gen, out)
        return out

    def has_pool(self, mount: str) -> bool:
        return mount in self.pools()

    def pool_of(self, rel: str) -> str | None:
        first = rel.split("/", 1)[0]
        return first if first in self.pools() else None

    def used(self, mount: str) -> int:
        cached = self._used.get(mount)
        now = time.monotonic()
        if cached is not None and now - cached[0] < self.USED_TTL:
            return cached[1]
        total = self._scan(mount)
        self._used[mount] = (now, total)
        return total

    def _scan(self, mount: str) -> int:
        total = 0
        base = self.root / mount
        for dirpath, _dirs, files in os.walk(base):
            for name in files:
                with contextlib.suppress(OSError):
                    total += os.lstat(os.path.join(dirpath, name)).st_size
        return total

    def free(self, mount: str) -> int:
        if self.device.faults.pool_full:
            return 0
        return max(0, self.pools().get(mount, 0) - self.used(mount))

    def reserve(self, rel: str, grow_by: int) -> None:
        """Refuse growth beyond the pool's capacity (apparent sizes, i.e. thick accounting)."""
        mount = self.pool_of(rel)
        if mount is None:
            raise errors.RosError(errors.INVALID_PARAMETER)
        if grow_by > 0 and (self.device.faults.pool_full or grow_by > self.free(mount)):
            raise errors.RosError(errors.NOT_ENOUGH_SPACE)

    # ------------------------------------------------------------- files

    def size(self, rel: str) -> int | None:
        try:
            return (self.root / rel).stat().st_size
        except OSError:
            return None

    def create_sparse(self, rel: str, size: int) -> None:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "ab") as fh:
            before = fh.tell()
            if before < size:
                fh.truncate(size)
                self.grew(rel, size - before)

    def copy_sparse(self, src_rel: str, dst_rel: str, size: int) -> None:
        """Copy only the data extents (SEEK_DATA/SEEK_HOLE) so a clone stays sparse."""
        src = self.root / src_rel
        dst = self.root / dst_rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        with open(src, "rb") as fin, open(dst, "wb") as fout:
            end = os.fstat(fin.fileno()).st_size
            offset = 0
            while offset < end:
                try:
                    data = os.lseek(fin.fileno(), offset, os.SEEK_DATA)
                except OSError:
                    break
                hole = os.lseek(fin.fileno(), data, os.SEEK_HOLE)
                fin.seek(data)
                fout.seek(data)
                remaining = hole - data
                while remaining:
                    chunk = fin.read(min(remaining, 1 << 20))
                    if not chunk:
                        break
                    fout.write(chunk)
                    remaining -= len(chunk)
                offset = hole
            fout.truncate(max(size, end))
        self.grew(dst_rel, max(size, end))

    def mkdir(self, rel: str) -> None:
        path = self.root / rel
        if path.exists():
            raise errors.RosError(errors.FILE_EXISTS)
        path.mkdir(parents=True)

    def write_file(self, rel: str, contents: bytes) -> None:
        path = self.root / rel
        if path.exists():
            raise errors.RosError(errors.FILE_EXISTS)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(contents)
        self.grew(rel, len(contents))

    def delete(self, rel: str) -> None:
        self.changed()
        path = self.root / rel
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()

    def rename(self, old: str, new: str) -> None:
        self.changed()
        target = self.root / new
        if target.exists():
            raise errors.RosError(errors.FILE_EXISTS)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self.root / old, target)

    def listing(self) -> list[tuple[str, os.stat_result, bool]]:
        """(name, stat, is_dir) for every entry of the tree, parents before children."""
        out: list[tuple[str, os.stat_result, bool]] = []
        for dirpath, dirs, files in os.walk(self.root):
            dirs.sort()
            rel_dir = os.path.relpath(dirpath, self.root)
            for name in sorted(dirs):
                rel = name if rel_dir == "." else f"{rel_dir}/{name}"
                with contextlib.suppress(OSError):
                    out.append((rel, os.lstat(os.path.join(dirpath, name)), True))
            for name in sorted(files):
                if name.startswith(".rossim-"):
                    continue
                rel = name if rel_dir == "." else f"{rel_dir}/{name}"
                with contextlib.suppress(OSError):
                    out.append((rel, os.lstat(os.path.join(dirpath, name)), False))
        out.sort(key=lambda e: e[0].split("/"))
        return out
