"""The controller through gRPC against the RDS simulator over real SSH: what lands on the RDS."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import pytest

from tests.integration.csi.conftest import GIB, block_cap, create_request, disk_slots, file_names, mount_cap
from tests.support.csi_driver import BASE_PATH, Driver
from tests.support.rossim import RosSim
from trellis.csi import naming

pytestmark = pytest.mark.integration


def cli_commands(sim: RosSim, since: int) -> list[dict[str, Any]]:
    """Command lines received over SSH (a ``[find ...]`` inside a line is logged on its own)."""
    return [e for e in sim.control.log(since) if e["protocol"] == "ssh" and e["verb"] != "find"]


def test_create_and_delete_send_two_commands_each(driver: Driver, sim: RosSim, pb: Any) -> None:
    mark = sim.control.last_seq()
    vol = driver.controller.CreateVolume(create_request(pb, "pvc-two-commands", GIB)).volume
    created = cli_commands(sim, mark)
    assert [(e["menu"], e["verb"]) for e in created] == [("/disk", "print"), ("/disk", "add")], created
    disk = sim.control.disk(vol.volume_id)
    assert disk["file_path"] == f"{BASE_PATH}/{vol.volume_id}.img"
    assert disk["nqn"] == f"nqn.2000-02.com.mikrotik:{vol.volume_id}" and disk["nvme_tcp_export"]
    assert disk["size"] == vol.capacity_bytes == GIB
    assert len(vol.volume_id) <= 32

    mark = sim.control.last_seq()
    driver.controller.DeleteVolume(pb.DeleteVolumeRequest(volume_id=vol.volume_id))
    deleted = cli_commands(sim, mark)
    assert [(e["menu"], e["verb"]) for e in deleted] == [("/disk", "remove"), ("/file", "remove")], deleted
    assert vol.volume_id not in disk_slots(sim)
    assert disk["file_path"] not in file_names(sim), "the backing file must go with the disk"
    driver.controller.DeleteVolume(pb.DeleteVolumeRequest(volume_id=vol.volume_id))  # unknown now: still OK


def test_idempotent_create_and_size_conflict(driver: Driver, sim: RosSim, pb: Any) -> None:
    first = driver.controller.CreateVolume(create_request(pb, "pvc-idem", 2 * GIB)).volume
    again = driver.controller.CreateVolume(create_request(pb, "pvc-idem", 2 * GIB)).volume
    assert (again.volume_id, again.capacity_bytes) == (first.volume_id, first.capacity_bytes)
    assert dict(again.volume_context) == dict(first.volume_context)
    bigger = create_request(pb, "pvc-idem", 4 * GIB)
    bigger.capacity_range.limit_bytes = 4 * GIB
    with pytest.raises(grpc.RpcError) as info:
        driver.controller.CreateVolume(bigger)
    assert info.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert sim.control.disk(first.volume_id)["size"] == 2 * GIB
    driver.controller.DeleteVolume(pb.DeleteVolumeRequest(volume_id=first.volume_id))


def test_invalid_parameters_touch_nothing(driver: Driver, sim: RosSim, pb: Any) -> None:
    mark = sim.control.last_seq()
    for params in ({"nvmePort": "70000"}, {"basePath": "storage-pool/../x"}, {"fsTyp": "ext4"}):
        with pytest.raises(grpc.RpcError) as info:
            driver.controller.CreateVolume(create_request(pb, "pvc-bad", parameters=params))
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert next(iter(params)) in (info.value.details() or "")
    with pytest.raises(grpc.RpcError) as info:
        rwx_fs = [mount_cap(pb, "MULTI_NODE_MULTI_WRITER")]
        driver.controller.CreateVolume(create_request(pb, "pvc-rwx-fs", caps=rwx_fs))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert cli_commands(sim, mark) == []


def test_rwx_block_and_storage_class_overrides(driver: Driver, sim: RosSim, pb: Any) -> None:
    params = {"basePath": "storage-pool/kubevirt", "nqnPrefix": "nqn.2026-01.dev.trellis", "nvmePort": "4421"}
    caps = [block_cap(pb, "MULTI_NODE_MULTI_WRITER")]
    req = create_request(pb, "pvc-vm-disk", caps=caps, parameters=params)
    vol = driver.controller.CreateVolume(req).volume
    disk = sim.control.disk(vol.volume_id)
    assert disk["file_path"] == f"storage-pool/kubevirt/{vol.volume_id}.img"
    assert disk["nqn"] == f"nqn.2026-01.dev.trellis:{vol.volume_id}" and disk["nvme_tcp_port"] == 4421
    driver.controller.DeleteVolume(pb.DeleteVolumeRequest(volume_id=vol.volume_id))
    assert disk["file_path"] not in file_names(sim)


def test_list_get_capacity_expand(driver: Driver, sim: RosSim, pb: Any) -> None:
    ids = sorted(
        driver.controller.CreateVolume(create_request(pb, f"pvc-list-{i}")).volume.volume_id for i in range(3)
    )
    seen, token = [], ""
    while True:
        page = driver.controller.ListVolumes(pb.ListVolumesRequest(max_entries=2, starting_token=token))
        seen += [e.volume.volume_id for e in page.entries]
        token = page.next_token
        if not token:
            break
    assert set(ids) <= set(seen) and seen == sorted(seen)
    got = driver.controller.ControllerGetVolume(pb.ControllerGetVolumeRequest(volume_id=ids[0]))
    assert got.volume.capacity_bytes == GIB and not got.status.volume_condition.abnormal
    free = driver.controller.GetCapacity(pb.GetCapacityRequest()).available_capacity
    pool = next(d for d in sim.control.menu("disk") if d.get("slot") == "storage-pool")
    assert free == int(pool["free"])
    grown = driver.controller.ControllerExpandVolume(
        pb.ControllerExpandVolumeRequest(
            volume_id=ids[0], capacity_range=pb.CapacityRange(required_bytes=3 * GIB)
        )
    )
    assert grown.capacity_bytes == 3 * GIB and grown.node_expansion_required
    assert sim.control.disk(ids[0])["size"] == 3 * GIB
    for vid in ids:
        driver.controller.DeleteVolume(pb.DeleteVolumeRequest(volume_id=vid))


def test_parallel_creates_of_one_name_make_one_disk(driver: Driver, sim: RosSim, pb: Any) -> None:
    with ThreadPoolExecutor(8) as pool:
        calls = [
            pool.submit(driver.controller.CreateVolume, create_request(pb, "pvc-race")) for _ in range(8)
        ]
        vols = [c.result().volume for c in calls]
    assert len({v.volume_id for v in vols}) == 1
    assert sum(1 for s in disk_slots(sim) if s == vols[0].volume_id) == 1
    driver.controller.DeleteVolume(pb.DeleteVolumeRequest(volume_id=vols[0].volume_id))


def test_snapshots_and_clones(driver: Driver, sim: RosSim, pb: Any) -> None:
    src = driver.controller.CreateVolume(create_request(pb, "pvc-snap-src")).volume.volume_id
    backing = sim.control.disk(src)["backing_path"]
    with open(backing, "r+b") as f:
        f.write(b"trellis snapshot payload")
    snap_req = pb.CreateSnapshotRequest(name="snap-1", source_volume_id=src)
    snap = driver.controller.CreateSnapshot(snap_req).snapshot
    assert snap.source_volume_id == src and snap.ready_to_use and len(snap.snapshot_id) <= 32
    snap_disk = sim.control.disk(snap.snapshot_id)
    assert not snap_disk["nvme_tcp_export"], "snapshots are not exported"
    from_snap = pb.VolumeContentSource.SnapshotSource(snapshot_id=snap.snapshot_id)
    source = pb.VolumeContentSource(snapshot=from_snap)
    restored = driver.controller.CreateVolume(
        create_request(pb, "pvc-restored", volume_content_source=source)
    ).volume
    with open(sim.control.disk(restored.volume_id)["backing_path"], "rb") as f:
        assert f.read(24) == b"trellis snapshot payload"
    listed = driver.controller.ListSnapshots(pb.ListSnapshotsRequest(source_volume_id=src))
    assert [e.snapshot.snapshot_id for e in listed.entries] == [snap.snapshot_id]
    driver.controller.DeleteSnapshot(pb.DeleteSnapshotRequest(snapshot_id=snap.snapshot_id))
    assert snap.snapshot_id not in disk_slots(sim)
    assert not any(snap.snapshot_id in name for name in file_names(sim))
    for vid in (restored.volume_id, src):
        driver.controller.DeleteVolume(pb.DeleteVolumeRequest(volume_id=vid))


def test_foreign_disks_are_never_touched(driver: Driver, sim: RosSim, pb: Any) -> None:
    sim.ssh_exec("/disk add type=file file-path=storage-pool/other/keep.img file-size=1G slot=keep-me")
    driver.controller.DeleteVolume(pb.DeleteVolumeRequest(volume_id="keep-me"))
    assert "keep-me" in disk_slots(sim)
    listed = {e.volume.volume_id for e in driver.controller.ListVolumes(pb.ListVolumesRequest()).entries}
    assert "keep-me" not in listed
    assert naming.is_volume_id(naming.volume_id("keep-me"))
