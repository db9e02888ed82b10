"""Controller logic against an in-memory RDS: ids, idempotency, codes, command counts, cleanup."""

from __future__ import annotations

import threading
import time
from typing import Any

import grpc
import pytest

from tests.unit.csi.fakes import FakeRds
from trellis.csi import naming
from trellis.csi.controller import ControllerService
from trellis.csi.errors import CsiError, from_exception
from trellis.csi.params import VolumeParams
from trellis.csi.stubs import load
from trellis.routeros.ssh import TransportError

pb, _ = load()
GIB = 1 << 30
DEFAULTS = VolumeParams(
    base_path="storage-pool/csi", nqn_prefix="nqn.2000-02.com.mikrotik", nvme_address="10.0.0.5"
)
Mode = pb.VolumeCapability.AccessMode


def cap(block: bool = False, mode: int = Mode.SINGLE_NODE_WRITER, fs: str = "") -> Any:
    access = pb.VolumeCapability.AccessMode(mode=mode)
    if block:
        return pb.VolumeCapability(block=pb.VolumeCapability.BlockVolume(), access_mode=access)
    return pb.VolumeCapability(mount=pb.VolumeCapability.MountVolume(fs_type=fs), access_mode=access)


def create_req(name: str = "pvc-1", size: int = GIB, limit: int = 0, **kw: Any) -> Any:
    caps = kw.pop("caps", [cap()])
    return pb.CreateVolumeRequest(
        name=name,
        capacity_range=pb.CapacityRange(required_bytes=size, limit_bytes=limit),
        volume_capabilities=caps,
        **kw,
    )


@pytest.fixture
def rds() -> FakeRds:
    return FakeRds()


@pytest.fixture
def ctl(rds: FakeRds) -> ControllerService:
    return ControllerService(rds, DEFAULTS, {"topology.rds.csi.trellis.dev/rds": "lab"})


def code_of(call: Any) -> grpc.StatusCode:
    """The status the server would answer with (errors are mapped once, in the interceptor)."""
    with pytest.raises(Exception) as info:
        call()
    return from_exception(info.value).code


def test_create_uses_two_commands_and_derives_names(ctl: ControllerService, rds: FakeRds) -> None:
    vol = ctl.CreateVolume(create_req(size=GIB + 1), None).volume
    vid = naming.volume_id("pvc-1")
    assert vol.volume_id == vid and len(vid) <= 32
    assert vol.capacity_bytes == GIB + (1 << 20)  # rounded up to a whole MiB
    assert rds.commands == ["print", "add"]
    disk = rds.disks[vid]
    assert disk.file_path == f"storage-pool/csi/{vid}.img"
    assert disk.nqn == f"nqn.2000-02.com.mikrotik:{vid}"
    ctx = dict(vol.volume_context)
    assert ctx["nqn"] == disk.nqn and ctx["filePath"] == disk.file_path and ctx["nvmeAddress"] == "10.0.0.5"
    assert vol.accessible_topology[0].segments["topology.rds.csi.trellis.dev/rds"] == "lab"


def test_create_is_idempotent_and_detects_size_conflicts(ctl: ControllerService, rds: FakeRds) -> None:
    first = ctl.CreateVolume(create_req(size=GIB, limit=GIB), None).volume
    again = ctl.CreateVolume(create_req(size=GIB, limit=GIB), None).volume
    assert again.volume_id == first.volume_id and again.capacity_bytes == GIB
    assert dict(again.volume_context) == dict(first.volume_context)
    assert len(rds.disks) == 1
    assert code_of(lambda: ctl.CreateVolume(create_req(size=2 * GIB, limit=2 * GIB), None)) == (
        grpc.StatusCode.ALREADY_EXISTS
    )


def test_pool_full_is_resource_exhausted_without_commands_that_write(
    ctl: ControllerService, rds: FakeRds
) -> None:
    rds.pool_size = 2 * GIB
    assert (
        code_of(lambda: ctl.CreateVolume(create_req(size=3 * GIB), None))
        == grpc.StatusCode.RESOURCE_EXHAUSTED
    )
    assert rds.commands == ["print"] and not rds.disks and not rds.files


def test_refused_add_is_cleaned_up(ctl: ControllerService, rds: FakeRds) -> None:
    rds.create_fault = "no-space"
    assert code_of(lambda: ctl.CreateVolume(create_req(), None)) == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert not rds.disks and not rds.files, "a failed create must not leave a disk or a file"


