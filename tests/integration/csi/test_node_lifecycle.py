"""Real filesystems through the node service (loop transport, as root): data survives restaging,
online expansion grows the mounted filesystem, block volumes publish as device files."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import grpc
import pytest

from tests.integration.csi.conftest import GIB, block_cap, create_request, mount_cap
from tests.support.csi_driver import Driver
from tests.support.rossim import RosSim
from trellis.csi import mounts

pytestmark = [pytest.mark.integration, pytest.mark.root]


@pytest.fixture(autouse=True)
def _root() -> None:
    if os.geteuid() != 0:
        pytest.skip("losetup, mkfs and mount need root")


def stage(driver: Driver, pb: Any, vol: Any, staging: Path, cap: Any) -> None:
    driver.node.NodeStageVolume(
        pb.NodeStageVolumeRequest(
            volume_id=vol.volume_id,
            staging_target_path=str(staging),
            volume_capability=cap,
            volume_context=vol.volume_context,
        )
    )


def publish(
    driver: Driver, pb: Any, vol: Any, staging: Path, target: Path, cap: Any, ro: bool = False
) -> None:
    driver.node.NodePublishVolume(
        pb.NodePublishVolumeRequest(
            volume_id=vol.volume_id,
            staging_target_path=str(staging),
            target_path=str(target),
            volume_capability=cap,
            volume_context=vol.volume_context,
            readonly=ro,
        )
    )


def unpublish(driver: Driver, pb: Any, vol: Any, target: Path) -> None:
    driver.node.NodeUnpublishVolume(
        pb.NodeUnpublishVolumeRequest(volume_id=vol.volume_id, target_path=str(target))
    )


def unstage(driver: Driver, pb: Any, vol: Any, staging: Path) -> None:
    driver.node.NodeUnstageVolume(
        pb.NodeUnstageVolumeRequest(volume_id=vol.volume_id, staging_target_path=str(staging))
    )


def has_capability(bit: int) -> bool:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapEff:"):
            return bool(int(line.split()[1], 16) >> bit & 1)
    return False


CAP_SYS_RESOURCE = 24  # the ext4 online-resize ioctl needs it; some sandboxes drop it


def df_bytes(path: Path) -> int:
    out = subprocess.run(
        ["df", "--output=size", "-B1", str(path)], capture_output=True, text=True, check=True
    )
    return int(out.stdout.split()[-1])


@pytest.mark.parametrize("fs", ["ext4", "xfs"])
def test_filesystem_lifecycle_keeps_data(
    driver: Driver, sim: RosSim, pb: Any, tmp_path: Path, fs: str
) -> None:
    cap = mount_cap(pb, fs=fs, flags=("noatime",))
    vol = driver.controller.CreateVolume(create_request(pb, f"pvc-life-{fs}", GIB, caps=[cap])).volume
    staging, target = tmp_path / "staging", tmp_path / "pods" / "target"
    stage(driver, pb, vol, staging, cap)
    stage(driver, pb, vol, staging, cap)  # idempotent
    entry = mounts.mount_at(staging)
    assert entry is not None and entry.fstype == fs and "noatime" in entry.options
    publish(driver, pb, vol, staging, target, cap)
    publish(driver, pb, vol, staging, target, cap)  # idempotent
    (target / "data.txt").write_text("written before restaging")
    unpublish(driver, pb, vol, target)
    assert not target.exists(), "NodeUnpublish removes the target it created"
    unstage(driver, pb, vol, staging)
    unstage(driver, pb, vol, staging)  # idempotent
    assert mounts.mount_at(staging) is None

    stage(driver, pb, vol, staging, cap)
    publish(driver, pb, vol, staging, target, cap)
    assert (target / "data.txt").read_text() == "written before restaging", "restaging must not reformat"
    stats = driver.node.NodeGetVolumeStats(
        pb.NodeGetVolumeStatsRequest(volume_id=vol.volume_id, volume_path=str(target))
    )
    units = {u.unit: u for u in stats.usage}
    assert units[pb.VolumeUsage.Unit.BYTES].total == df_bytes(target)
    assert units[pb.VolumeUsage.Unit.INODES].total > 0
    assert not stats.volume_condition.abnormal
    unpublish(driver, pb, vol, target)
    unstage(driver, pb, vol, staging)
    driver.controller.DeleteVolume(pb.DeleteVolumeRequest(volume_id=vol.volume_id))


@pytest.mark.parametrize("fs", ["xfs", "ext4"])
def test_online_expansion_1_to_2_gib(driver: Driver, pb: Any, tmp_path: Path, fs: str) -> None:
    if fs == "ext4" and not has_capability(CAP_SYS_RESOURCE):
        pytest.skip(
            "ext4 online resize needs CAP_SYS_RESOURCE, which this environment drops (xfs case grows)"
        )
    cap = mount_cap(pb, fs=fs)
    vol = driver.controller.CreateVolume(create_request(pb, f"pvc-grow-{fs}", GIB, caps=[cap])).volume
    staging, target = tmp_path / "staging", tmp_path / "target"
    stage(driver, pb, vol, staging, cap)
    publish(driver, pb, vol, staging, target, cap)
    (target / "data.txt").write_text("kept across growth")
    size_before = df_bytes(target)
    grown = driver.controller.ControllerExpandVolume(
        pb.ControllerExpandVolumeRequest(
            volume_id=vol.volume_id, capacity_range=pb.CapacityRange(required_bytes=2 * GIB)
        )
    )
    assert grown.capacity_bytes == 2 * GIB and grown.node_expansion_required
    resp = driver.node.NodeExpandVolume(
        pb.NodeExpandVolumeRequest(
            volume_id=vol.volume_id,
            volume_path=str(target),
            capacity_range=pb.CapacityRange(required_bytes=2 * GIB),
            staging_target_path=str(staging),
            volume_capability=cap,
        )
    )
    assert resp.capacity_bytes == 2 * GIB
    size_after = df_bytes(target)
    assert size_after > size_before * 1.8, (size_before, size_after)
    assert (target / "data.txt").read_text() == "kept across growth"
    unpublish(driver, pb, vol, target)
    unstage(driver, pb, vol, staging)
    driver.controller.DeleteVolume(pb.DeleteVolumeRequest(volume_id=vol.volume_id))


def test_read_only_publish(driver: Driver, pb: Any, tmp_path: Path) -> None:
    cap = mount_cap(pb)
    vol = driver.controller.CreateVolume(create_request(pb, "pvc-ro", GIB, caps=[cap])).volume
    staging, target = tmp_path / "staging", tmp_path / "ro"
    stage(driver, pb, vol, staging, cap)
    publish(driver, pb, vol, staging, target, cap, ro=True)
    with pytest.raises(OSError):
        (target / "nope").write_text("x")
    unpublish(driver, pb, vol, target)
    unstage(driver, pb, vol, staging)
    driver.controller.DeleteVolume(pb.DeleteVolumeRequest(volume_id=vol.volume_id))


def test_block_volume_publishes_the_device(driver: Driver, sim: RosSim, pb: Any, tmp_path: Path) -> None:
    cap = block_cap(pb, "MULTI_NODE_MULTI_WRITER")
    vol = driver.controller.CreateVolume(create_request(pb, "pvc-block", GIB, caps=[cap])).volume
    staging, target = tmp_path / "staging", tmp_path / "dev" / "block"
    staging.mkdir()
    stage(driver, pb, vol, staging, cap)
    publish(driver, pb, vol, staging, target, cap)
    with open(target, "r+b") as dev:
        dev.write(b"raw block payload")
        dev.flush()
        os.fsync(dev.fileno())
        assert os.lseek(dev.fileno(), 0, os.SEEK_END) == GIB
    stats = driver.node.NodeGetVolumeStats(
        pb.NodeGetVolumeStatsRequest(volume_id=vol.volume_id, volume_path=str(target))
    )
    assert stats.usage[0].total == GIB
    unpublish(driver, pb, vol, target)
    assert not target.exists()
    unstage(driver, pb, vol, staging)
    with open(sim.control.disk(vol.volume_id)["backing_path"], "rb") as f:
        assert f.read(17) == b"raw block payload"
    driver.controller.DeleteVolume(pb.DeleteVolumeRequest(volume_id=vol.volume_id))


def test_device_that_cannot_be_read_is_never_formatted(
    driver: Driver, sim: RosSim, pb: Any, tmp_path: Path
) -> None:
    cap = mount_cap(pb)
    vol = driver.controller.CreateVolume(create_request(pb, "pvc-unreadable", GIB, caps=[cap])).volume
    backing = Path(sim.control.disk(vol.volume_id)["backing_path"])
    backing.unlink()  # the transport cannot attach it: the stage fails before any probe or mkfs
    with pytest.raises(grpc.RpcError) as info:
        stage(driver, pb, vol, tmp_path / "staging", cap)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    driver.controller.DeleteVolume(pb.DeleteVolumeRequest(volume_id=vol.volume_id))


def test_foreign_filesystem_is_refused(driver: Driver, sim: RosSim, pb: Any, tmp_path: Path) -> None:
    cap = mount_cap(pb, fs="ext4")
    vol = driver.controller.CreateVolume(create_request(pb, "pvc-xfs-inside", GIB, caps=[cap])).volume
    backing = sim.control.disk(vol.volume_id)["backing_path"]
    subprocess.run(["mkfs.xfs", "-q", backing], check=True)
    with pytest.raises(grpc.RpcError) as info:
        stage(driver, pb, vol, tmp_path / "staging", cap)
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "xfs" in (info.value.details() or "")
    out = subprocess.run(
        ["blkid", "-p", "-o", "value", "-s", "TYPE", backing], capture_output=True, text=True
    )
    assert out.stdout.strip() == "xfs", "the existing filesystem was left alone"
    unstage(driver, pb, vol, tmp_path / "staging")
    driver.controller.DeleteVolume(pb.DeleteVolumeRequest(volume_id=vol.volume_id))
