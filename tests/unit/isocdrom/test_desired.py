"""ISOCDROM pure decisions and the /disk command lines sent for an export."""

from __future__ import annotations

from typing import Any

import pytest

from trellis.api.isocdrom import ISOCDROMSpec
from trellis.operators.isocdrom import desired, transfer
from trellis.operators.isocdrom.rds import RDSExports, rds_path
from trellis.routeros.cli import CommandResult, RouterOSCli

SHA = "a" * 64


def spec(**extra: Any) -> ISOCDROMSpec:
    base: dict[str, Any] = {
        "source": {"url": "http://x/y.iso", "sha256": SHA},
        "target": {"routerRef": "rds"},
    }
    return ISOCDROMSpec.model_validate({**base, **extra})


def test_slot_names_fit_routeros_limits() -> None:
    assert desired.slot_name("talos", spec()) == "iso-talos"
    assert desired.slot_name("talos", spec(slot="custom")) == "custom"
    long = desired.slot_name("talos-v1-12-installer-with-extensions", spec())
    assert len(long) <= 32 and long.startswith("iso-talos")
    assert long != desired.slot_name("talos-v1-12-installer-with-extensionz", spec())


def test_placement() -> None:
    assert desired.placement("talos", spec(), "storage-pool") == desired.Placement(
        "/storage-pool/iso/talos.iso", created_by_us=True
    )
    custom = spec(target={"routerRef": "rds", "pool": "raid1", "directory": "images/boot"})
    assert desired.placement("t", custom, "storage-pool").path == "/raid1/images/boot/t.iso"
    existing = ISOCDROMSpec.model_validate(
        {"source": {"rdsPath": "raid1/iso/fedora.iso"}, "target": {"routerRef": "rds"}}
    )
    assert desired.placement("f", existing, "storage-pool") == desired.Placement(
        "/raid1/iso/fedora.iso", created_by_us=False
    )


def test_subscribers_come_from_boot_sources() -> None:
    def host(ns: str, name: str, source: dict[str, Any] | None) -> dict[str, Any]:
        return {"metadata": {"namespace": ns, "name": name}, "spec": {"bootSource": source} if source else {}}

    hosts = [
        host("b", "n2", {"type": "isocdrom", "isocdromRef": "talos"}),
        host("a", "n1", {"type": "isocdrom", "isocdromRef": "talos"}),
        host("a", "n3", {"type": "isocdrom", "isocdromRef": "other"}),
        host("a", "n4", {"type": "pxe"}),
        host("a", "n5", None),
    ]
    subs = desired.subscribers(hosts, "talos")
    assert subs == [{"namespace": "a", "name": "n1"}, {"namespace": "b", "name": "n2"}]
    assert desired.describe_subscribers(subs, limit=1) == "a/n1 and 1 more"


def test_status_changes_only_lists_differences() -> None:
    assert desired.status_changes({"phase": "Ready", "size": 3}, {"phase": "Ready", "size": 4}) == {"size": 4}
    assert desired.status_changes({"phase": "Ready"}, {"phase": "Ready"}) == {}


def test_temp_name_hides_the_partial_copy() -> None:
    assert transfer.temp_name("/storage-pool/iso/t.iso") == "/storage-pool/iso/.t.iso.partial"
    assert rds_path("/storage-pool/iso/t.iso") == "storage-pool/iso/t.iso"


class FakeRouter:
    """Records command lines; answers prints from a canned disk table (as-value form)."""

    def __init__(self) -> None:
        self.commands: list[str] = []
        self.disks: dict[str, dict[str, str]] = {}

    def run(self, command: str, *, idempotent: bool, timeout: float | None = None) -> CommandResult:
        self.commands.append(command)
        if command.startswith(":put [/disk print"):
            rows = [d for slot, d in self.disks.items() if f'slot="{slot}"' in command]
            return CommandResult(";".join(";".join(f"{k}={v}" for k, v in d.items()) for d in rows), "", 0)
        if command.startswith("/disk add"):
            self.disks["iso-t"] = {
                ".id": "*5",
                "slot": "iso-t",
                "file-path": "storage-pool/iso/t.iso",
                "iscsi-export": "true",
                "iscsi-server-iqn": "iqn.2000-02.com.mikrotik:iso-t",
                "iscsi-server-port": "3260",
            }
        if command.startswith("/disk set"):
            for disk in self.disks.values():
                disk["iscsi-export"] = "true" if "iscsi-export=yes" in command else "false"
        if command.startswith("/disk remove"):
            self.disks.clear()
        return CommandResult("", "", 0)


def test_export_commands_are_quoted_and_idempotent() -> None:
    router = FakeRouter()
    exports = RDSExports(RouterOSCli(router))
    first = exports.ensure("iso-t", "/storage-pool/iso/t.iso")
    assert first.iqn == "iqn.2000-02.com.mikrotik:iso-t" and first.item_id == "*5" and first.port == 3260
    assert (
        '/disk add type="file" file-path="storage-pool/iso/t.iso" slot="iso-t" iscsi-export=yes'
        in router.commands
    )
    adds = len([c for c in router.commands if c.startswith("/disk add")])
    exports.ensure("iso-t", "/storage-pool/iso/t.iso")
    assert len([c for c in router.commands if c.startswith("/disk add")]) == adds
    exports.remove("iso-t")
    assert router.commands[-2] == '/disk set [find where slot="iso-t"] iscsi-export=no'
    assert router.commands[-1] == '/disk remove [find where slot="iso-t"]'


def test_slot_taken_by_another_file_is_not_reused() -> None:
    router = FakeRouter()
    router.disks["iso-t"] = {
        ".id": "*1",
        "slot": "iso-t",
        "file-path": "storage-pool/other.img",
        "iscsi-export": "false",
    }
    with pytest.raises(Exception, match="already exists"):
        RDSExports(RouterOSCli(router)).ensure("iso-t", "/storage-pool/iso/t.iso")