def test_connection_lost_after_add_reads_back_the_outcome(ctl: ControllerService, rds: FakeRds) -> None:
    rds.create_fault = "drop-after"
    vol = ctl.CreateVolume(create_req(), None).volume
    assert vol.volume_id in rds.disks
    assert rds.commands == ["print", "add", "print"]


def test_connection_lost_before_add_is_unavailable_and_retry_creates(
    ctl: ControllerService, rds: FakeRds
) -> None:
    rds.create_fault = "drop-before"
    assert code_of(lambda: ctl.CreateVolume(create_req(), None)) == grpc.StatusCode.UNAVAILABLE
    assert not rds.disks
    assert ctl.CreateVolume(create_req(), None).volume.volume_id in rds.disks


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"nvmePort": "0"}, "nvmePort"),
        ({"nvmePort": "x"}, "not an integer"),
        ({"fsType": "btrfs"}, "fsType"),
        ({"basePath": "onlypool"}, "basePath"),
        ({"basePath": "pool/../etc"}, "basePath"),
        ({"nqnPrefix": "iqn.2000-01.x"}, "nqnPrefix"),
        ({"ctrlLossTmo": "-2"}, "ctrlLossTmo"),
        ({"reconnectDelay": "0"}, "reconnectDelay"),
        ({"keepAliveTmo": "-1"}, "keepAliveTmo"),
        ({"nvmeAddress": "bad host!"}, "nvmeAddress"),
        ({"fstype": "ext4"}, "unknown StorageClass parameter"),
        ({"allowCopy": "maybe"}, "allowCopy"),
    ],
)
def test_bad_parameters_are_invalid_argument(
    ctl: ControllerService, params: dict[str, str], fragment: str
) -> None:
    with pytest.raises(CsiError) as info:
        ctl.CreateVolume(create_req(parameters=params), None)
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert fragment in info.value.message


def test_parameters_override_defaults(ctl: ControllerService, rds: FakeRds) -> None:
    params = {
        "basePath": "/storage-pool/other/dir",
        "nqnPrefix": "nqn.2026-01.dev.trellis",
        "rdsAddress": "10.0.0.9",
        "nvmePort": "4421",
        "ctrlLossTmo": "600",
        "csi.storage.k8s.io/pvc/name": "ignored",
    }
    vol = ctl.CreateVolume(create_req(parameters=params), None).volume
    ctx = dict(vol.volume_context)
    assert ctx["filePath"] == f"storage-pool/other/dir/{vol.volume_id}.img"
    assert ctx["nqn"] == f"nqn.2026-01.dev.trellis:{vol.volume_id}"
    assert (ctx["nvmeAddress"], ctx["nvmePort"], ctx["ctrlLossTmo"]) == ("10.0.0.9", "4421", "600")


def test_access_modes(ctl: ControllerService) -> None:
    rwx = Mode.MULTI_NODE_MULTI_WRITER
    assert ctl.CreateVolume(create_req("block-rwx", caps=[cap(block=True, mode=rwx)]), None)
    assert code_of(lambda: ctl.CreateVolume(create_req("fs-rwx", caps=[cap(mode=rwx)]), None)) == (
        grpc.StatusCode.INVALID_ARGUMENT
    )
    for mode in (Mode.SINGLE_NODE_SINGLE_WRITER, Mode.MULTI_NODE_READER_ONLY, Mode.SINGLE_NODE_MULTI_WRITER):
        assert ctl.CreateVolume(create_req(f"m{mode}", caps=[cap(mode=mode)]), None)
    bad = Mode.MULTI_NODE_SINGLE_WRITER
    assert code_of(lambda: ctl.CreateVolume(create_req("msw", caps=[cap(mode=bad)]), None)) == (
        grpc.StatusCode.INVALID_ARGUMENT
    )


def test_delete_uses_two_commands_removes_file_and_ignores_foreign_ids(
    ctl: ControllerService, rds: FakeRds
) -> None:
    vid = ctl.CreateVolume(create_req(), None).volume.volume_id
    rds.files.add("storage-pool/csi/keep-me.img")
    rds.commands.clear()
    ctl.DeleteVolume(pb.DeleteVolumeRequest(volume_id=vid), None)
    assert rds.commands == ["remove", "remove-file"]
    assert not rds.disks and rds.files == {"storage-pool/csi/keep-me.img"}
    ctl.DeleteVolume(pb.DeleteVolumeRequest(volume_id=vid), None)  # again: still OK
    rds.commands.clear()
    ctl.DeleteVolume(pb.DeleteVolumeRequest(volume_id="storage-pool"), None)
    assert rds.commands == [], "an id this driver did not mint is never sent to the RDS"


