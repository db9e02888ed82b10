"""Output formats compared with the samples captured from real RouterOS (docs reference, section 5)."""

from __future__ import annotations

from collections.abc import Callable

from rossim.device import Device

HW_FILE_DISK = [
    'type=file slot="pvc-test-123" slot-default="" parent="" fs=-',
    '               model="/storage-pool/test.img"',
    "               size=53 687 091 200 mount-filesystem=yes mount-read-only=no",
    "               compress=no sector-size=512 raid-master=none",
    "               nvme-tcp-export=yes nvme-tcp-server-port=4420",
    '               nvme-tcp-server-nqn="nqn.2000-02.com.mikrotik:pvc-test-123"',
    '               nvme-tcp-server-allow-host-name="" iscsi-export=no',
    "               nfs-sharing=no smb-sharing=no media-sharing=no",
    "               media-interface=none swap=no",
    "               file-path=/storage-pool/test.img",
    "               file-size=50.0GiB file-offset=0",
]

ADD_SAMPLE = (
    "/disk add type=file file-path=/storage-pool/test.img file-size=50G slot=pvc-test-123 "
    "nvme-tcp-export=yes nvme-tcp-server-port=4420 nvme-tcp-server-nqn=nqn.2000-02.com.mikrotik:pvc-test-123"
)


def test_file_disk_detail_matches_hardware_capture(cli: Callable[[str], str]) -> None:
    assert cli(ADD_SAMPLE) == ""
    out = cli("/disk print detail where slot=pvc-test-123").splitlines()
    assert out[0] == "Flags: t - NVME-TCP-EXPORT"
    first = out[1]
    # item number and flags occupy the 15 columns the continuation lines are indented by
    assert first[:15] == " 0 t           "
    assert [first[15:], *out[2:12]] == HW_FILE_DISK
    assert out[12] == ""


def test_pool_row_has_grouped_size_free_and_use(cli: Callable[[str], str], device: Device) -> None:
    cli("/disk add type=file file-path=storage-pool/a.img file-size=256G slot=a")
    out = cli('/disk print detail where mount-point="storage-pool"')
    assert "size=1 099 511 627 776 free=824 633 720 832 use=25%" in out
    assert "fs=btrfs" in out
    assert out.splitlines()[1].startswith(" 0 BM")


def test_as_value_is_one_line_with_raw_numbers_and_booleans(cli: Callable[[str], str]) -> None:
    cli(ADD_SAMPLE)
    out = cli(":put [/disk print detail as-value where slot=pvc-test-123]")
    assert out.count("\n") == 1
    fields = out.strip().split(";")
    assert fields[0] == ".id=*2"
    assert "file-size=53687091200" in fields
    assert "nvme-tcp-export=true" in fields
    assert "iscsi-export=false" in fields
    assert "nvme-tcp-server-nqn=nqn.2000-02.com.mikrotik:pvc-test-123" in fields


def test_as_value_concatenates_records(cli: Callable[[str], str]) -> None:
    cli("/disk add type=file file-path=storage-pool/a.img file-size=1G slot=a")
    cli("/disk add type=file file-path=storage-pool/b.img file-size=1G slot=b")
    out = cli(":put [/disk print as-value proplist=slot where type=file]")
    assert out == ".id=*2;slot=a;.id=*3;slot=b\n"


def test_terse_is_one_line_per_item(cli: Callable[[str], str]) -> None:
    cli('/ip address add address=10.0.0.1/24 interface=ether1 comment="WAN uplink"')
    out = cli("/ip address print terse")
    assert out == (
        "0 address=10.0.0.1/24 network=10.0.0.0 interface=ether1 actual-interface=ether1 "
        'comment="WAN uplink"\n'
    )


def test_detail_shows_comment_line_and_quotes_strings(cli: Callable[[str], str]) -> None:
    cli('/interface bridge add name=br-lab comment="lab bridge"')
    out = cli("/interface bridge print detail").splitlines()
    assert out[0] == "Flags: R - RUNNING"
    assert out[1] == " 0 R  ;;; lab bridge"
    assert out[2].startswith('      name="br-lab" ')


def test_file_print_detail_like_routeros_7(cli: Callable[[str], str]) -> None:
    cli("/disk add type=file file-path=storage-pool/iso/x.img file-size=10G slot=x")
    out = cli("/file print detail").splitlines()
    assert out[0].startswith(" 0 name=storage-pool type=disk last-modified=")
    assert out[2].startswith(" 1 name=storage-pool/iso type=directory last-modified=")
    assert out[4].startswith(" 2 name=storage-pool/iso/x.img type=.img file size=10.0GiB")


def test_count_only_and_singletons(cli: Callable[[str], str]) -> None:
    assert cli("/interface ethernet print count-only") == "8\n"
    assert cli("/system identity print") == "  name: MikroTik\n"
    cli("/system identity set name=rds1")
    assert cli(":put [/system identity get name]") == "rds1\n"
    assert "board-name: RDS2216" in cli("/system resource print")


def test_successful_writes_print_nothing(cli: Callable[[str], str]) -> None:
    assert cli("/disk add type=file file-path=storage-pool/a.img file-size=1G slot=a") == ""
    assert cli("/disk set a nvme-tcp-export=yes") == ""
    assert cli("/disk remove a") == ""
    assert cli(":put [/disk add type=file file-path=storage-pool/b.img file-size=1G slot=b]") == "*3\n"


def test_table_print_has_flags_and_columns(cli: Callable[[str], str]) -> None:
    out = cli("/disk print").splitlines()
    assert out[0] == "Flags: B - BLOCK-DEVICE; M - MOUNTED"
    assert out[1] == "Columns: SLOT, MODEL, SIZE, FREE, FS"
    assert out[3].startswith("0 BM storage-pool")


def test_wrapping_follows_terminal_width(cli: Callable[[str], str], device: Device) -> None:
    device.settings.terminal_width = 0
    cli("/disk add type=file file-path=storage-pool/a.img file-size=1G slot=a")
    lines = [line for line in cli("/disk print detail where slot=a").splitlines() if line]
    # only the forced group breaks remain (size, file-path, file-size start their own line)
    assert [line.split()[0].split("=")[0] for line in lines[1:]] == ["size", "file-path", "file-size"]
    assert max(len(line) for line in lines) > 100


def test_interface_terse_matches_captured_line(cli: Callable[[str], str]) -> None:
    cli('/interface ethernet set ether1 comment="WAN uplink"')
    first = cli("/interface print terse").splitlines()[0]
    assert first.startswith('0 R name=ether1 default-name=ether1 type=ether comment="WAN uplink" ')


def test_print_detail_terse_without_paging_is_terse(cli: Callable[[str], str]) -> None:
    cli(ADD_SAMPLE)
    out = cli("/disk print detail terse without-paging where slot=pvc-test-123")
    assert out.startswith("0 t type=file slot=pvc-test-123 ")
    assert " size=53687091200 " in out and " file-size=50.0GiB " in out
    assert out.count("\n") == 1
