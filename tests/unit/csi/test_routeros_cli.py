"""RouterOS CLI: quoting cannot be escaped from, commands are built as expected, output parsed."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.csi.routeros_lexer import LexError, argument, decode_string, split_statements
from trellis.routeros import cli
from trellis.routeros.cli import (
    CliValueError,
    CommandResult,
    ErrorKind,
    Find,
    PrintStyle,
    RouterOSCli,
    RouterOSError,
    any_of,
    eq,
    regex,
)

PRINTABLE = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=200)
# Text that leans on everything the console treats specially.
HOSTILE = st.lists(
    st.sampled_from([*' ";[]{}$?\\#=~/:.-_aZ09', '"; /system reboot;"', "$[/system reboot]", '\\"']),
    max_size=30,
).map("".join)


@given(st.one_of(PRINTABLE, HOSTILE))
@settings(max_examples=400, deadline=None)
def test_quoted_value_is_one_word_and_decodes_back(value: str) -> None:
    quoted = cli.quote(value)
    assert quoted.startswith('"') and quoted.endswith('"')
    assert decode_string(quoted[1:-1]) == value


@given(slot=st.one_of(PRINTABLE, HOSTILE), comment=st.one_of(PRINTABLE, HOSTILE))
@settings(max_examples=400, deadline=None)
def test_no_value_can_inject_a_second_command(slot: str, comment: str) -> None:
    line = cli.build("/disk", "set", item=Find(eq("slot", slot)), args={"comment": comment, "file-size": 5})
    statements = split_statements(line)
    assert len(statements) == 1, f"value escaped into a new command: {line!r}"
    words = statements[0]
    assert words[:2] == ["/disk", "set"]
    find = words[2]
    assert find.startswith("[find where slot=") and find.endswith("]")
    assert argument(find[len("[find where ") : -1]) == ("slot", slot)
    assert [argument(w) for w in words[3:]] == [("comment", comment), ("file-size", "5")]


@settings(deadline=None)
@given(st.text(min_size=1, max_size=20).filter(lambda s: any(not " " <= c <= "~" for c in s)))
def test_non_printable_values_are_refused(value: str) -> None:
    with pytest.raises(CliValueError):
        cli.quote(value)


@pytest.mark.parametrize("bad", ["disk; /system reboot", "/disk/../x", "/Disk", "/disk x", ""])
def test_paths_are_identifiers(bad: str) -> None:
    with pytest.raises(CliValueError):
        cli.build(bad, "print")


@pytest.mark.parametrize("bad", ["file size", "a=b", "x;y", "$x", "Slot"])
def test_argument_names_are_identifiers(bad: str) -> None:
    with pytest.raises(CliValueError):
        cli.build("/disk", "add", args={bad: "v"})


def test_value_types_render_as_routeros_expects() -> None:
    line = cli.build("/disk", "add", args={"type": "file", "file-size": 1073741824, "nvme-tcp-export": True})
    assert line == '/disk add type="file" file-size=1073741824 nvme-tcp-export=yes'
    with pytest.raises(CliValueError):
        cli.render_value(1.5)  # type: ignore[arg-type]


def test_print_forms() -> None:
    where = any_of(eq("slot", "a"), eq("mount-point", "storage-pool"))
    assert cli.build_print("/disk", where) == (
        ':put [/disk print detail as-value where slot="a" or mount-point="storage-pool"]'
    )
    assert cli.build_print("/file", regex("name", "/x\\.img$"), PrintStyle.TERSE) == (
        '/file print terse without-paging where name~"/x\\\\.img\\$"'
    )
    assert cli.build_print("/disk", None, PrintStyle.DETAIL) == "/disk print detail without-paging"
    for line in (cli.build_print("/disk", where), cli.build_print("/file", regex("name", "a$|b?"))):
        assert len(split_statements(line)) == 1


# --- output -------------------------------------------------------------------------------

AS_VALUE = (
    ".id=*1A;slot=csi-1;type=file;file-path=storage-pool/csi/csi-1.img;file-size=53687091200;"
    "nvme-tcp-export=true;nvme-tcp-server-port=4420;nvme-tcp-server-nqn=nqn.2000-02.com.mikrotik:csi-1;"
    ".id=*1B;slot=storage-pool;mount-point=storage-pool;size=7949127950336;free=5963595964416;"
    "address-lists=a;b;c\r\n"
)


def test_parse_as_value_records() -> None:
    records = cli.parse_as_value(AS_VALUE)
    assert [r[".id"] for r in records] == ["*1A", "*1B"]
    assert records[0]["file-size"] == "53687091200"
    assert cli.parse_bool(records[0]["nvme-tcp-export"]) is True
    assert records[1]["free"] == "5963595964416"
    assert records[1]["address-lists"] == "a;b;c"
    assert cli.parse_as_value("") == []


# The file disk sample from the reference (routeros.md §5.1), with the item number and the
# flags a real console prints in front of it.
DETAIL_FILE_DISK = """Flags: X - disabled; A - acquired; B - block-device; M - mounted; t - nvme-tcp-export
 0  B t type=file slot="pvc-test-123" slot-default="" parent="" fs=-
               model="/storage-pool/test.img"
               size=53 687 091 200 mount-filesystem=yes mount-read-only=no
               compress=no sector-size=512 raid-master=none
               nvme-tcp-export=yes nvme-tcp-server-port=4420
               nvme-tcp-server-nqn="nqn.2000-02.com.mikrotik:pvc-test-123"
               nvme-tcp-server-allow-host-name="" iscsi-export=no
               nfs-sharing=no smb-sharing=no media-sharing=no
               media-interface=none swap=no
               file-path=/storage-pool/metal-csi/pvc-2f1e4a
               .img
               file-size=50.0GiB file-offset=0

