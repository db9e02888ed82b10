"""Strategic merge and RFC 6902 on machine configs held as data."""

from __future__ import annotations

import pytest

from trellis.operators.talosdevice.patching import PatchError, json6902, strategic_merge


def base() -> list[dict]:
    return [
        {
            "version": "v1alpha1",
            "machine": {
                "type": "worker",
                "certSANs": ["a"],
                "network": {
                    "interfaces": [
                        {"interface": "eth0", "dhcp": True, "vlans": [{"vlanId": 10, "mtu": 1500}]},
                        {
                            "deviceSelector": {"hardwareAddr": "52:54:00:00:00:01"},
                            "addresses": ["10.0.0.5/24"],
                        },
                    ]
                },
                "sysctls": {"a": "1"},
            },
            "cluster": {
                "network": {"podSubnets": ["10.244.0.0/16"], "serviceSubnets": ["10.96.0.0/12"]},
                "apiServer": {
                    "admissionControl": [
                        {"name": "PodSecurity", "configuration": {"defaults": {"enforce": "baseline"}}}
                    ],
                    "auditPolicy": {"kind": "Policy", "rules": [{"level": "Metadata"}]},
                },
            },
        },
        {
            "apiVersion": "v1alpha1",
            "kind": "VolumeConfig",
            "name": "EPHEMERAL",
            "provisioning": {"maxSize": "10GiB"},
        },
    ]


def test_maps_merge_and_lists_append() -> None:
    out = strategic_merge(base(), [{"machine": {"certSANs": ["b"], "sysctls": {"b": "2"}}}])
    machine = out[0]["machine"]
    assert machine["certSANs"] == ["a", "b"]
    assert machine["sysctls"] == {"a": "1", "b": "2"}


def test_scalars_overwrite_and_null_changes_nothing() -> None:
    out = strategic_merge(base(), [{"machine": {"type": "worker", "sysctls": {"a": "9"}, "certSANs": None}}])
    assert out[0]["machine"]["sysctls"]["a"] == "9"
    assert out[0]["machine"]["certSANs"] == ["a"]


def test_subnets_and_audit_policy_are_replaced() -> None:
    patch = {
        "cluster": {
            "network": {"podSubnets": ["10.1.0.0/16"]},
            "apiServer": {"auditPolicy": {"kind": "Policy", "rules": [{"level": "None"}]}},
        }
    }
    out = strategic_merge(base(), [patch])
    assert out[0]["cluster"]["network"]["podSubnets"] == ["10.1.0.0/16"]
    assert out[0]["cluster"]["network"]["serviceSubnets"] == ["10.96.0.0/12"]
    assert out[0]["cluster"]["apiServer"]["auditPolicy"]["rules"] == [{"level": "None"}]


def test_interfaces_merge_by_name_and_selector_vlans_by_id() -> None:
    patch = {
        "machine": {
            "network": {
                "interfaces": [
                    {
                        "interface": "eth0",
                        "mtu": 9000,
                        "vlans": [{"vlanId": 10, "mtu": 1400}, {"vlanId": 20}],
                    },
                    {"deviceSelector": {"hardwareAddr": "52:54:00:00:00:01"}, "addresses": ["10.0.0.6/24"]},
                    {"interface": "eth2", "dhcp": True},
                ]
            }
        }
    }
    ifaces = strategic_merge(base(), [patch])[0]["machine"]["network"]["interfaces"]
    assert len(ifaces) == 3
    assert ifaces[0]["mtu"] == 9000 and ifaces[0]["dhcp"] is True
    assert ifaces[0]["vlans"] == [{"vlanId": 10, "mtu": 1400}, {"vlanId": 20}]
    assert ifaces[1]["addresses"] == ["10.0.0.5/24", "10.0.0.6/24"]
    assert ifaces[2] == {"interface": "eth2", "dhcp": True}


def test_admission_control_merges_by_name() -> None:
    patch = {
        "cluster": {"apiServer": {"admissionControl": [{"name": "PodSecurity", "configuration": {"x": 1}}]}}
    }
    plugins = strategic_merge(base(), [patch])[0]["cluster"]["apiServer"]["admissionControl"]
    assert len(plugins) == 1
    assert plugins[0]["configuration"] == {"defaults": {"enforce": "baseline"}, "x": 1}


def test_patch_delete_removes_keys_items_and_documents() -> None:
    patch = [
        {
            "machine": {
                "sysctls": {"$patch": "delete"},
                "network": {"interfaces": [{"interface": "eth0", "$patch": "delete"}]},
            }
        },
        {"apiVersion": "v1alpha1", "kind": "VolumeConfig", "name": "EPHEMERAL", "$patch": "delete"},
    ]
    out = strategic_merge(base(), patch)
    assert len(out) == 1
    assert "sysctls" not in out[0]["machine"]
    assert [i.get("interface") for i in out[0]["machine"]["network"]["interfaces"]] == [None]


def test_documents_match_by_kind_and_name_and_unknown_ones_are_appended() -> None:
    patch = [
        {
            "apiVersion": "v1alpha1",
            "kind": "VolumeConfig",
            "name": "EPHEMERAL",
            "provisioning": {"grow": False},
        },
        {
            "apiVersion": "v1alpha1",
            "kind": "VolumeConfig",
            "name": "IMAGECACHE",
            "provisioning": {"maxSize": "5GiB"},
        },
    ]
    out = strategic_merge(base(), patch)
    assert out[1]["provisioning"] == {"maxSize": "10GiB", "grow": False}
    assert out[2]["name"] == "IMAGECACHE"


def test_inputs_are_not_modified() -> None:
    docs = base()
    strategic_merge(docs, [{"machine": {"sysctls": {"z": "1"}}}])
    assert docs == base()


def test_type_mismatch_names_the_path() -> None:
    with pytest.raises(PatchError, match=r"machine\.sysctls"):
        strategic_merge(base(), [{"machine": {"sysctls": ["not", "a", "map"]}}])


def test_v1alpha1_document_cannot_be_deleted() -> None:
    with pytest.raises(PatchError, match="cannot be deleted"):
        strategic_merge(base(), [{"$patch": "delete"}])


def test_json6902_applies_to_v1alpha1_only() -> None:
    ops = [
        {"op": "add", "path": "/machine/kubelet", "value": {"extraArgs": {"max-pods": "200"}}},
        {"op": "replace", "path": "/machine/type", "value": "worker"},
        {"op": "remove", "path": "/machine/certSANs/0"},
    ]
    out = json6902(base(), ops)
    assert out[0]["machine"]["kubelet"] == {"extraArgs": {"max-pods": "200"}}
    assert out[0]["machine"]["certSANs"] == []
    assert out[1] == base()[1]


@pytest.mark.parametrize(
    "ops",
    [
        [{"op": "replace", "path": "/machine/nope", "value": 1}],
        [{"op": "remove", "path": "/cluster/missing"}],
        [{"op": "test", "path": "/machine/type", "value": "controlplane"}],
        [{"op": "frobnicate", "path": "/machine"}],
    ],
)
def test_json6902_failures_are_patch_errors(ops: list[dict]) -> None:
    with pytest.raises(PatchError):
        json6902(base(), ops)