def test_expand_grows_only(ctl: ControllerService, rds: FakeRds) -> None:
    vid = ctl.CreateVolume(create_req(), None).volume.volume_id
    grow = pb.ControllerExpandVolumeRequest(
        volume_id=vid, capacity_range=pb.CapacityRange(required_bytes=2 * GIB)
    )
    resp = ctl.ControllerExpandVolume(grow, None)
    assert resp.capacity_bytes == 2 * GIB and resp.node_expansion_required
    assert rds.disks[vid].size == 2 * GIB
    shrink = pb.ControllerExpandVolumeRequest(
        volume_id=vid, capacity_range=pb.CapacityRange(required_bytes=GIB)
    )
    assert ctl.ControllerExpandVolume(shrink, None).capacity_bytes == 2 * GIB
    assert rds.disks[vid].size == 2 * GIB
    missing = pb.ControllerExpandVolumeRequest(
        volume_id=naming.volume_id("nope"), capacity_range=pb.CapacityRange(required_bytes=GIB)
    )
    assert code_of(lambda: ctl.ControllerExpandVolume(missing, None)) == grpc.StatusCode.NOT_FOUND


def test_list_volumes_paginates_by_slot(ctl: ControllerService) -> None:
    ids = sorted(ctl.CreateVolume(create_req(f"v{i}"), None).volume.volume_id for i in range(5))
    seen, token = [], ""
    while True:
        page = ctl.ListVolumes(pb.ListVolumesRequest(max_entries=2, starting_token=token), None)
        seen += [e.volume.volume_id for e in page.entries]
        token = page.next_token
        if not token:
            break
    assert seen == ids
    assert code_of(lambda: ctl.ListVolumes(pb.ListVolumesRequest(starting_token="junk"), None)) == (
        grpc.StatusCode.ABORTED
    )


def test_validate_and_get_volume(ctl: ControllerService) -> None:
    vid = ctl.CreateVolume(create_req(), None).volume.volume_id
    ok = ctl.ValidateVolumeCapabilities(
        pb.ValidateVolumeCapabilitiesRequest(volume_id=vid, volume_capabilities=[cap()]), None
    )
    assert ok.HasField("confirmed")
    rwx_fs = ctl.ValidateVolumeCapabilities(
        pb.ValidateVolumeCapabilitiesRequest(
            volume_id=vid, volume_capabilities=[cap(mode=Mode.MULTI_NODE_MULTI_WRITER)]
        ),
        None,
    )
    assert not rwx_fs.HasField("confirmed") and "block" in rwx_fs.message
    unknown = pb.ValidateVolumeCapabilitiesRequest(
        volume_id=naming.volume_id("x"), volume_capabilities=[cap()]
    )
    assert code_of(lambda: ctl.ValidateVolumeCapabilities(unknown, None)) == grpc.StatusCode.NOT_FOUND
    got = ctl.ControllerGetVolume(pb.ControllerGetVolumeRequest(volume_id=vid), None)
    assert got.volume.volume_id == vid and not got.status.volume_condition.abnormal


def test_capacity_reports_pool_free(ctl: ControllerService, rds: FakeRds) -> None:
    ctl.CreateVolume(create_req(size=10 * GIB), None)
    resp = ctl.GetCapacity(pb.GetCapacityRequest(), None)
    assert resp.available_capacity == rds.pool_size - 10 * GIB


