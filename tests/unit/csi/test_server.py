"""The gRPC server over a real unix socket: identity, error mapping, metrics and naming rules."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from tests.unit.csi.fakes import FakeRds
from trellis.csi import DRIVER_NAME, metrics, naming
from trellis.csi.controller import ControllerService
from trellis.csi.identity import IdentityService
from trellis.csi.params import VolumeParams
from trellis.csi.server import build_server
from trellis.csi.stubs import load

pb, pb_grpc = load()
DEFAULTS = VolumeParams(
    base_path="storage-pool/csi", nqn_prefix="nqn.2000-02.com.mikrotik", nvme_address="10.0.0.5"
)


@pytest.fixture
def channel(tmp_path: Path) -> Iterator[grpc.Channel]:
    state = {"up": True}

    def check() -> None:
        if not state["up"]:
            raise ConnectionError("down")

    identity = IdentityService(controller=True, check=check)
    server = build_server(
        f"unix://{tmp_path}/csi.sock",
        identity=identity,
        controller=ControllerService(FakeRds(), DEFAULTS, {}),
    )
    server.start()
    with grpc.insecure_channel(f"unix://{tmp_path}/csi.sock") as chan:
        chan.state = state  # type: ignore[attr-defined]
        yield chan
    server.stop(0)


def test_identity(channel: grpc.Channel) -> None:
    stub = pb_grpc.IdentityStub(channel)
    info = stub.GetPluginInfo(pb.GetPluginInfoRequest())
    assert info.name == DRIVER_NAME and info.vendor_version
    caps = {
        c.service.type for c in stub.GetPluginCapabilities(pb.GetPluginCapabilitiesRequest()).capabilities
    }
    service = pb.PluginCapability.Service
    assert {service.CONTROLLER_SERVICE, service.VOLUME_ACCESSIBILITY_CONSTRAINTS} <= caps
    assert stub.Probe(pb.ProbeRequest()).ready.value is True


def test_probe_reflects_rds_reachability(tmp_path: Path) -> None:
    identity = IdentityService(controller=True, check=lambda: (_ for _ in ()).throw(ConnectionError("down")))
    assert identity.ready() is False


def test_errors_become_status_codes_and_metrics(channel: grpc.Channel) -> None:
    stub = pb_grpc.ControllerStub(channel)
    before = (
        metrics.REGISTRY.get_sample_value(
            "trellis_csi_operations_total", {"method": "CreateVolume", "code": "INVALID_ARGUMENT"}
        )
        or 0
    )
    with pytest.raises(grpc.RpcError) as info:
        stub.CreateVolume(pb.CreateVolumeRequest(name=""))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "name" in (info.value.details() or "")
    after = metrics.REGISTRY.get_sample_value(
        "trellis_csi_operations_total", {"method": "CreateVolume", "code": "INVALID_ARGUMENT"}
    )
    assert after == before + 1


def test_ids_are_short_deterministic_and_distinct() -> None:
    names = [f"pvc-{i:036d}" for i in range(200)] + ["x" * 128, "sanity-Ü"]
    ids = [naming.volume_id(n) for n in names]
    assert all(len(i) == 32 and naming.is_volume_id(i) for i in ids)
    assert len(set(ids)) == len(ids)
    assert naming.volume_id("a") == naming.volume_id("a")
    assert naming.is_snapshot_id(naming.snapshot_id("a")) and len(naming.snapshot_id("a")) == 32


def test_capacity_rounding() -> None:
    gib, mib = 1 << 30, 1 << 20
    assert naming.round_capacity(0, 0) == gib
    assert naming.round_capacity(1, 0) == gib
    assert naming.round_capacity(gib + 1, 0) == gib + mib
    assert naming.round_capacity(5 * gib, 5 * gib) == 5 * gib
    with pytest.raises(naming.CapacityError):
        naming.round_capacity(0, gib // 2)
    with pytest.raises(naming.CapacityError):
        naming.round_capacity(2 * gib, gib)
    path = naming.snapshot_file(
        "storage-pool/csi/csi-1.img", naming.snapshot_id("s"), naming.volume_id("v"), 17
    )
    parsed = naming.parse_snapshot_file(path)
    assert parsed is not None and parsed.source_id == naming.volume_id("v") and parsed.created == 17
