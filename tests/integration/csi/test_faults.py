"""Faults on the RDS side: dropped SSH, pool full, reboot, slow commands, refused commands.

Each case checks the gRPC code the driver answers with and that the simulator holds no disk or
file that no volume owns afterwards.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from tests.integration.csi.conftest import GIB, create_request, disk_slots, files_under
from tests.support.csi_driver import Driver, running_driver
from tests.support.rossim import RosSim
from tests.support.wait import wait_for
from trellis.csi import naming

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def driver(sim: RosSim, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Driver]:
    args = ["--ssh-command-timeout", "1", "--ssh-connect-timeout", "1", "--ssh-max-attempts", "3"]
    with running_driver(sim, tmp_path_factory.mktemp("csi"), extra_args=args) as drv:
        yield drv


@pytest.fixture(autouse=True)
def _clean_faults(sim: RosSim) -> Iterator[None]:
    sim.control.clear_faults()
    yield
    sim.control.clear_faults()


def healthz(driver: Driver) -> int:
    """The status of the plugin's own /healthz (what kubelet's liveness probe asks)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{driver.metrics_port}/healthz", timeout=30) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def assert_no_orphans(sim: RosSim) -> None:
    """Every csi-/snap- file on the RDS belongs to a disk, and every disk has its file."""
    root = sim.data_dir / "files"
    slots = {s for s in disk_slots(sim) if s.startswith(("csi-", "snap-"))}
    owners = {Path(f).name.split("--")[0].removesuffix(".img") for f in files_under(root)}
    assert owners == slots, f"files without disks: {owners - slots}; disks without files: {slots - owners}"


def code(call: Any) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value.code()


def test_connection_dropped_after_add_ran(driver: Driver, sim: RosSim, pb: Any) -> None:
    sim.control.drop_after(
        1, protocol="ssh", when="after"
    )  # the print passes, the add runs, the reply is lost
    vol = driver.controller.CreateVolume(create_request(pb, "pvc-drop-after")).volume
    assert vol.volume_id in disk_slots(sim)
    assert sim.control.disk(vol.volume_id)["nvme_tcp_export"]
    assert_no_orphans(sim)
    driver.controller.DeleteVolume(pb.DeleteVolumeRequest(volume_id=vol.volume_id))


def test_connection_dropped_before_add_ran(driver: Driver, sim: RosSim, pb: Any) -> None:
    sim.control.drop_after(1, protocol="ssh", when="before")
    req = create_request(pb, "pvc-drop-before")
    assert code(lambda: driver.controller.CreateVolume(req)) == grpc.StatusCode.UNAVAILABLE
    assert naming.volume_id("pvc-drop-before") not in disk_slots(sim)
    assert_no_orphans(sim)
    vol = driver.controller.CreateVolume(req).volume  # the CO's retry
    assert vol.volume_id in disk_slots(sim)
    driver.controller.DeleteVolume(pb.DeleteVolumeRequest(volume_id=vol.volume_id))
    assert_no_orphans(sim)


def test_connection_dropped_during_delete_is_retried(driver: Driver, sim: RosSim, pb: Any) -> None:
    vol = driver.controller.CreateVolume(create_request(pb, "pvc-drop-delete")).volume
    sim.control.drop_after(0, protocol="ssh", when="after")  # the disk goes, the reply is lost
    driver.controller.DeleteVolume(pb.DeleteVolumeRequest(volume_id=vol.volume_id))
    assert vol.volume_id not in disk_slots(sim)
    assert_no_orphans(sim)


def test_pool_full(driver: Driver, sim: RosSim, pb: Any) -> None:
    sim.control.pool_full(True)
    req = create_request(pb, "pvc-full", 5 * GIB)
    assert code(lambda: driver.controller.CreateVolume(req)) == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert naming.volume_id("pvc-full") not in disk_slots(sim)
    assert_no_orphans(sim)
    sim.control.pool_full(False)
    too_big = create_request(pb, "pvc-too-big", 200 * GIB)  # the pool holds 100 GiB
    assert code(lambda: driver.controller.CreateVolume(too_big)) == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert_no_orphans(sim)


def test_refused_add_leaves_nothing(driver: Driver, sim: RosSim, pb: Any) -> None:
    sim.control.fail_next("failure: execution error", menu="/disk", verb="add")
    req = create_request(pb, "pvc-refused")
    assert code(lambda: driver.controller.CreateVolume(req)) == grpc.StatusCode.INTERNAL
    assert naming.volume_id("pvc-refused") not in disk_slots(sim)
    assert_no_orphans(sim)


def test_rds_reboot(driver: Driver, sim: RosSim, pb: Any) -> None:
    vol = driver.controller.CreateVolume(create_request(pb, "pvc-before-reboot")).volume
    assert healthz(driver) == 200
    time.sleep(5.1)  # let the Probe cache expire so it checks the RDS again
    sim.control.reboot(down_seconds=6)
    assert driver.identity.Probe(pb.ProbeRequest()).ready.value is False
    assert healthz(driver) == 503, "kubelet's liveness probe sees the plugin's own Probe"
    req = create_request(pb, "pvc-during-reboot")
    assert code(lambda: driver.controller.CreateVolume(req)) == grpc.StatusCode.UNAVAILABLE

    def recovered() -> bool:
        try:
            driver.controller.CreateVolume(req)
            return True
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.UNAVAILABLE
            return False

    wait_for(recovered, timeout=30, interval=0.5, what="CreateVolume after the RDS is back")
    wait_for(lambda: healthz(driver) == 200, timeout=30, interval=0.5, what="/healthz 200 again")
    assert {vol.volume_id, naming.volume_id("pvc-during-reboot")} <= disk_slots(sim)
    assert_no_orphans(sim)
    for vid in (vol.volume_id, naming.volume_id("pvc-during-reboot")):
        driver.controller.DeleteVolume(pb.DeleteVolumeRequest(volume_id=vid))


def test_slow_commands_time_out_and_recover(driver: Driver, sim: RosSim, pb: Any) -> None:
    sim.control.set_latency(2500, protocol="ssh")
    req = create_request(pb, "pvc-slow")
    assert code(lambda: driver.controller.CreateVolume(req)) == grpc.StatusCode.DEADLINE_EXCEEDED
    sim.control.set_latency(0)
    time.sleep(3)  # commands that were still sleeping on the RDS finish
    vol = driver.controller.CreateVolume(req).volume
    assert vol.volume_id in disk_slots(sim)
    assert_no_orphans(sim)
    driver.controller.DeleteVolume(pb.DeleteVolumeRequest(volume_id=vol.volume_id))
    assert_no_orphans(sim)
    assert driver.metric("trellis_csi_routeros_commands_total", outcome="timeout") > 0
