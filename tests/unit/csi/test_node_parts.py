"""Node building blocks against fake sysfs trees, sample tool outputs and real files."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from trellis.csi import mounts
from trellis.csi.params import parse_context
from trellis.csi.transport import nvme_sysfs as sysfs
from trellis.csi.transport.loop import parse_losetup_list
from trellis.csi.transport.nvme import connect_argv

NQN = "nqn.2000-02.com.mikrotik:csi-0123456789abcdef0123456789ab"


def make_subsystem(
    root: Path, index: int, nqn: str, heads: list[str], controllers: dict[str, list[str]]
) -> None:
    sub = root / "class" / "nvme-subsystem" / f"nvme-subsys{index}"
    sub.mkdir(parents=True)
    (sub / "subsysnqn").write_text(nqn + "\n")
    for head in heads:
        (sub / head).mkdir()
        (root / "class" / "block" / head).mkdir(parents=True, exist_ok=True)
        (root / "class" / "block" / head / "nsid").write_text("1\n")
    for ctrl, names in controllers.items():
        (sub / ctrl).mkdir()
        for name in names:
            (root / "class" / "nvme" / ctrl / name).mkdir(parents=True)
            (root / "class" / "block" / name).mkdir(parents=True, exist_ok=True)
            (root / "class" / "block" / name / "nsid").write_text("1\n")


def test_multipath_head_is_preferred_over_path_devices(tmp_path: Path) -> None:
    make_subsystem(tmp_path, 0, "nqn.other:x", ["nvme0n1"], {"nvme0": ["nvme0c0n1"]})
    make_subsystem(tmp_path, 1, NQN, ["nvme1n1"], {"nvme1": ["nvme1c1n1"], "nvme2": ["nvme1c2n1"]})
    assert sysfs.find_namespace(tmp_path, NQN) == "nvme1n1"
    assert sysfs.namespaces(tmp_path, sysfs.find_subsystems(tmp_path, NQN)[0])[1:] == [
        "nvme1c1n1",
        "nvme1c2n1",
    ]


def test_namespace_under_controller_without_multipath(tmp_path: Path) -> None:
    make_subsystem(tmp_path, 3, NQN, [], {"nvme3": ["nvme3n1"]})
    assert sysfs.find_namespace(tmp_path, NQN) == "nvme3n1"
    assert sysfs.nqns_for_volume(tmp_path, "csi-0123456789abcdef0123456789ab") == [NQN]
    assert sysfs.nqns_for_volume(tmp_path, "csi-0123456789abcdef0123456789") == []


def test_connected_subsystem_without_namespace_and_wrong_nsid(tmp_path: Path) -> None:
    make_subsystem(tmp_path, 4, NQN, [], {"nvme4": []})
    assert sysfs.find_subsystems(tmp_path, NQN) and sysfs.find_namespace(tmp_path, NQN) is None
    make_subsystem(tmp_path, 5, "nqn.x:y", ["nvme5n2"], {})
    (tmp_path / "class" / "block" / "nvme5n2" / "nsid").write_text("2\n")
    assert sysfs.find_namespace(tmp_path, "nqn.x:y") is None
    assert sysfs.subsystems(tmp_path / "nowhere") == []


def test_nvme_cli_json_outputs() -> None:
    list_v2 = {
        "Devices": [
            {
                "NameSpace": 1,
                "DevicePath": "/dev/nvme0n1",
                "GenericPath": "/dev/ng0n1",
                "Firmware": "7.20",
                "ModelNumber": "RDS",
                "SerialNumber": "abc",
                "UsedBytes": 0,
                "MaximumLBA": 2097152,
                "PhysicalSize": 1073741824,
                "SectorSize": 512,
            }
        ]
    }
    assert sysfs.parse_list(json.dumps(list_v2))[0]["DevicePath"] == "/dev/nvme0n1"
    subsys_v2 = [
        {
            "HostNQN": "nqn.2014-08.org.nvmexpress:uuid:1",
            "HostID": "1",
            "Subsystems": [
                {
                    "Name": "nvme-subsys1",
                    "NQN": NQN,
                    "IOPolicy": "round-robin",
                    "Paths": [
                        {
                            "Name": "nvme1",
                            "Transport": "tcp",
                            "Address": "traddr=10.0.0.5,trsvcid=4420",
                            "State": "live",
                        }
                    ],
                }
            ],
        }
    ]
    assert sysfs.parse_list_subsys(json.dumps(subsys_v2)) == {NQN: ["nvme1"]}
    subsys_v1 = {
        "Subsystems": [
            {"Name": "nvme-subsys0", "NQN": NQN},
            {"Paths": [{"Name": "nvme0", "Transport": "tcp"}]},
        ]
    }
    assert sysfs.parse_list_subsys(json.dumps(subsys_v1)) == {NQN: ["nvme0"]}
    assert sysfs.parse_list_subsys("") == {}
    for text in (
        "Failed to write to /dev/nvme-fabrics: Operation already in progress (already connected)",
        "already connnected",
    ):
        assert sysfs.ALREADY_CONNECTED.search(text)


def test_connect_arguments_carry_the_timeouts() -> None:
    ctx = parse_context(
        {
            "nqn": NQN,
            "nvmeAddress": "10.0.0.5",
            "nvmePort": "4420",
            "filePath": "storage-pool/csi/csi-0123456789abcdef0123456789ab.img",
            "ctrlLossTmo": "600",
            "reconnectDelay": "10",
            "keepAliveTmo": "30",
        }
    )
    argv = connect_argv(ctx, "nqn.2014-08.org.nvmexpress:uuid:h")
    assert argv[:2] == ["nvme", "connect"]
    assert {
        "--transport=tcp",
        "--traddr=10.0.0.5",
        "--trsvcid=4420",
        f"--nqn={NQN}",
        "--ctrl-loss-tmo=600",
        "--reconnect-delay=10",
        "--keep-alive-tmo=30",
        "--hostnqn=nqn.2014-08.org.nvmexpress:uuid:h",
    } == set(argv[2:])


@pytest.mark.parametrize(
    "bad",
    [
        {"nqn": "not-an-nqn"},
        {"filePath": "../etc/passwd.img"},
        {"filePath": "/abs/x.img"},
        {"nvmeAddress": "a b"},
        {"nvmePort": "99999"},
    ],
)
def test_context_values_are_checked_on_the_node(bad: dict[str, str]) -> None:
    good = {"nqn": NQN, "nvmeAddress": "10.0.0.5", "nvmePort": "4420", "filePath": "p/d/x.img"}
    with pytest.raises(ValueError):
        parse_context({**good, **bad})


def test_losetup_json() -> None:
    text = json.dumps(
        {"loopdevices": [{"name": "/dev/loop3", "back-file": "/srv/rds/p/d/csi-1.img (deleted)"}]}
    )
    assert parse_losetup_list(text) == [("/dev/loop3", "/srv/rds/p/d/csi-1.img")]
    assert parse_losetup_list("") == []


def test_mountinfo_parsing_with_escapes_and_optional_fields() -> None:
    text = (
        "22 27 0:21 / /proc rw,relatime shared:5 - proc proc rw\n"
        "36 35 7:3 / /var/lib/kubelet/plugins/x/globalmount rw,noatime shared:1 master:2"
        " - ext4 /dev/loop3 rw\n"
        "37 35 7:3 / /mnt/with\\040space rw - xfs /dev/nvme1n1 rw,nouuid\n"
    )
    entries = mounts.parse_mountinfo(text)
    assert entries[1].source == "/dev/loop3" and entries[1].fstype == "ext4"
    assert entries[2].mount_point == "/mnt/with space" and entries[2].fstype == "xfs"


def test_blkid_export_and_mount_options() -> None:
    assert mounts.parse_blkid_export("DEVNAME=/dev/loop0\nUUID=1\nTYPE=ext4\n")["TYPE"] == "ext4"
    assert mounts.mount_options("xfs", ["noatime"], True) == ["noatime", "nouuid", "ro"]
    assert mounts.mount_options("ext4", [], False) == []


def test_probe_blank_formatted_and_unreadable(tmp_path: Path) -> None:
    image = tmp_path / "disk.img"
    image.write_bytes(b"")
    with image.open("r+b") as f:
        f.truncate(64 << 20)
    assert mounts.probe_filesystem(str(image)) == ""
    subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True)
    assert mounts.probe_filesystem(str(image)) == "ext4"
    # blkid exits 2 ("nothing found") for a device it cannot open: that must never read as blank.
    missing = tmp_path / "missing.img"
    assert subprocess.run(["blkid", "-p", str(missing)], capture_output=True).returncode == 2
    with pytest.raises(mounts.DeviceUnreadable):
        mounts.probe_filesystem(str(missing))


def test_probe_reports_partition_tables(tmp_path: Path) -> None:
    image = tmp_path / "parted.img"
    entry = bytes([0, 0, 0, 0, 0x83, 0, 0, 0]) + (2048).to_bytes(4, "little") + (4096).to_bytes(4, "little")
    mbr = bytes(440) + b"TRLS" + bytes(2) + entry + bytes(48) + b"\x55\xaa"
    with image.open("wb") as f:
        f.write(mbr)
        f.truncate(16 << 20)
    assert mounts.probe_filesystem(str(image)) == "partition-table:dos"
