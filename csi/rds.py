"""File-backed disks on the RDS, read and written with the RouterOS CLI.

Each method is one RouterOS command, so the controller can count what it sends. The
command forms follow the reference (routeros.md §4); the GUESS-tagged ones (``copy-from``,
``file-size`` being settable) are isolated in `create` and `resize`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from trellis.routeros.cli import (
    Find,
    Record,
    RouterOSCli,
    any_of,
    eq,
    parse_bool,
    parse_size,
    regex,
)


@dataclass(frozen=True)
class Disk:
    slot: str
    file_path: str
    size: int
    exported: bool
    nqn: str
    port: int | None


@dataclass(frozen=True)
class Pool:
    name: str
    size: int
    free: int


def _number(record: Record, *keys: str) -> int | None:
    for key in keys:
        value = record.get(key, "")
        try:
            return parse_size(value)
        except ValueError:
            continue
    return None


def disk_from_record(record: Record) -> Disk:
    size = _number(record, "size", "file-size") or 0
    port = _number(record, "nvme-tcp-server-port")
    exported = parse_bool(record.get("nvme-tcp-export", "no") or "no")
    return Disk(
        slot=record.get("slot", ""),
        file_path=record.get("file-path", "").lstrip("/"),
        size=size,
        exported=exported,
        # RouterOS exports a disk under its slot name unless an NQN is set (DOC).
        nqn=record.get("nvme-tcp-server-nqn") or record.get("slot", ""),
        port=port,
    )


def pool_from_record(name: str, record: Record) -> Pool | None:
    size = _number(record, "size")
    free = _number(record, "free")
    if size is None or free is None:
        return None
    return Pool(name=name, size=size, free=free)


class DiskStore(Protocol):
    """What the controller needs from an RDS; `Rds` is the real one."""

    def lookup(
        self, slots: Sequence[str], pool: str | None = None
    ) -> tuple[dict[str, Disk], Pool | None]: ...
    def list(self, prefix: str) -> list[Disk]: ...
    def create(
        self,
        slot: str,
        file_path: str,
        size: int,
        *,
        nqn: str | None,
        port: int | None,
        copy_from: str | None = None,
    ) -> None: ...
    def resize(self, slot: str, size: int) -> None: ...
    def remove_disk(self, slot: str) -> None: ...
    def remove_files(self, pattern: str) -> None: ...
    def remove_file(self, path: str) -> None: ...


class Rds:
    def __init__(self, cli: RouterOSCli) -> None:
        self.cli = cli

    def lookup(self, slots: Sequence[str], pool: str | None = None) -> tuple[dict[str, Disk], Pool | None]:
        """The disks in ``slots`` that exist and the pool's row, in one ``print``."""
        conds = [eq("slot", s) for s in slots]
        if pool:
            conds += [eq("slot", pool), eq("mount-point", pool)]
        records = self.cli.print("/disk", any_of(*conds))
        disks: dict[str, Disk] = {}
        pool_row: Pool | None = None
        for record in records:
            slot = record.get("slot", "")
            if slot in slots:
                disks[slot] = disk_from_record(record)
            elif pool and pool in (slot, record.get("mount-point", "")):
                pool_row = pool_from_record(pool, record) or pool_row
        return disks, pool_row

    def list(self, prefix: str) -> list[Disk]:
        records = self.cli.print("/disk", regex("slot", "^" + prefix))
        return sorted(
            (disk_from_record(r) for r in records if r.get("slot", "").startswith(prefix)),
            key=lambda d: d.slot,
        )

    def create(
        self,
        slot: str,
        file_path: str,
        size: int,
        *,
        nqn: str | None,
        port: int | None,
        copy_from: str | None = None,
    ) -> None:
        """``/disk add type=file ...``; exported over NVMe/TCP when ``nqn`` is given.

        ``copy_from`` (a slot) fills the new file from another disk; that argument is only known
        from another driver's code and is unconfirmed on hardware (GUESS).
        """
        args: dict[str, str | int | bool | Find] = {"type": "file"}
        if copy_from is not None:
            args["copy-from"] = Find(eq("slot", copy_from))
        args.update({"file-path": file_path, "file-size": size, "slot": slot})
        if nqn is not None:
            args.update(
                {"nvme-tcp-export": True, "nvme-tcp-server-port": port or 4420, "nvme-tcp-server-nqn": nqn}
            )
        self.cli.add("/disk", args)

    def resize(self, slot: str, size: int) -> None:
        self.cli.set("/disk", Find(eq("slot", slot)), {"file-size": size})

    def remove_disk(self, slot: str) -> None:
        self.cli.remove("/disk", Find(eq("slot", slot)))

    def remove_files(self, pattern: str) -> None:
        """Remove the files whose name matches the RouterOS regex ``pattern`` (none: no-op)."""
        self.cli.remove("/file", Find(regex("name", pattern)))

    def remove_file(self, path: str) -> None:
        self.cli.remove("/file", Find(eq("name", path.lstrip("/"))))
