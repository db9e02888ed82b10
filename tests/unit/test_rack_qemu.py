"""QEMU command lines of the rack's machines (hack/rack/machine.py): pure functions, no QEMU run."""

from __future__ import annotations

from pathlib import Path

import pytest
from rack.machine import OVMF_CODE, MachinePaths, MachineSpec, boot_order, build_argv, parse_size
from rack.serve import parse_config

SPEC = MachineSpec(
    name="vm0", mac="52:54:00:00:00:01", serial="SN,1", uuid="5f0c7a0e-2d3b-4c41-9a52-6d1e8b7f0a02",
    netns="labns", bridge="br0", tap="rk0vm0",
)  # fmt: skip
PATHS = MachinePaths.under(Path("/state"), SPEC)


def _option(argv: list[str], flag: str) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv) if a == flag]


def _bootindex(argv: list[str], device: str) -> int:
    dev = next(d for d in _option(argv, "-device") if d.startswith(device))
    return int(dev.rsplit("bootindex=", 1)[1].split(",")[0])


def test_runs_in_the_namespace_under_tcg_without_reboots() -> None:
    argv = build_argv(SPEC, PATHS)
    assert argv[:4] == ["ip", "netns", "exec", "labns"]
    assert argv[4] == "qemu-system-x86_64"
    assert _option(argv, "-accel") == ["tcg"]
    assert "host" not in _option(argv, "-cpu")
    assert "-no-reboot" in argv
    assert _option(argv, "-m") == ["512"] and _option(argv, "-smp") == ["1"]
    assert _option(argv, "-uuid") == [SPEC.uuid]
    assert _option(argv, "-smbios") == [
        f"type=1,manufacturer=Trellis Labs,product=Virtual Server,uuid={SPEC.uuid},serial=SN,,1"
    ]
    assert _option(argv, "-qmp") == ["unix:/state/vm0.qmp,server=on,wait=off"]
    assert _option(argv, "-chardev") == ["file,id=serial0,path=/state/vm0.serial,append=on"]
    assert _option(argv, "-netdev") == ["tap,id=net0,ifname=rk0vm0,script=no,downscript=no"]
    assert "virtio-net-pci,netdev=net0,id=nic0,mac=52:54:00:00:00:01,bootindex=2" in _option(argv, "-device")
    assert "if=none,id=disk0,file=/state/vm0.raw,format=raw,discard=unmap" in _option(argv, "-drive")
    assert not any("pflash" in d for d in _option(argv, "-drive"))


def test_kvm_only_when_asked() -> None:
    assert _option(build_argv(SPEC, PATHS, accel="kvm"), "-accel") == ["kvm"]
    with pytest.raises(ValueError):
        build_argv(SPEC, PATHS, accel="hvf")


def test_accel_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from rack.machine import accel_from_env

    monkeypatch.delenv("RACK_ACCEL", raising=False)
    assert accel_from_env() == "tcg"
    monkeypatch.setenv("RACK_ACCEL", "kvm")
    assert accel_from_env() == "kvm"


@pytest.mark.parametrize(
    ("device", "first"),
    [(None, "virtio-blk-pci"), ("disk", "virtio-blk-pci"), ("pxe", "virtio-net-pci"), ("cdrom", "ide-cd")],
)
def test_boot_device_goes_first(device: str | None, first: str) -> None:
    argv = build_argv(SPEC, PATHS, boot_device=device)
    indexes = {d: _bootindex(argv, d) for d in ("virtio-blk-pci", "virtio-net-pci", "ide-cd")}
    assert min(indexes, key=lambda d: indexes[d]) == first
    assert sorted(indexes.values()) == [1, 2, 3]


def test_default_order_is_disk_then_nic() -> None:
    assert boot_order(None) == ["disk", "pxe", "cdrom"]
    assert boot_order("bios") == ["disk", "pxe", "cdrom"]
    assert boot_order("cdrom") == ["cdrom", "disk", "pxe"]


def test_uefi_uses_readonly_ovmf_code_and_its_own_vars() -> None:
    spec = MachineSpec(name="u", mac="52:54:00:00:00:02", firmware="uefi", tap="t0")
    paths = MachinePaths.under(Path("/s"), spec)
    drives = _option(build_argv(spec, paths), "-drive")
    assert f"if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}" in drives
    assert "if=pflash,format=raw,unit=1,file=/s/u.OVMF_VARS.fd" in drives


def test_cdrom_always_present_and_media_passed_through() -> None:
    empty = _option(build_argv(SPEC, PATHS), "-drive")
    assert "if=none,id=cd0,media=cdrom,readonly=on" in empty
    iscsi = "iscsi://10.0.0.5/iqn.2026-01.dev.trellis:iso/0"
    drives = _option(build_argv(SPEC, PATHS, cdrom=iscsi), "-drive")
    assert f"if=none,id=cd0,media=cdrom,readonly=on,file={iscsi},format=raw" in drives


def test_without_namespace_or_tap() -> None:
    spec = MachineSpec(name="solo", mac="52:54:00:00:00:03")
    argv = build_argv(spec, MachinePaths.under(Path("/s"), spec))
    assert argv[0] == "qemu-system-x86_64"
    assert _option(argv, "-nic") == ["none"]
    assert _option(argv, "-uuid")  # a stable UUID derived from the name


def test_spec_validation_and_sizes() -> None:
    assert parse_size("2G") == 2 * 1024**3 and parse_size("512MiB") == 512 * 1024**2 and parse_size(7) == 7
    with pytest.raises(ValueError):
        MachineSpec(name="x", mac="m", firmware="coreboot")
    with pytest.raises(ValueError):
        MachineSpec(name="../x", mac="m")


def test_config_defaults_from_the_rack_network() -> None:
    [(spec, bmc, address)] = parse_config(
        {
            "network": {"netns": "lab", "bridge": "br9", "address": "10.9.0.1/24"},
            "machines": [
                {"name": "vm1", "mac": "52:54:00:00:00:04", "disk_size": "1G", "bmc": {"port": 1623}}
            ],
        }
    )
    assert (spec.netns, spec.bridge, spec.tap, spec.disk_size) == ("lab", "br9", "rk0vm1", 1024**3)
    assert (bmc.protocol, bmc.port, address) == ("ipmi", 1623, "10.9.0.1/24")
    with pytest.raises(ValueError, match="unknown keys"):
        parse_config({"machines": [{"name": "a", "mac": "m", "colour": "red"}]})
