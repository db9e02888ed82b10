"""Address parsing, ipmitool output parsing, reservations, conflicts and status helpers."""

from __future__ import annotations

import pytest

from trellis.operators.baremetalhost import conflicts, reservations
from trellis.operators.baremetalhost import status as st
from trellis.operators.baremetalhost.bmc import (
    AddressError,
    AuthenticationError,
    BootDevice,
    ProtocolError,
    UnreachableError,
    parse_address,
)
from trellis.operators.baremetalhost.bmc.ipmi import classify_failure, parse_boot_flags, parse_inventory


@pytest.mark.parametrize(
    "raw,driver,host,port,transport,path",
    [
        ("ipmi://10.0.0.5", "ipmi", "10.0.0.5", 623, None, None),
        ("ipmi://bmc1.rack:6230", "ipmi", "bmc1.rack", 6230, None, None),
        ("10.0.0.5:6231", "ipmi", "10.0.0.5", 6231, None, None),
        (
            "redfish://10.0.0.9/redfish/v1/Systems/1",
            "redfish",
            "10.0.0.9",
            None,
            "https",
            "/redfish/v1/Systems/1",
        ),
        (
            "redfish+http://h:8000/redfish/v1/Systems/abc/",
            "redfish",
            "h",
            8000,
            "http",
            "/redfish/v1/Systems/abc",
        ),
        ("redfish+https://[fd00::1]:443", "redfish", "fd00::1", 443, "https", None),
    ],
)
def test_address_schemes(
    raw: str, driver: str, host: str, port: int | None, transport: str | None, path: str | None
):
    parsed = parse_address(raw)
    assert (parsed.driver, parsed.host, parsed.port, parsed.transport, parsed.system_path) == (
        driver, host, port, transport, path,
    )  # fmt: skip


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "idrac://10.0.0.1",
        "ipmi://user:pw@10.0.0.1",
        "ipmi://10.0.0.1/path",
        "redfish://h/Systems/1",
        "ipmi://bad_host!",
        "ipmi://h:0",
        "ipmi://h?privilegelevel=root",
    ],
)
def test_bad_addresses_are_refused(raw: str) -> None:
    with pytest.raises(AddressError):
        parse_address(raw)


def test_ipmitool_output_parsing() -> None:
    flags = parse_boot_flags(
        " Boot Flags :\n   - Boot Flag Valid\n   - Options apply to all future boots\n   - BIOS EFI boot \n"
        "   - Boot Device Selector : Force PXE\n"
    )
    assert (flags.device, flags.persistent, flags.uefi) == (BootDevice.PXE, True, True)
    assert (
        parse_boot_flags("   - Boot Flag Invalid\n   - Boot Device Selector : No override\n").device is None
    )
    inv = parse_inventory(
        "Manufacturer Name         : Unknown (0x1234)\nProduct Name              : Unknown (0x301)\n"
        "System GUID   : 1b4e28ba-2fa1-11d2-883f-0016d3cca427\n"
        " Board Mfg             : Acme\n Product Manufacturer  : Acme Servers\n Product Name          : R1\n"
        " Product Serial        : S42\n"
    )
    assert (inv.manufacturer, inv.model, inv.serial_number) == ("Acme Servers", "R1", "S42")
    assert inv.system_uuid == "1b4e28ba-2fa1-11d2-883f-0016d3cca427"


def test_ipmitool_failures_are_classified() -> None:
    assert isinstance(
        classify_failure("> RAKP 2 HMAC is invalid\nError: Unable to establish"), AuthenticationError
    )
    assert isinstance(
        classify_failure("RAKP 2 message indicates an error : unauthorized name\n"), AuthenticationError
    )
    unreachable = "Get Auth Capabilities error\nError: Unable to establish IPMI v2 / RMCP+ session\n"
    assert isinstance(classify_failure(unreachable), UnreachableError)
    assert isinstance(
        classify_failure("Chassis Power Control: not supported in present state"), ProtocolError
    )


SPEC = {
    "bootMACAddress": "52:54:00:00:00:01",
    "bmc": {"address": "ipmi://10.1.0.5", "credentialsName": "c", "mac": "52:54:00:00:00:0A"},
    "nics": [
        {"name": "eno1", "mac": "52:54:00:00:00:01", "networkRef": "prov", "role": "boot", "ip": "10.0.0.10"},
        {"name": "bmc", "mac": "52:54:00:00:00:0a", "networkRef": "oob", "role": "bmc"},
        {"name": "eno2", "mac": "52:54:00:00:00:02", "networkRef": "storage"},
    ],
}


