"""Snapshots (EXPERIMENTAL): full copies made with ``/disk add copy-from=``, not exported.

``copy-from`` is known only from another driver's code and has not been confirmed on a real
RDS, so the whole feature can be switched off (driver flag ``--snapshots=false``, StorageClass
``allowCopy: "false"``). A snapshot's source volume and creation time live in its file name
(`naming.snapshot_file`) because RouterOS disks carry no metadata.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import grpc
from google.protobuf import timestamp_pb2

from trellis.csi import naming
from trellis.csi.errors import CsiError, invalid, not_found
from trellis.csi.logs import bind
from trellis.csi.pagination import paginate
from trellis.csi.rds import Disk
from trellis.csi.stubs import load
from trellis.routeros.cli import ErrorKind, RouterOSError
from trellis.routeros.ssh import TransportError

if TYPE_CHECKING:
    from trellis.csi.locks import KeyedLocks
    from trellis.csi.rds import DiskStore

pb, _ = load()
log = logging.getLogger(__name__)


def snapshot_message(disk: Disk) -> Any | None:
    parsed = naming.parse_snapshot_file(disk.file_path)
    if parsed is None or parsed.snapshot_id != disk.slot:
        return None
    return pb.Snapshot(
        size_bytes=disk.size,
        snapshot_id=disk.slot,
        source_volume_id=parsed.source_id,
        creation_time=timestamp_pb2.Timestamp(seconds=parsed.created),
        ready_to_use=True,
    )


class SnapshotsMixin:
    store: DiskStore
    locks: KeyedLocks
    snapshots_enabled: bool

    def _require_snapshots(self) -> None:
        if not self.snapshots_enabled:
            raise CsiError(grpc.StatusCode.UNIMPLEMENTED, "snapshots are disabled (--snapshots=false)")

    def CreateSnapshot(self, request: Any, context: Any) -> Any:
        self._require_snapshots()
        if not request.name:
            raise invalid("snapshot name is required")
        source = request.source_volume_id
        if not source:
            raise invalid("source volume id is required")
        snap_id = naming.snapshot_id(request.name)
        bind(volume_id=source, snapshot_id=snap_id)
        with self.locks.hold(snap_id, source):
            disks, _ = self.store.lookup([snap_id, source] if naming.is_volume_id(source) else [snap_id])
            if snap_id in disks:
                return self._existing_snapshot(disks[snap_id], source, request.name)
            if source not in disks:
                raise not_found(f"source volume {source} does not exist")
            src = disks[source]
            path = naming.snapshot_file(src.file_path, snap_id, source, int(time.time()))
            disk = self._copy(snap_id, path, src)
        message = snapshot_message(disk)
        log.info("snapshot created", extra={"file": disk.file_path})
        return pb.CreateSnapshotResponse(snapshot=message)

    def _existing_snapshot(self, disk: Disk, source: str, name: str) -> Any:
        message = snapshot_message(disk)
        if message is None or message.source_volume_id != source:
            raise CsiError(
                grpc.StatusCode.ALREADY_EXISTS,
                f"snapshot {disk.slot} for {name!r} exists for another source volume",
            )
        return pb.CreateSnapshotResponse(snapshot=message)

    def _copy(self, snap_id: str, path: str, src: Disk) -> Disk:
        try:
            self.store.create(snap_id, path, src.size, nqn=None, port=None, copy_from=src.slot)
        except TransportError as exc:
            if not exc.sent:
                raise
            disks, _ = self.store.lookup([snap_id])
            if snap_id in disks:
                return disks[snap_id]
            raise
        except RouterOSError as exc:
            if exc.kind is ErrorKind.EXISTS:
                disks, _ = self.store.lookup([snap_id])
                if snap_id in disks:
                    return disks[snap_id]
            try:
                self.store.remove_disk(snap_id)
                self.store.remove_file(path)
            except (RouterOSError, TransportError) as cleanup:
                log.error("cleanup after a failed snapshot did not finish", extra={"error": str(cleanup)})
            raise
        return Disk(slot=snap_id, file_path=path, size=src.size, exported=False, nqn=snap_id, port=None)

    def DeleteSnapshot(self, request: Any, context: Any) -> Any:
        self._require_snapshots()
        snap_id = request.snapshot_id
        if not snap_id:
            raise invalid("snapshot id is required")
        if not naming.is_snapshot_id(snap_id):
            return pb.DeleteSnapshotResponse()
        bind(snapshot_id=snap_id)
        with self.locks.hold(snap_id):
            self.store.remove_disk(snap_id)
            self.store.remove_files(naming.snapshot_file_pattern(snap_id))
        log.info("snapshot deleted")
        return pb.DeleteSnapshotResponse()

    def _snapshots(self, snapshot_id: str = "") -> list[tuple[Disk, Any]]:
        if snapshot_id:
            if not naming.is_snapshot_id(snapshot_id):
                return []
            disks = list(self.store.lookup([snapshot_id])[0].values())
        else:
            disks = self.store.list(naming.SNAPSHOT_PREFIX)
        pairs = [(d, snapshot_message(d)) for d in disks]
        return [(d, m) for d, m in pairs if m is not None]

    def ListSnapshots(self, request: Any, context: Any) -> Any:
        self._require_snapshots()
        found = self._snapshots(request.snapshot_id)
        if request.source_volume_id:
            found = [(d, m) for d, m in found if m.source_volume_id == request.source_volume_id]
        page, token = paginate(
            [d for d, _ in found], request.max_entries, request.starting_token, naming.is_snapshot_id
        )
        messages = {d.slot: m for d, m in found}
        return pb.ListSnapshotsResponse(
            entries=[pb.ListSnapshotsResponse.Entry(snapshot=messages[d.slot]) for d in page],
            next_token=token,
        )

    def GetSnapshot(self, request: Any, context: Any) -> Any:
        self._require_snapshots()
        if not request.snapshot_id:
            raise invalid("snapshot id is required")
        found = self._snapshots(request.snapshot_id)
        if not found:
            raise not_found(f"snapshot {request.snapshot_id} does not exist")
        return pb.GetSnapshotResponse(snapshot=found[0][1])