def test_snapshot_restore_and_clone(ctl: ControllerService, rds: FakeRds) -> None:
    src = ctl.CreateVolume(create_req("src"), None).volume.volume_id
    snap = ctl.CreateSnapshot(pb.CreateSnapshotRequest(name="s1", source_volume_id=src), None).snapshot
    assert snap.source_volume_id == src and snap.ready_to_use and len(snap.snapshot_id) <= 32
    again = ctl.CreateSnapshot(pb.CreateSnapshotRequest(name="s1", source_volume_id=src), None).snapshot
    assert again.snapshot_id == snap.snapshot_id and again.creation_time == snap.creation_time
    other = ctl.CreateVolume(create_req("other"), None).volume.volume_id
    conflict = pb.CreateSnapshotRequest(name="s1", source_volume_id=other)
    assert code_of(lambda: ctl.CreateSnapshot(conflict, None)) == grpc.StatusCode.ALREADY_EXISTS
    listed = ctl.ListSnapshots(pb.ListSnapshotsRequest(source_volume_id=src), None)
    assert [e.snapshot.snapshot_id for e in listed.entries] == [snap.snapshot_id]
    source = pb.VolumeContentSource(
        snapshot=pb.VolumeContentSource.SnapshotSource(snapshot_id=snap.snapshot_id)
    )
    restored = ctl.CreateVolume(create_req("restored", volume_content_source=source), None).volume
    assert restored.content_source.snapshot.snapshot_id == snap.snapshot_id
    clone_src = pb.VolumeContentSource(volume=pb.VolumeContentSource.VolumeSource(volume_id=src))
    assert ctl.CreateVolume(create_req("clone", volume_content_source=clone_src), None)
    ctl.DeleteSnapshot(pb.DeleteSnapshotRequest(snapshot_id=snap.snapshot_id), None)
    assert snap.snapshot_id not in rds.disks
    assert not any(snap.snapshot_id in f for f in rds.files)
    gone = pb.VolumeContentSource(
        snapshot=pb.VolumeContentSource.SnapshotSource(snapshot_id=snap.snapshot_id)
    )
    assert code_of(lambda: ctl.CreateVolume(create_req("r2", volume_content_source=gone), None)) == (
        grpc.StatusCode.NOT_FOUND
    )


def test_snapshots_can_be_switched_off(rds: FakeRds) -> None:
    ctl = ControllerService(rds, DEFAULTS, {}, snapshots=False)
    rpcs = {c.rpc.type for c in ctl.ControllerGetCapabilities(None, None).capabilities}
    assert pb.ControllerServiceCapability.RPC.CREATE_DELETE_SNAPSHOT not in rpcs
    assert pb.ControllerServiceCapability.RPC.CLONE_VOLUME not in rpcs
    src = ctl.CreateVolume(create_req("src"), None).volume.volume_id
    clone = pb.VolumeContentSource(volume=pb.VolumeContentSource.VolumeSource(volume_id=src))
    assert code_of(lambda: ctl.CreateVolume(create_req("c", volume_content_source=clone), None)) == (
        grpc.StatusCode.INVALID_ARGUMENT
    )
    on = ControllerService(rds, DEFAULTS, {})
    no_copy = create_req("c2", volume_content_source=clone, parameters={"allowCopy": "false"})
    assert code_of(lambda: on.CreateVolume(no_copy, None)) == grpc.StatusCode.INVALID_ARGUMENT


class SlowRds(FakeRds):
    """Records how many creates overlap in time."""

    def __init__(self) -> None:
        super().__init__()
        self.active = 0
        self.peak = 0
        self.guard = threading.Lock()

    def create(self, *args: Any, **kwargs: Any) -> None:
        with self.guard:
            self.active += 1
            self.peak = max(self.peak, self.active)
        time.sleep(0.05)
        try:
            super().create(*args, **kwargs)
        finally:
            with self.guard:
                self.active -= 1


def test_same_volume_serialises_different_volumes_run_in_parallel() -> None:
    rds = SlowRds()
    ctl = ControllerService(rds, DEFAULTS, {})
    same = [threading.Thread(target=ctl.CreateVolume, args=(create_req("one"), None)) for _ in range(4)]
    for t in same:
        t.start()
    for t in same:
        t.join()
    assert rds.peak == 1 and len(rds.disks) == 1
    assert rds.commands.count("add") == 1, "later calls must find the volume the first one created"
    rds.peak = 0
    many = [threading.Thread(target=ctl.CreateVolume, args=(create_req(f"p{i}"), None)) for i in range(4)]
    for t in many:
        t.start()
    for t in many:
        t.join()
    assert rds.peak > 1 and len(rds.disks) == 5


def test_transport_errors_map_to_unavailable(rds: FakeRds) -> None:
    def down(*args: Any, **kwargs: Any) -> Any:
        raise TransportError("connection refused", sent=False)

    rds.lookup = down  # type: ignore[method-assign]
    ctl = ControllerService(rds, DEFAULTS, {})
    assert code_of(lambda: ctl.CreateVolume(create_req(), None)) == grpc.StatusCode.UNAVAILABLE
