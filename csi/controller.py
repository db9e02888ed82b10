"""CSI Controller service: volumes as file-backed RDS disks exported over NVMe/TCP.

Happy paths send at most two RouterOS commands: CreateVolume reads the slot and the pool's row in
one ``print`` then ``/disk add``s; DeleteVolume removes the disk and then its file, both by query
so a repeat is a no-op. Calls on one volume hold its lock; different volumes run in parallel.

When a ``/disk add`` may or may not have reached the RDS (connection lost after sending, slow
command), the outcome is read back before answering; when it failed on the RDS side the slot and
file are removed again, so a failed create never leaves a disk or a file behind.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import grpc
from google.protobuf import wrappers_pb2

from trellis.csi import capabilities, naming
from trellis.csi.errors import CsiError, invalid, not_found
from trellis.csi.locks import KeyedLocks
from trellis.csi.logs import bind
from trellis.csi.pagination import paginate
from trellis.csi.params import ParameterError, VolumeContext, VolumeParams, parse_parameters
from trellis.csi.rds import Disk, DiskStore
from trellis.csi.snapshots import SnapshotsMixin
from trellis.csi.stubs import load
from trellis.routeros.cli import ErrorKind, RouterOSError
from trellis.routeros.ssh import TransportError

pb, pb_grpc = load()
if TYPE_CHECKING:
    _Base = object
else:
    _Base = pb_grpc.ControllerServicer
log = logging.getLogger(__name__)
RPC = pb.ControllerServiceCapability.RPC


class ControllerService(SnapshotsMixin, _Base):
    def __init__(
        self,
        store: DiskStore,
        defaults: VolumeParams,
        topology: dict[str, str],
        *,
        snapshots: bool = True,
        locks: KeyedLocks | None = None,
    ) -> None:
        self.store = store
        self.defaults = defaults
        self.topology = topology
        self.snapshots_enabled = snapshots
        self.locks = locks or KeyedLocks()

    # -- capabilities ------------------------------------------------------------------------

    def capabilities(self) -> list[int]:
        rpcs = [
            RPC.CREATE_DELETE_VOLUME,
            RPC.LIST_VOLUMES,
            RPC.GET_CAPACITY,
            RPC.EXPAND_VOLUME,
            RPC.VOLUME_CONDITION,
            RPC.GET_VOLUME,
            RPC.SINGLE_NODE_MULTI_WRITER,
        ]
        if self.snapshots_enabled:
            # GetSnapshot is served but GET_SNAPSHOT (alpha) is not advertised: csi-sanity v5.4.0
            # rejects capabilities it does not know.
            rpcs += [RPC.CREATE_DELETE_SNAPSHOT, RPC.LIST_SNAPSHOTS, RPC.CLONE_VOLUME]
        return rpcs

    def ControllerGetCapabilities(self, request: Any, context: Any) -> Any:
        return pb.ControllerGetCapabilitiesResponse(
            capabilities=[
                pb.ControllerServiceCapability(rpc=pb.ControllerServiceCapability.RPC(type=rpc))
                for rpc in self.capabilities()
            ]
        )

    # -- helpers -----------------------------------------------------------------------------

    def _params(self, parameters: Any) -> VolumeParams:
        try:
            return parse_parameters(dict(parameters), self.defaults)
        except ParameterError as exc:
            raise invalid(str(exc)) from None

    def _context(self, params: VolumeParams, disk: Disk, fs_type: str) -> dict[str, str]:
        return VolumeContext(
            nqn=disk.nqn,
            nvme_address=params.nvme_address,
            nvme_port=disk.port or params.nvme_port,
            file_path=disk.file_path,
            fs_type=fs_type or params.fs_type,
            ctrl_loss_tmo=params.ctrl_loss_tmo,
            reconnect_delay=params.reconnect_delay,
            keep_alive_tmo=params.keep_alive_tmo,
        ).to_map()

    def _topology(self) -> list[Any]:
        return [pb.Topology(segments=self.topology)]

    def _condition(self, disk: Disk) -> Any:
        if not disk.exported:
            return pb.VolumeCondition(abnormal=True, message="the RDS disk is not exported over NVMe/TCP")
        return pb.VolumeCondition(abnormal=False, message="exported")

    # -- volumes -----------------------------------------------------------------------------

    def CreateVolume(self, request: Any, context: Any) -> Any:
        if not request.name:
            raise invalid("volume name is required")
        if not request.volume_capabilities:
            raise invalid("volume capabilities are required")
        reason = capabilities.first_problem(request.volume_capabilities)
        if reason:
            raise invalid(reason)
        params = self._params(request.parameters)
        required, limit = request.capacity_range.required_bytes, request.capacity_range.limit_bytes
        try:
            size = naming.round_capacity(required, limit)
        except naming.CapacityError as exc:
            raise CsiError(grpc.StatusCode.OUT_OF_RANGE, str(exc)) from None
        source = self._content_source(request, params)
        vol_id = naming.volume_id(request.name)
        bind(volume_id=vol_id)
        fs_type = next((c.mount.fs_type for c in request.volume_capabilities if c.HasField("mount")), "")
        with self.locks.hold(vol_id, *([source] if source else [])):
            slots = [vol_id, *([source] if source else [])]
            disks, pool = self.store.lookup(slots, params.pool)
            if vol_id in disks:
                return self._existing(disks[vol_id], request, params, fs_type)
            if source and source not in disks:
                raise not_found(f"content source {source} does not exist")
            if source:
                size = self._size_for_source(size, disks[source].size, limit)
            if pool is None:
                raise invalid(f"pool {params.pool!r} (first component of basePath) is not a disk on the RDS")
            if pool.free < size:
                raise CsiError(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"pool {pool.name} has {pool.free} bytes free, the volume needs {size}",
                )
            file_path = naming.volume_file(params.base_path, vol_id)
            nqn = naming.nqn(params.nqn_prefix, vol_id)
            disk = self._add(vol_id, file_path, size, nqn, params.nvme_port, source)
        log.info("volume created", extra={"size": disk.size, "file": disk.file_path})
        return pb.CreateVolumeResponse(
            volume=pb.Volume(
                volume_id=vol_id,
                capacity_bytes=disk.size,
                volume_context=self._context(params, disk, fs_type),
                content_source=request.volume_content_source if source else None,
                accessible_topology=self._topology(),
            )
        )

    def _content_source(self, request: Any, params: VolumeParams) -> str | None:
        if not request.HasField("volume_content_source"):
            return None
        src = request.volume_content_source
        if not self.snapshots_enabled or not params.allow_copy:
            raise invalid("cloning and restoring snapshots are disabled for this driver or StorageClass")
        if src.HasField("snapshot"):
            sid = src.snapshot.snapshot_id
            if not naming.is_snapshot_id(sid):
                raise not_found(f"snapshot {sid!r} does not exist")
            return str(sid)
        if src.HasField("volume"):
            vid = src.volume.volume_id
            if not naming.is_volume_id(vid):
                raise not_found(f"volume {vid!r} does not exist")
            return str(vid)
        raise invalid("unsupported volume content source")

    @staticmethod
    def _size_for_source(size: int, source_size: int, limit: int) -> int:
        if source_size <= size:
            return size
        if limit and source_size > limit:
            raise CsiError(
                grpc.StatusCode.OUT_OF_RANGE,
                f"the source holds {source_size} bytes, above limit_bytes {limit}",
            )
        return source_size

    def _existing(self, disk: Disk, request: Any, params: VolumeParams, fs_type: str) -> Any:
        required, limit = request.capacity_range.required_bytes, request.capacity_range.limit_bytes
        if not naming.fits(disk.size, required, limit):
            raise CsiError(
                grpc.StatusCode.ALREADY_EXISTS,
                f"volume {disk.slot} for {request.name!r} exists with {disk.size} bytes, "
                f"outside the requested range {required}..{limit or 'unbounded'}",
            )
        return pb.CreateVolumeResponse(
            volume=pb.Volume(
                volume_id=disk.slot,
                capacity_bytes=disk.size,
                volume_context=self._context(params, disk, fs_type),
                content_source=request.volume_content_source
                if request.HasField("volume_content_source")
                else None,
                accessible_topology=self._topology(),
            )
        )

    def _add(
        self, slot: str, file_path: str, size: int, nqn: str | None, port: int, source: str | None
    ) -> Disk:
        try:
            self.store.create(slot, file_path, size, nqn=nqn, port=port, copy_from=source)
        except TransportError as exc:
            if not exc.sent:
                raise
            log.warning("outcome of /disk add unknown, reading it back", extra={"error": str(exc)})
            disks, _ = self.store.lookup([slot])
            if slot in disks:
                return disks[slot]
            raise
        except RouterOSError as exc:
            if exc.kind is ErrorKind.EXISTS:
                disks, _ = self.store.lookup([slot])
                if slot in disks:
                    return disks[slot]
            self._clean_failed(slot, file_path)
            raise
        return Disk(
            slot=slot, file_path=file_path, size=size, exported=nqn is not None, nqn=nqn or slot, port=port
        )

    def _clean_failed(self, slot: str, file_path: str) -> None:
        """After a refused ``add``: the slot was free before, so whatever is there now is ours."""
        try:
            self.store.remove_disk(slot)
            self.store.remove_file(file_path)
        except (RouterOSError, TransportError) as exc:
            log.error("cleanup after a failed create did not finish", extra={"error": str(exc)})

    def DeleteVolume(self, request: Any, context: Any) -> Any:
        vol_id = request.volume_id
        if not vol_id:
            raise invalid("volume id is required")
        if not naming.is_volume_id(vol_id):
            log.info("not a volume id of this driver; nothing to delete")
            return pb.DeleteVolumeResponse()
        with self.locks.hold(vol_id):
            self.store.remove_disk(vol_id)
            self.store.remove_files(naming.volume_file_pattern(vol_id))
        log.info("volume deleted")
        return pb.DeleteVolumeResponse()

    def _get(self, vol_id: str) -> Disk:
        if not vol_id:
            raise invalid("volume id is required")
        if not naming.is_volume_id(vol_id):
            raise not_found(f"volume {vol_id!r} does not exist")
        disks, _ = self.store.lookup([vol_id])
        if vol_id not in disks:
            raise not_found(f"volume {vol_id} does not exist")
        return disks[vol_id]

    def ValidateVolumeCapabilities(self, request: Any, context: Any) -> Any:
        if not request.volume_id:
            raise invalid("volume id is required")
        if not request.volume_capabilities:
            raise invalid("volume capabilities are required")
        self._get(request.volume_id)
        reason = capabilities.first_problem(request.volume_capabilities)
        if reason is None and request.parameters:
            try:
                parse_parameters(dict(request.parameters), self.defaults)
            except ParameterError as exc:
                reason = str(exc)
        if reason:
            return pb.ValidateVolumeCapabilitiesResponse(message=reason)
        return pb.ValidateVolumeCapabilitiesResponse(
            confirmed=pb.ValidateVolumeCapabilitiesResponse.Confirmed(
                volume_context=request.volume_context,
                volume_capabilities=request.volume_capabilities,
                parameters=request.parameters,
            )
        )

    def ListVolumes(self, request: Any, context: Any) -> Any:
        disks = self.store.list(naming.VOLUME_PREFIX)
        page, token = paginate(disks, request.max_entries, request.starting_token, naming.is_volume_id)
        entries = [
            pb.ListVolumesResponse.Entry(
                volume=pb.Volume(
                    volume_id=d.slot, capacity_bytes=d.size, accessible_topology=self._topology()
                ),
                status=pb.ListVolumesResponse.VolumeStatus(volume_condition=self._condition(d)),
            )
            for d in page
        ]
        return pb.ListVolumesResponse(entries=entries, next_token=token)

    def ControllerGetVolume(self, request: Any, context: Any) -> Any:
        disk = self._get(request.volume_id)
        return pb.ControllerGetVolumeResponse(
            volume=pb.Volume(
                volume_id=disk.slot, capacity_bytes=disk.size, accessible_topology=self._topology()
            ),
            status=pb.ControllerGetVolumeResponse.VolumeStatus(volume_condition=self._condition(disk)),
        )

    def GetCapacity(self, request: Any, context: Any) -> Any:
        params = self._params(request.parameters)
        if request.HasField("accessible_topology"):
            segments = dict(request.accessible_topology.segments)
            if any(self.topology.get(k) != v for k, v in segments.items()):
                return pb.GetCapacityResponse(available_capacity=0)
        _, pool = self.store.lookup([], params.pool)
        free = pool.free if pool else 0
        return pb.GetCapacityResponse(
            available_capacity=free,
            maximum_volume_size=wrappers_pb2.Int64Value(value=free),
            minimum_volume_size=wrappers_pb2.Int64Value(value=naming.MIN_VOLUME_BYTES),
        )

    def ControllerExpandVolume(self, request: Any, context: Any) -> Any:
        if not request.volume_id:
            raise invalid("volume id is required")
        if not request.HasField("capacity_range"):
            raise invalid("capacity range is required")
        block = request.HasField("volume_capability") and capabilities.is_block(request.volume_capability)
        with self.locks.hold(request.volume_id):
            disk = self._get(request.volume_id)
            try:
                size = naming.round_capacity(
                    request.capacity_range.required_bytes, request.capacity_range.limit_bytes
                )
            except naming.CapacityError as exc:
                raise CsiError(grpc.StatusCode.OUT_OF_RANGE, str(exc)) from None
            if disk.size < size:
                self.store.resize(disk.slot, size)
                log.info("volume expanded", extra={"from": disk.size, "to": size})
            else:
                size = disk.size
        return pb.ControllerExpandVolumeResponse(capacity_bytes=size, node_expansion_required=not block)

    def ControllerPublishVolume(self, request: Any, context: Any) -> Any:
        raise CsiError(grpc.StatusCode.UNIMPLEMENTED, "the driver attaches volumes on the node")

    def ControllerUnpublishVolume(self, request: Any, context: Any) -> Any:
        raise CsiError(grpc.StatusCode.UNIMPLEMENTED, "the driver attaches volumes on the node")

    def ControllerModifyVolume(self, request: Any, context: Any) -> Any:
        raise CsiError(grpc.StatusCode.UNIMPLEMENTED, "volumes have no mutable parameters")
