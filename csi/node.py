"""CSI Node service: attach through a transport, format only blank devices, mount and publish.

Staging (filesystem): attach -> probe -> mkfs only if blank -> mount at the staging path.
Staging (block): attach only. Publishing bind-mounts the staging mount (filesystem) or the
device itself onto a file (block). Unpublish/unstage are idempotent and tolerate missing paths;
unstage detaches. Nothing here keeps state: devices are found again from the system.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc

from trellis.csi import capabilities, mounts
from trellis.csi.errors import CsiError, invalid, not_found, precondition
from trellis.csi.locks import KeyedLocks
from trellis.csi.logs import bind
from trellis.csi.metrics import NODE_OPERATIONS
from trellis.csi.params import ParameterError, parse_context
from trellis.csi.stubs import load
from trellis.csi.transport import AttachError, Transport

pb, pb_grpc = load()
if TYPE_CHECKING:
    _Base = object
else:
    _Base = pb_grpc.NodeServicer
log = logging.getLogger(__name__)
NodeRPC = pb.NodeServiceCapability.RPC


class NodeService(_Base):
    def __init__(
        self,
        node_id: str,
        topology: dict[str, str],
        transport: Transport,
        *,
        locks: KeyedLocks | None = None,
        mountinfo: str = "/proc/self/mountinfo",
    ) -> None:
        self.node_id = node_id
        self.topology = topology
        self.transport = transport
        self.locks = locks or KeyedLocks()
        self.mountinfo = mountinfo

    def _step(self, step: str, result: str) -> None:
        NODE_OPERATIONS.labels(self.transport.name, step, result).inc()

    def _mount_at(self, path: str) -> mounts.Mount | None:
        return mounts.mount_at(path, self.mountinfo)

    # -- info --------------------------------------------------------------------------------

    def NodeGetInfo(self, request: Any, context: Any) -> Any:
        return pb.NodeGetInfoResponse(
            node_id=self.node_id, accessible_topology=pb.Topology(segments=self.topology)
        )

    def NodeGetCapabilities(self, request: Any, context: Any) -> Any:
        rpcs = [
            NodeRPC.STAGE_UNSTAGE_VOLUME,
            NodeRPC.GET_VOLUME_STATS,
            NodeRPC.EXPAND_VOLUME,
            NodeRPC.VOLUME_CONDITION,
            NodeRPC.SINGLE_NODE_MULTI_WRITER,
        ]
        return pb.NodeGetCapabilitiesResponse(
            capabilities=[pb.NodeServiceCapability(rpc=NodeRPC(type=r)) for r in rpcs]
        )

    # -- stage -------------------------------------------------------------------------------

    def NodeStageVolume(self, request: Any, context: Any) -> Any:
        vol_id, staging = request.volume_id, request.staging_target_path
        _check_volume_request(request, staging, "staging target path")
        try:
            ctx = parse_context(request.volume_context)
        except ParameterError as exc:
            raise invalid(str(exc)) from None
        cap = request.volume_capability
        with self.locks.hold(vol_id):
            device = self._attach(vol_id, ctx)
            if capabilities.is_block(cap):
                return pb.NodeStageVolumeResponse()
            fs_type = cap.mount.fs_type or ctx.fs_type
            os.makedirs(staging, exist_ok=True)
            current = self._mount_at(staging)
            if current is not None:
                if os.path.realpath(current.source) != os.path.realpath(device):
                    raise CsiError(
                        grpc.StatusCode.ALREADY_EXISTS,
                        f"{staging} already holds {current.source}, not {device}",
                    )
                return pb.NodeStageVolumeResponse()
            self._format_if_blank(device, fs_type)
            read_only = cap.access_mode.mode in capabilities.READ_ONLY_MODES
            options = mounts.mount_options(fs_type, list(cap.mount.mount_flags), read_only)
            mounts.mount(device, staging, fs_type, options)
            self._step("mount", "ok")
            log.info("staged", extra={"device": device, "fs_type": fs_type})
        return pb.NodeStageVolumeResponse()

    def _attach(self, vol_id: str, ctx: Any) -> str:
        try:
            device = self.transport.attach(vol_id, ctx)
        except (AttachError, mounts.CommandFailed) as exc:
            self._step("attach", "error")
            raise CsiError(grpc.StatusCode.UNAVAILABLE, f"attaching {vol_id} failed: {exc}") from exc
        self._step("attach", "ok")
        bind(device=device)
        return device

    def _format_if_blank(self, device: str, fs_type: str) -> None:
        try:
            found = mounts.probe_filesystem(device)
        except (mounts.DeviceUnreadable, mounts.CommandFailed) as exc:
            self._step("probe", "error")
            # Never format what could not be read: the CO retries the whole stage later.
            raise CsiError(
                grpc.StatusCode.UNAVAILABLE, f"cannot tell whether {device} is blank: {exc}"
            ) from exc
        if found == fs_type:
            return
        if found:
            self._step("probe", "mismatch")
            raise precondition(f"{device} holds {found}, not {fs_type}; refusing to mount or format it")
        log.info("device is blank; formatting", extra={"fs_type": fs_type})
        try:
            mounts.make_filesystem(device, fs_type)
        except mounts.CommandFailed as exc:
            self._step("format", "error")
            raise CsiError(grpc.StatusCode.INTERNAL, f"mkfs failed: {exc}") from exc
        self._step("format", "ok")

    def NodeUnstageVolume(self, request: Any, context: Any) -> Any:
        vol_id, staging = request.volume_id, request.staging_target_path
        _check_id_and_path(vol_id, staging, "staging target path")
        with self.locks.hold(vol_id):
            while self._mount_at(staging) is not None:
                mounts.unmount(staging)
            try:
                self.transport.detach(vol_id)
            except (AttachError, mounts.CommandFailed) as exc:
                self._step("detach", "error")
                raise CsiError(grpc.StatusCode.INTERNAL, f"detaching {vol_id} failed: {exc}") from exc
            self._step("detach", "ok")
        return pb.NodeUnstageVolumeResponse()

    # -- publish -----------------------------------------------------------------------------

    def NodePublishVolume(self, request: Any, context: Any) -> Any:
        vol_id, target, staging = request.volume_id, request.target_path, request.staging_target_path
        _check_volume_request(request, target, "target path")
        if not staging:
            raise precondition("staging target path is required: the volume must be staged first")
        block = capabilities.is_block(request.volume_capability)
        read_only = (
            request.readonly or request.volume_capability.access_mode.mode in capabilities.READ_ONLY_MODES
        )
        with self.locks.hold(vol_id):
            if self._mount_at(target) is not None:
                return pb.NodePublishVolumeResponse()
            if block:
                source = self.transport.device(vol_id)
                if source is None:
                    raise precondition(f"volume {vol_id} is not staged on this node")
                Path(target).parent.mkdir(parents=True, exist_ok=True)
                if not os.path.exists(target):
                    Path(target).touch()
            else:
                if self._mount_at(staging) is None:
                    raise precondition(f"volume {vol_id} is not staged at {staging}")
                source = staging
                os.makedirs(target, exist_ok=True)
            mounts.bind_mount(source, target, read_only)
            log.info("published", extra={"read_only": read_only, "block": block})
        return pb.NodePublishVolumeResponse()

    def NodeUnpublishVolume(self, request: Any, context: Any) -> Any:
        vol_id, target = request.volume_id, request.target_path
        _check_id_and_path(vol_id, target, "target path")
        with self.locks.hold(vol_id):
            while self._mount_at(target) is not None:
                mounts.unmount(target)
            if os.path.isdir(target) and not os.path.islink(target):
                os.rmdir(target)
            elif os.path.lexists(target):
                os.unlink(target)
        return pb.NodeUnpublishVolumeResponse()

    # -- stats and expansion -----------------------------------------------------------------

    def NodeGetVolumeStats(self, request: Any, context: Any) -> Any:
        vol_id, path = request.volume_id, request.volume_path
        if not vol_id:
            raise invalid("volume id is required")
        if not path:
            raise invalid("volume path is required")
        if not os.path.exists(path):
            raise not_found(f"{path} does not exist")
        entry = self._mount_at(path)
        if entry is None:
            raise not_found(f"volume {vol_id} is not mounted at {path}")
        Unit = pb.VolumeUsage.Unit
        if not os.path.isdir(path):
            device = self.transport.device(vol_id)
            if device is None:
                return self._stats([], abnormal=f"the device of {vol_id} is gone")
            size = mounts.device_size(device)
            return self._stats([pb.VolumeUsage(unit=Unit.BYTES, total=size)])
        try:
            use = mounts.usage(path)
        except OSError as exc:
            return self._stats([], abnormal=f"stale mount at {path}: {exc.strerror}")
        usage = [
            pb.VolumeUsage(unit=Unit.BYTES, total=use.total, available=use.available, used=use.used),
            pb.VolumeUsage(
                unit=Unit.INODES, total=use.inodes, available=use.inodes_free, used=use.inodes_used
            ),
        ]
        if self.transport.device(vol_id) is None:
            return self._stats(usage, abnormal=f"the device of {vol_id} is no longer attached")
        return self._stats(usage)

    @staticmethod
    def _stats(usage: list[Any], abnormal: str = "") -> Any:
        condition = pb.VolumeCondition(abnormal=bool(abnormal), message=abnormal or "healthy")
        return pb.NodeGetVolumeStatsResponse(usage=usage, volume_condition=condition)

    def NodeExpandVolume(self, request: Any, context: Any) -> Any:
        vol_id, path = request.volume_id, request.volume_path
        if not vol_id:
            raise invalid("volume id is required")
        if not path:
            raise invalid("volume path is required")
        if not os.path.exists(path):
            raise not_found(f"{path} does not exist")
        with self.locks.hold(vol_id):
            device = self.transport.device(vol_id)
            if device is None:
                raise not_found(f"volume {vol_id} is not attached on this node")
            self.transport.refresh(vol_id, device)
            size = mounts.device_size(device)
            block = request.HasField("volume_capability") and capabilities.is_block(request.volume_capability)
            entry = self._mount_at(path)
            if not block and entry is not None and os.path.isdir(path):
                mounts.grow_filesystem(device, path, entry.fstype)
                log.info("filesystem grown", extra={"bytes": size})
        return pb.NodeExpandVolumeResponse(capacity_bytes=size)


def _check_id_and_path(vol_id: str, path: str, path_name: str) -> None:
    if not vol_id:
        raise invalid("volume id is required")
    if not path:
        raise invalid(f"{path_name} is required")


def _check_volume_request(request: Any, path: str, path_name: str) -> None:
    """The argument checks NodeStage and NodePublish share, in the order csi-sanity expects."""
    _check_id_and_path(request.volume_id, path, path_name)
    if not request.HasField("volume_capability"):
        raise invalid("volume capability is required")
    reason = capabilities.problem(request.volume_capability)
    if reason:
        raise invalid(reason)
