"""Device rules: endpoint ownership, address uniqueness, last control plane, auto-approval."""

from __future__ import annotations

from typing import Any

from trellis.api.talos import AutoApprovalRule
from trellis.operators.talosdevice.objects import device_status, status_changes
from trellis.operators.talosdevice.rules import (
    DeviceFacts,
    Verdict,
    addresses_of,
    auto_approval,
    blocks_deletion,
    cluster_verdicts,
    endpoint_ip,
)
from trellis.operators.talosdevice.tokens import device_token, token_key, token_matches

ENDPOINT = "https://10.0.0.10:6443"


def dev(
    name: str, created: str, role: str = "worker", approval: str = "Approved", *addrs: str, **kw: Any
) -> DeviceFacts:
    return DeviceFacts(
        name=name,
        created=created,
        mac=kw.pop("mac", "52:54:00:00:00:01"),
        cluster="lab",
        role=role,
        approval=approval,
        addresses=frozenset(addrs),
        **kw,
    )


def test_endpoint_ip_only_for_literals() -> None:
    assert endpoint_ip(ENDPOINT) == "10.0.0.10"
    assert endpoint_ip("https://[fd00::1]:6443") == "fd00::1"
    assert endpoint_ip("https://lab.example:6443") is None


def test_addresses_of_rendered_config() -> None:
    docs = [
        {
            "machine": {
                "network": {
                    "interfaces": [
                        {
                            "addresses": ["10.0.0.10/24"],
                            "vip": {"ip": "10.0.0.5"},
                            "vlans": [{"addresses": ["10.2.0.1/24"]}],
                        }
                    ]
                }
            }
        },
        {"kind": "VolumeConfig"},
    ]
    assert addresses_of(docs) == {"10.0.0.10", "10.0.0.5", "10.2.0.1"}


def test_first_control_plane_must_own_endpoint() -> None:
    verdicts = cluster_verdicts(
        [
            dev("cp-1", "t1", "controlplane", "Approved", "10.0.0.11"),
            dev("w-1", "t2", "worker", "Approved", "10.0.0.21"),
        ],
        ENDPOINT,
    )
    assert verdicts["cp-1"].reason == "EndpointNotOwned" and not verdicts["cp-1"].ok
    assert verdicts["w-1"].ok
    owned = cluster_verdicts(
        [
            dev("cp-1", "t1", "controlplane", "Approved", "10.0.0.11"),
            dev("cp-2", "t2", "controlplane", "Approved", "10.0.0.10"),
        ],
        ENDPOINT,
    )
    assert owned["cp-1"].ok and owned["cp-2"].ok
    assert cluster_verdicts([dev("cp-1", "t1", "controlplane")], "https://lab.example:6443")["cp-1"].ok


def test_worker_may_not_take_the_endpoint() -> None:
    verdicts = cluster_verdicts([dev("w-1", "t1", "worker", "Approved", "10.0.0.10")], ENDPOINT)
    assert verdicts["w-1"].reason == "EndpointOnWorker"


def test_older_device_keeps_a_duplicated_address() -> None:
    verdicts = cluster_verdicts(
        [
            dev("new", "2026-02", "worker", "Approved", "10.0.0.30"),
            dev("old", "2026-01", "worker", "Approved", "10.0.0.30"),
        ],
        "https://lab.example:6443",
    )
    assert verdicts["old"].ok
    assert verdicts["new"] == Verdict(False, "AddressConflict", "address 10.0.0.30 already belongs to old")


def test_unapproved_and_deleting_devices_are_not_judged() -> None:
    verdicts = cluster_verdicts(
        [
            dev("p", "t1", "worker", "Pending", "10.0.0.30"),
            dev("d", "t2", "worker", "Approved", "10.0.0.30", deleting=True),
        ],
        ENDPOINT,
    )
    assert verdicts == {}


def test_last_control_plane_cannot_be_demoted() -> None:
    devices = [
        dev("cp-1", "t1", "worker", "Approved", served_role="controlplane"),
        dev("w-1", "t2", "worker", "Approved"),
    ]
    verdicts = cluster_verdicts(devices, "https://lab.example:6443")
    assert verdicts["cp-1"].reason == "LastControlPlane"
    assert verdicts["w-1"].ok
    alone = cluster_verdicts(devices[:1], "https://lab.example:6443")
    assert alone["cp-1"].ok


