"""One RDS simulator and one driver process per test module."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.csi_driver import Driver, load_stubs, running_driver
from tests.support.rossim import RosSim, running_rossim

GIB = 1 << 30


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RosSim]:
    with running_rossim(tmp_path_factory.mktemp("rds"), tls=False, pool_size="100G") as rds:
        yield rds


@pytest.fixture(scope="module")
def driver(sim: RosSim, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Driver]:
    with running_driver(sim, tmp_path_factory.mktemp("csi")) as drv:
        yield drv


@pytest.fixture
def pb() -> Any:
    return load_stubs()[0]


def mount_cap(
    pb: Any, mode: str = "SINGLE_NODE_WRITER", fs: str = "ext4", flags: tuple[str, ...] = ()
) -> Any:
    return pb.VolumeCapability(
        mount=pb.VolumeCapability.MountVolume(fs_type=fs, mount_flags=list(flags)),
        access_mode=pb.VolumeCapability.AccessMode(mode=getattr(pb.VolumeCapability.AccessMode, mode)),
    )


def block_cap(pb: Any, mode: str = "SINGLE_NODE_WRITER") -> Any:
    return pb.VolumeCapability(
        block=pb.VolumeCapability.BlockVolume(),
        access_mode=pb.VolumeCapability.AccessMode(mode=getattr(pb.VolumeCapability.AccessMode, mode)),
    )


def create_request(pb: Any, name: str, size: int = GIB, caps: list[Any] | None = None, **kw: Any) -> Any:
    return pb.CreateVolumeRequest(
        name=name,
        capacity_range=pb.CapacityRange(required_bytes=size),
        volume_capabilities=caps or [mount_cap(pb)],
        **kw,
    )


def disk_slots(sim: RosSim) -> set[str]:
    return {d["slot"] for d in sim.control.disks()}


def file_names(sim: RosSim) -> set[str]:
    return {r["name"] for r in sim.control.menu("file")}


def files_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*.img")}
