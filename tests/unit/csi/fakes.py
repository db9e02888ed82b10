"""An in-memory RDS at the DiskStore boundary, for controller logic tests (no CLI, no SSH)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from trellis.csi.rds import Disk, Pool
from trellis.routeros.cli import ErrorKind, RouterOSError
from trellis.routeros.ssh import TransportError


@dataclass
class FakeRds:
    pool_name: str = "storage-pool"
    pool_size: int = 100 << 30
    disks: dict[str, Disk] = field(default_factory=dict)
    files: set[str] = field(default_factory=set)
    commands: list[str] = field(default_factory=list)
    # Faults for the next create: "no-space" (refused, file half-written), "drop-after"
    # (applied, then the connection is lost), "drop-before" (lost before it ran).
    create_fault: str | None = None

    def used(self) -> int:
        return sum(d.size for d in self.disks.values())

    def lookup(self, slots: Sequence[str], pool: str | None = None) -> tuple[dict[str, Disk], Pool | None]:
        self.commands.append("print")
        found = {s: self.disks[s] for s in slots if s in self.disks}
        pool_row = (
            Pool(self.pool_name, self.pool_size, self.pool_size - self.used())
            if pool == self.pool_name
            else None
        )
        return found, pool_row

    def list(self, prefix: str) -> list[Disk]:
        self.commands.append("print")
        return sorted((d for s, d in self.disks.items() if s.startswith(prefix)), key=lambda d: d.slot)

    def create(self, slot, file_path, size, *, nqn, port, copy_from=None) -> None:  # type: ignore[no-untyped-def]
        self.commands.append("add")
        fault, self.create_fault = self.create_fault, None
        if fault == "drop-before":
            raise TransportError("connection lost", sent=True)
        if slot in self.disks:
            raise RouterOSError("failure: item with such name already exists", ErrorKind.EXISTS)
        if copy_from is not None and copy_from not in self.disks:
            raise RouterOSError("expected item id", ErrorKind.NOT_FOUND)
        if fault == "no-space" or size > self.pool_size - self.used():
            self.files.add(file_path)  # a partial file left behind by the failed add
            raise RouterOSError("failure: not enough space", ErrorKind.NO_SPACE)
        self.files.add(file_path)
        self.disks[slot] = Disk(slot, file_path, size, nqn is not None, nqn or slot, port)
        if fault == "drop-after":
            raise TransportError("connection lost", sent=True)

    def resize(self, slot: str, size: int) -> None:
        self.commands.append("set")
        disk = self.disks[slot]
        self.disks[slot] = Disk(disk.slot, disk.file_path, size, disk.exported, disk.nqn, disk.port)

    def remove_disk(self, slot: str) -> None:
        self.commands.append("remove")
        self.disks.pop(slot, None)

    def remove_files(self, pattern: str) -> None:
        self.commands.append("remove-file")
        regex = re.compile(pattern)
        self.files = {f for f in self.files if not regex.search(f)}

    def remove_file(self, path: str) -> None:
        self.commands.append("remove-file")
        self.files.discard(path)