def test_desired_reservations_per_role() -> None:
    root = reservations.iscsi_root_path("iqn.2000-02.com.mikrotik:talos", "10.0.0.1")
    assert root == "iscsi:10.0.0.1::::iqn.2000-02.com.mikrotik:talos"
    # A device that serves disks at another LUN (the Router's iscsiLun), and a non-default port.
    assert reservations.iscsi_root_path("iqn.x:t", "10.0.0.1", 3261, 1) == "iscsi:10.0.0.1::3261:1:iqn.x:t"
    want = {d.nic: d for d in reservations.desired_reservations("srv1", SPEC, root_path=root)}
    assert want["eno1"].name == "srv1-eno1"
    assert want["eno1"].spec == {
        "networkRef": "prov", "mac": "52:54:00:00:00:01", "ip": "10.0.0.10", "hostname": "srv1",
        "defaultGateway": True, "pxe": {"rootPath": root},
    }  # fmt: skip
    assert want["bmc"].spec["hostname"] == "srv1-bmc" and want["bmc"].spec["defaultGateway"] is True
    assert want["bmc"].spec["pxe"] == {"enabled": False}
    assert want["eno2"].spec["defaultGateway"] is False and want["eno2"].spec["pxe"] == {"enabled": False}
    assert want["eno2"].spec["hostname"] == "srv1-eno2"
    skipped = reservations.desired_reservations("srv1", SPEC, skip_networks=frozenset({"oob"}))
    assert [d.nic for d in skipped] == ["eno1", "eno2"]
    with pytest.raises(ValueError):
        reservations.iscsi_root_path("iqn;reboot", "10.0.0.1")


def _live(name: str, spec: dict, uid: str = "u1") -> dict:
    return {"metadata": {"name": name, "ownerReferences": [{"uid": uid}]}, "spec": spec}


def test_reservation_plan_touches_exactly_what_changed() -> None:
    desired = reservations.desired_reservations("srv1", SPEC)
    by = {d.nic: d for d in desired}
    unchanged = _live("srv1-eno1", {**by["eno1"].spec, "allowInDynamicRange": False})
    moved = _live("srv1-bmc", {**by["bmc"].spec, "networkRef": "old-oob"})
    renamed = _live("srv1-eth9", {"networkRef": "x", "mac": "52:54:00:00:00:09"})
    foreign = _live("srv1-eno2", by["eno2"].spec, uid="someone-else")
    ops = reservations.plan_reservations(desired, [unchanged, moved, renamed, foreign], "u1")
    assert [(o.kind, o.name) for o in ops] == [
        ("recreate", "srv1-bmc"), ("conflict", "srv1-eno2"), ("delete", "srv1-eth9"),
    ]  # fmt: skip
    # The apiserver's default (pxe.enabled true) is no change.
    with_root = reservations.desired_reservations("srv1", SPEC, root_path="iscsi:10.0.0.1::::iqn.x:t")[0]
    defaulted = _live("srv1-eno1", {**with_root.spec, "pxe": {**with_root.spec["pxe"], "enabled": True}})
    assert reservations.plan_reservations([with_root], [defaulted], "u1") == []
    hostname_changed = _live("srv1-eno1", {**by["eno1"].spec, "hostname": "old"})
    ops = reservations.plan_reservations([by["eno1"]], [hostname_changed], "u1")
    assert [(o.kind, o.name) for o in ops] == [("replace", "srv1-eno1")]


def test_duplicate_macs_flag_everyone_and_the_oldest_keeps_its_reservations() -> None:
    old = conflicts.Holder("2026-01-01T00:00:00Z", "a", "srv1")
    new = conflicts.Holder("2026-02-01T00:00:00Z", "b", "srv1-copy")
    index = {("boot", "52:54:00:00:00:01"): [old, new], ("bmc", "52:54:00:00:00:0a"): [old]}
    mine = conflicts.find_conflicts(old, SPEC, index)
    theirs = conflicts.find_conflicts(new, SPEC, index)
    assert [(c.kind, c.others, c.loser) for c in mine] == [("boot", ("b/srv1-copy",), False)]
    assert [(c.kind, c.others, c.loser) for c in theirs] == [
        ("boot", ("a/srv1",), True), ("bmc", ("a/srv1",), True),
    ]  # fmt: skip
    assert "also used by a/srv1" in conflicts.describe(theirs)
    assert conflicts.find_conflicts(old, SPEC, {("boot", "52:54:00:00:00:01"): [old]}) == []


def test_merge_patch_removes_and_nests() -> None:
    old = {"a": 1, "p": {"state": "X", "step": "PowerOn"}, "gone": 3, "list": [1]}
    new = {"a": 1, "p": {"state": "Y"}, "list": [1, 2]}
    assert st.merge_patch(old, new) == {"p": {"state": "Y", "step": None}, "gone": None, "list": [1, 2]}
    assert st.merge_patch(new, new) == {}


def test_errors_count_and_clear() -> None:
    status: dict = {}
    assert st.set_error(status, "RegistrationError", "nope") == 1
    assert st.set_error(status, "RegistrationError", "nope") == 2
    assert status["operationalStatus"] == "error"
    st.clear_error(status)
    assert status == {"errorCount": 0, "operationalStatus": "OK"}