def test_deleting_the_last_control_plane_waits_for_the_others() -> None:
    cp = dev("cp-1", "t1", "controlplane")
    worker = dev("w-1", "t2")
    assert blocks_deletion(cp, [cp, worker])
    assert blocks_deletion(cp, [cp]) is None
    assert blocks_deletion(cp, [cp, worker, dev("cp-2", "t3", "controlplane")]) is None
    assert blocks_deletion(cp, [cp, dev("w-1", "t2", deleting=True)]) is None
    assert blocks_deletion(worker, [cp, worker]) is None


def rule(**kw: Any) -> AutoApprovalRule:
    return AutoApprovalRule.model_validate({"name": "r", "limit": 2, **kw})


def test_auto_approval_matching() -> None:
    pending = dev(
        "x", "t", "worker", "Pending", mac="52:54:00:AA:01:02", boot_ip="10.9.0.7", labels={"pool": "a"}
    )
    assert auto_approval(pending, [rule(macPrefix="52:54:00:aa")], [])
    assert auto_approval(pending, [rule(macPrefix="52:54:01")], []) is None
    assert auto_approval(pending, [rule(cidr="10.9.0.0/24")], [])
    assert auto_approval(pending, [rule(cidr="10.8.0.0/24")], []) is None
    assert auto_approval(pending, [rule(selector={"matchLabels": {"pool": "a"}})], [])
    assert (
        auto_approval(
            pending,
            [rule(selector={"matchExpressions": [{"key": "pool", "operator": "NotIn", "values": ["a"]}]})],
            [],
        )
        is None
    )
    no_ip = dev("y", "t", "worker", "Pending")
    assert auto_approval(no_ip, [rule(cidr="10.9.0.0/24")], []) is None
    both = [
        rule(name="first", macPrefix="52:54:00:aa", limit=1),
        rule(name="second", macPrefix="52", limit=5),
    ]
    used = [dev("o", "t", approved_by_rule="first")]
    chosen = auto_approval(pending, both, used)
    assert chosen is not None and chosen.name == "second"
    assert auto_approval(dev("z", "t", "worker", "Approved"), both, []) is None


def test_auto_approval_limit() -> None:
    r = rule(macPrefix="52", limit=2)
    taken = [dev(f"o{i}", "t", approved_by_rule="r") for i in range(2)]
    assert auto_approval(dev("n", "t", "worker", "Pending"), [r], taken) is None
    assert auto_approval(dev("n", "t", "worker", "Pending"), [r], taken[:1])


def test_device_status_is_quiet_when_nothing_changed() -> None:
    obj: dict[str, Any] = {
        "metadata": {"name": "d", "generation": 3},
        "spec": {"approval": "Approved", "role": "worker"},
        "status": {},
    }
    first = device_status(obj, Verdict(True, "ConfigReady", "ok"), ("x", "y"))
    assert first["phase"] == "Approved" and first["role"] == "worker"
    obj["status"] = first
    again = device_status(obj, Verdict(True, "ConfigReady", "ok"), ("x", "y"))
    assert status_changes(obj["status"], again) == {}
    obj["status"]["phase"] = "ConfigServed"
    assert device_status(obj, Verdict(True, "ConfigReady", "ok"), ("x", "y"))["phase"] == "ConfigServed"


def test_tokens_are_per_device_and_compared_safely() -> None:
    key = token_key("c2VjcmV0Ym94")
    a = device_token(key, "ns", "d", "uid-1", "52:54:00:00:00:01")
    assert a == device_token(key, "ns", "d", "uid-1", "52:54:00:00:00:01".upper())
    assert a != device_token(key, "ns", "d", "uid-2", "52:54:00:00:00:01")
    assert a != device_token(key, "ns", "d", "uid-1", "52:54:00:00:00:01", rotation="1")
    assert a != device_token(token_key("other"), "ns", "d", "uid-1", "52:54:00:00:00:01")
    assert token_matches(a, a) and not token_matches(a, None) and not token_matches(a, a[:-1] + "x")