21 BM        type=raid slot="raid1" parent=none uuid="f457bc79-aa" fs=btrfs model="RAID6 2-parity-disks"
size=17 283 541 893 120 free=17 283 538 190 336 raid-type=6 raid-device-count=20
"""


def test_parse_detail_with_wraps_grouped_numbers_and_flags() -> None:
    disk, raid = cli.parse_items(DETAIL_FILE_DISK)
    assert disk["#"] == "0" and disk["flags"] == "Bt"  # flag columns may be space-separated
    assert disk["slot"] == "pvc-test-123" and disk["slot-default"] == ""
    assert cli.parse_size(disk["size"]) == 53_687_091_200
    assert disk["nvme-tcp-server-nqn"] == "nqn.2000-02.com.mikrotik:pvc-test-123"
    assert disk["file-path"] == "/storage-pool/metal-csi/pvc-2f1e4a.img", "a wrapped value is re-joined"
    assert cli.parse_size(disk["file-size"]) == 50 << 30
    assert raid["#"] == "21" and raid["flags"] == "BM" and raid["model"] == "RAID6 2-parity-disks"
    # The reference sample's continuation line lost its indentation; it still belongs to the item.
    assert cli.parse_size(raid["free"]) == 17_283_538_190_336


def test_parse_terse_and_file_print() -> None:
    terse = '0 R name=ether1 default-name=ether1 type=ether comment="WAN uplink"\n'
    (item,) = cli.parse_items(terse)
    assert item == {
        "name": "ether1",
        "default-name": "ether1",
        "type": "ether",
        "comment": "WAN uplink",
        "#": "0",
        "flags": "R",
    }
    files = (
        " 2 name=flash type=disk last-modified=2024-11-25 13:12:10\n"
        " 4 name=storage-pool/csi/csi-1.img type=.img file size=10.0GiB last-modified=2024-11-25 13:10:52\n"
    )
    flash, img = cli.parse_items(files)
    assert flash["last-modified"] == "2024-11-25 13:12:10"
    assert img["type"] == ".img file" and cli.parse_size(img["size"]) == 10 << 30


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("syntax error (line 1 column 10)", ErrorKind.SYNTAX),
        ("expected end of command (line 1 column 24)", ErrorKind.SYNTAX),
        ("bad command name bogus (line 1 column 6)", ErrorKind.SYNTAX),
        ("failure: not enough space", ErrorKind.NO_SPACE),
        ("no such item", ErrorKind.NOT_FOUND),
        ("expected item id (line 1 column 14)", ErrorKind.NOT_FOUND),
        ("failure: item with such name already exists", ErrorKind.EXISTS),
        ("failure: already have such entry", ErrorKind.EXISTS),
        ("input does not match any value of type", ErrorKind.INVALID_VALUE),
        ("value of file-size contains invalid trailing characters", ErrorKind.INVALID_VALUE),
        ("not enough permissions (9)", ErrorKind.PERMISSION),
        ("failure: disk is busy", ErrorKind.BUSY),
        ("failure: execution error", ErrorKind.FAILURE),
    ],
)
def test_errors_on_stdout_are_detected_and_classified(text: str, kind: ErrorKind) -> None:
    for style in (None, PrintStyle.AS_VALUE, PrintStyle.DETAIL):
        with pytest.raises(RouterOSError) as info:
            cli.check_output(text + "\r\n", style, "cmd")
        assert info.value.kind is kind and info.value.message == text


def test_data_is_not_mistaken_for_errors() -> None:
    cli.check_output(AS_VALUE, PrintStyle.AS_VALUE)
    cli.check_output(DETAIL_FILE_DISK, PrintStyle.DETAIL)
    cli.check_output("\r\n", None)
    with pytest.raises(RouterOSError):
        cli.check_output("anything at all", None)


class Canned:
    def __init__(self, *results: CommandResult) -> None:
        self.results = list(results)
        self.sent: list[tuple[str, bool]] = []

    def run(self, command: str, *, idempotent: bool, timeout: float | None = None) -> CommandResult:
        self.sent.append((command, idempotent))
        return self.results.pop(0)


def test_cli_raises_on_error_text_even_with_exit_zero() -> None:
    runner = Canned(CommandResult("failure: not enough space\r\n", "", 0))
    with pytest.raises(RouterOSError) as info:
        RouterOSCli(runner).add("/disk", {"type": "file"})
    assert info.value.kind is ErrorKind.NO_SPACE
    assert runner.sent == [('/disk add type="file"', False)]


def test_cli_raises_on_nonzero_exit_without_text() -> None:
    runner = Canned(CommandResult("", "permission denied", 1))
    with pytest.raises(RouterOSError):
        RouterOSCli(runner).remove("/disk", Find(eq("slot", "x")))
    assert runner.sent[0][1] is True, "removing by query is idempotent"


def test_cli_print_reads_records() -> None:
    runner = Canned(CommandResult(AS_VALUE, "", 0))
    records = RouterOSCli(runner).print("/disk", eq("slot", "csi-1"))
    assert len(records) == 2 and runner.sent[0][1] is True


def test_lexer_catches_injection() -> None:
    with pytest.raises(LexError):
        split_statements('/disk print where slot="a$b"')
    assert len(split_statements("/disk print; /system reboot")) == 2
