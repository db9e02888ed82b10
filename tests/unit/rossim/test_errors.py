"""Every error string of the reference table (routeros.md section 6) is reachable through the CLI."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from rossim.device import Device

FILE_DISK = "/disk add type=file file-path=storage-pool/a.img file-size=1G slot=a"

CASES = [
    ("/nonsense/command", "syntax error (line 1 column 10)"),
    ("/system/resource/print bogus=1", "expected end of command (line 1 column 24)"),
    ("/disk foo", "bad command name foo (line 1 column 6)"),
    ('/disk "add"', "expected command name (line 1 column 7)"),
    ("/disk remove nosuchslot", "no such item"),
    ("/disk set [find .id=*99] file-size=2G", "expected item id (line 1 column 21)"),
    (
        "/interface vlan add name=v vlan-id=10 interface=nope",
        "input does not match any value of interface (line 1 column 49)",
    ),
    (
        "/ip address add address=10.0.0.999/24 interface=ether1",
        "invalid value for argument address (line 1 column 25)",
    ),
    (
        "/interface bridge add name=b mtu=15x",
        "value of mtu contains invalid trailing characters (line 1 column 34)",
    ),
    ("/interface bridge add name=b vlan-filtering=false", "expected yes or no (line 1 column 45)"),
    ("/interface bridge add name=ether1", "failure: item with such name already exists"),
    (
        "/ip dhcp-server lease add mac-address=AA:BB:CC:DD:EE:FF;"
        " /ip dhcp-server lease add mac-address=aa:bb:cc:dd:ee:ff",
        "failure: already have such entry",
    ),
    (f"{FILE_DISK} compress=yes", "compression only available for btrfs"),
    ("/disk add type=tmpfs tmpfs-max-size=64G", "too much memory requested for tmpfs/ramdisk"),
    ("/disk add type=file file-path=storage-pool/huge.img file-size=2T", "failure: not enough space"),
    ("/file add type=directory name=storage-pool", "failure: file already exists"),
    ("/disk add type=file file-size=1G slot=x", "failure: invalid parameter"),
    (f"{FILE_DISK}; /disk remove storage-pool", "failure: disk is in use"),
    ("/disk format-drive storage-pool", "failure: disk is busy"),
]


@pytest.mark.parametrize(("script", "expected"), CASES, ids=[c[1].split(" (")[0] for c in CASES])
def test_reference_error_strings(cli: Callable[[str], str], script: str, expected: str) -> None:
    assert cli(script) == expected + "\n"


def test_not_enough_permissions_for_read_group(device: Device) -> None:
    from rossim.cli.interp import Session

    device.users["viewer"] = {"password": "x", "group": "read", "keys": []}
    out, failed = Session(device, "viewer").run(FILE_DISK)
    assert (out, failed) == (["not enough permissions (9)"], True)
    out, failed = Session(device, "viewer").run("/disk print count-only")
    assert (out, failed) == (["1"], False)


def test_execution_error_is_the_default_injected_failure(device: Device) -> None:
    from rossim.cli.interp import Session
    from rossim.faults import FailRule

    device.faults.fail.append(FailRule("failure: execution error"))
    assert Session(device, "admin").run("/disk print")[0] == ["failure: execution error"]


def test_slot_length_limit_is_configurable(cli: Callable[[str], str], device: Device) -> None:
    slot = "pvc-" + "a" * 29
    out = cli(f"/disk add type=file file-path=storage-pool/a.img file-size=1G slot={slot}")
    assert out == "invalid value for argument slot (line 1 column 68)\n"
    device.settings.slot_max_length = 40
    assert cli(f"/disk add type=file file-path=storage-pool/a.img file-size=1G slot={slot}") == ""


def test_shrinking_a_file_disk_is_refused(cli: Callable[[str], str]) -> None:
    cli("/disk add type=file file-path=storage-pool/a.img file-size=2G slot=a")
    assert cli("/disk set a file-size=1G") == "failure: file-size can not be decreased\n"
