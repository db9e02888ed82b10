"""Console language: paths, find/where, quoting, `;` and `[ ]` outside quotes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from rossim.device import Device


def test_both_path_forms(cli: Callable[[str], str]) -> None:
    assert cli("/disk/add type=file file-path=storage-pool/a.img file-size=1G slot=a") == ""
    assert cli("/disk add type=file file-path=storage-pool/b.img file-size=1G slot=b") == ""
    assert cli("/ip dhcp-server network add address=10.0.0.0/24 gateway=10.0.0.1") == ""
    assert cli("/ip/dhcp-server/network/print count-only") == "1\n"


def test_find_where_operators(cli: Callable[[str], str]) -> None:
    for slot in ("pvc-a", "pvc-b", "snap-c"):
        cli(f"/disk add type=file file-path=storage-pool/{slot}.img file-size=1G slot={slot}")
    cli("/disk set pvc-b nvme-tcp-export=yes")
    assert cli(':put [/disk find where slot~"^pvc"]') == "*2;*3\n"
    assert cli(":put [/disk find slot=pvc-a]") == "*2\n"
    assert cli(':put [/disk find where slot~"pvc" and nvme-tcp-export]') == "*3\n"
    assert cli(':put [/disk find where slot~"pvc" and !nvme-tcp-export]') == "*2\n"
    assert cli(":put [/disk find where slot=pvc-a or slot=snap-c]") == "*2;*4\n"
    assert cli(":put [/disk find where !(type=file) ]") == "*1\n"
    assert cli(":put [/disk find where slot!=pvc-a and type=file]") == "*3;*4\n"
    assert cli(":put [/disk find where file-size>1G]") == "\n"
    assert cli(":put [/disk find where nvme-tcp-export=yes]") == "*3\n"


def test_remove_with_empty_find_does_nothing(cli: Callable[[str], str]) -> None:
    assert cli("/disk remove [find slot=nope]") == ""


def test_quoted_values_with_escapes(cli: Callable[[str], str]) -> None:
    cli('/ip dns static add name=a.lab address=10.0.0.5 comment="a \\"quoted\\" \\$x; [y]"')
    assert cli(":put [/ip dns static get [find name=a.lab] comment]") == 'a "quoted" $x; [y]\n'


def test_semicolon_outside_quotes_separates_commands(cli: Callable[[str], str], device: Device) -> None:
    cli("/disk add type=file file-path=storage-pool/keep.img file-size=1G slot=keep")
    # a client that forgot to quote the comment value runs a second command
    cli("/ip dns static add name=x address=10.0.0.1 comment=foo;/disk remove keep")
    assert cli(":put [/disk find slot=keep]") == "\n"


def test_brackets_outside_quotes_are_command_substitution(cli: Callable[[str], str]) -> None:
    cli("/ip dns static add name=x address=10.0.0.1 comment=[/system identity get name]")
    assert cli(":put [/ip dns static get [find name=x] comment]") == "MikroTik\n"


def test_dollar_in_quotes_expands(cli: Callable[[str], str]) -> None:
    out = cli('/ip dns static add name=x address=10.0.0.1 comment="cost $price"')
    assert out.startswith("syntax error (line 1 column ")
    assert cli(':put "id=$[/system identity get name]"') == "id=MikroTik\n"


def test_script_is_parsed_before_anything_runs(cli: Callable[[str], str]) -> None:
    out = cli('/ip dns static add name=x address=10.0.0.1; /ip dns static add name="unterminated')
    assert out == "syntax error (line 1 column 69)\n"
    assert cli("/ip dns static print count-only") == "0\n"


def test_runtime_error_stops_the_rest(cli: Callable[[str], str]) -> None:
    out = cli("/ip dns static add name=a address=10.0.0.1; /disk remove nope; /ip dns static add name=b")
    assert out == "no such item\n"
    assert cli("/ip dns static print count-only") == "1\n"


def test_multiline_errors_report_line(cli: Callable[[str], str]) -> None:
    assert cli("/system identity print\n/disk foo") == "bad command name foo (line 2 column 6)\n"


def test_positional_item_by_name_number_and_id(cli: Callable[[str], str]) -> None:
    cli("/disk add type=file file-path=storage-pool/a.img file-size=1G slot=a")
    cli("/disk set 1 nvme-tcp-export=yes")
    cli("/disk set *2 iscsi-export=yes")
    cli("/disk set a nvme-tcp-server-port=4421")
    out = cli(
        ":put [/disk print as-value proplist=nvme-tcp-export,iscsi-export,nvme-tcp-server-port where slot=a]"
    )
    assert out == ".id=*2;nvme-tcp-export=true;nvme-tcp-server-port=4421;iscsi-export=true\n"


def test_set_file_size_grows_sparse_file_and_remove_keeps_it(
    cli: Callable[[str], str], device: Device
) -> None:
    cli("/disk add type=file file-path=storage-pool/csi/a.img file-size=1G slot=a")
    path = device.storage.root / "storage-pool/csi/a.img"
    assert path.stat().st_size == 1 << 30
    assert path.stat().st_blocks * 512 < 1 << 20, "file disks are sparse"
    assert cli("/disk set [find slot=a] file-size=2G") == ""
    assert path.stat().st_size == 2 << 30
    assert cli("/disk remove [find slot=a]") == ""
    assert path.exists(), "removing the disk keeps its backing file"
    assert cli('/file remove [find name="storage-pool/csi/a.img"]') == ""
    assert not path.exists()


def test_copy_from_clones_data(cli: Callable[[str], str], device: Device) -> None:
    cli("/disk add type=file file-path=storage-pool/a.img file-size=1G slot=a")
    src: Path = device.storage.root / "storage-pool/a.img"
    with open(src, "r+b") as fh:
        fh.seek(5 << 20)
        fh.write(b"payload")
    out = cli("/disk add type=file copy-from=[find slot=a] file-path=storage-pool/snap.img slot=snap")
    assert out == ""
    dst = device.storage.root / "storage-pool/snap.img"
    assert dst.stat().st_size == 1 << 30
    with open(dst, "rb") as fh:
        fh.seek(5 << 20)
        assert fh.read(7) == b"payload"
    cli("/disk add type=file copy-from=snap file-path=storage-pool/big.img file-size=2G slot=big")
    assert (device.storage.root / "storage-pool/big.img").stat().st_size == 2 << 30


def test_default_nqn_and_iqn_follow_slot(cli: Callable[[str], str]) -> None:
    cli(
        "/disk add type=file file-path=storage-pool/a.img file-size=1G slot=disk1"
        " nvme-tcp-export=yes iscsi-export=yes"
    )
    assert cli(":put [/disk get disk1 nvme-tcp-server-nqn]") == "disk1\n"
    assert cli(":put [/disk get disk1 iscsi-server-iqn]") == "iqn.2000-02.com.mikrotik:disk1\n"
    assert cli(":put [/disk get disk1 iscsi-server-port]") == "3260\n"


def test_file_add_directory_and_remove(cli: Callable[[str], str], device: Device) -> None:
    assert cli("/file add type=directory name=storage-pool/isos") == ""
    assert (device.storage.root / "storage-pool/isos").is_dir()
    assert cli("/file add type=directory name=storage-pool/isos") == "failure: file already exists\n"
    assert cli('/file remove "storage-pool/isos"') == ""
    assert not (device.storage.root / "storage-pool/isos").exists()
