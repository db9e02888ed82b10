"""The ISO's iSCSI export on the RDS: /disk items of type file, driven through the shared CLI client.

The export is one command, ``/disk add type=file file-path=… slot=… iscsi-export=yes``; RouterOS
names the target itself (``iscsi-server-iqn``), which we read back. Items are found by slot, a
name we choose, so a retried or repeated reconcile never adds a second item for one image.
"""

from __future__ import annotations

from dataclasses import dataclass

from trellis.routeros.cli import ErrorKind, Find, Record, RouterOSCli, RouterOSError, eq, parse_bool
from trellis.routeros.ssh import TransportError

DISK = "/disk"
FILE = "/file"
DEFAULT_ISCSI_PORT = 3260


@dataclass(frozen=True)
class Export:
    item_id: str
    slot: str
    file_path: str
    exported: bool
    iqn: str | None
    port: int


def rds_path(path: str) -> str:
    """RouterOS file paths carry no leading slash (the first component is the pool's mount point)."""
    return path.lstrip("/")


def _export(record: Record) -> Export:
    port = record.get("iscsi-server-port") or ""
    return Export(
        item_id=record.get(".id", ""),
        slot=record.get("slot", ""),
        file_path=rds_path(record.get("file-path", "")),
        exported=parse_bool(record.get("iscsi-export", "no")),
        iqn=record.get("iscsi-server-iqn") or None,
        port=int(port) if port.isdigit() else DEFAULT_ISCSI_PORT,
    )


class RDSExports:
    def __init__(self, cli: RouterOSCli) -> None:
        self.cli = cli

    def find(self, slot: str) -> Export | None:
        records = self.cli.print(DISK, eq("slot", slot))
        return _export(records[0]) if records else None

    def ensure(self, slot: str, file_path: str) -> Export:
        """The file exported under ``slot``; added, or switched on, when it is not."""
        path = rds_path(file_path)
        current = self.find(slot)
        if current is not None and current.file_path != path:
            raise RouterOSError(
                f"disk slot {slot} already exists for {current.file_path}, not {path}", ErrorKind.EXISTS
            )
        if current is None:
            args: dict[str, str | bool] = {
                "type": "file",
                "file-path": path,
                "slot": slot,
                "iscsi-export": True,
            }
            try:
                self.cli.add(DISK, args)
            except TransportError as exc:
                if not exc.sent:
                    raise
                # The router may have run the add before the connection broke: look before retrying.
            current = self.find(slot)
            if current is None:
                raise RouterOSError(f"disk slot {slot} not found after /disk add", ErrorKind.FAILURE)
        if not current.exported:
            self.cli.set(DISK, Find(eq("slot", slot)), {"iscsi-export": True})
            current = self.find(slot)
            if current is None or not current.exported:
                raise RouterOSError(f"iscsi-export did not stay on for slot {slot}", ErrorKind.FAILURE)
        return current

    def remove(self, slot: str) -> None:
        """Stop exporting, then remove the disk item (the file stays: RouterOS never deletes it)."""
        if self.find(slot) is None:
            return
        self.cli.set(DISK, Find(eq("slot", slot)), {"iscsi-export": False})
        self.cli.remove(DISK, Find(eq("slot", slot)))

    def remove_file(self, file_path: str) -> None:
        self.cli.remove(FILE, Find(eq("name", rds_path(file_path))))
