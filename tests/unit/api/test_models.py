"""The pydantic models parse the documented examples, round-trip them, and validate like the CRDs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from trellis.api import BY_KIND, BareMetalHost, DHCPReservation, Network, Registry, TalosCluster, TalosDevice
from trellis.api.common import TrellisResource, normalize_mac, wire_name

REPO = Path(__file__).resolve().parents[3]
EXAMPLES = sorted((REPO / "docs" / "examples").glob("*.yaml"))


def _trellis_objects(path: Path) -> list[dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    return [d for d in docs if d["apiVersion"] == "trellis.dev/v1alpha1"]


def test_every_kind_has_an_example() -> None:
    kinds = {obj["kind"] for path in EXAMPLES for obj in _trellis_objects(path)}
    assert kinds == set(BY_KIND)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_round_trips(path: Path) -> None:
    for obj in _trellis_objects(path):
        model = BY_KIND[obj["kind"]].model_validate(obj)
        assert model.model_dump(mode="json", by_alias=True, exclude_unset=True) == obj


def test_snake_case_in_python_camel_case_on_the_wire() -> None:
    assert wire_name("boot_mac_address") == "bootMACAddress"
    assert wire_name("ipxe_script_url") == "ipxeScriptURL"
    assert wire_name("pod_cidrs") == "podCIDRs"
    assert wire_name("router_os_version") == "routerOSVersion"
    assert wire_name("api_tls") == "apiTLS"
    assert wire_name("ip") == "ip"
    host = BareMetalHost.model_validate(
        {
            "kind": "BareMetalHost",
            "metadata": {"name": "h"},
            "spec": {
                "bmc": {"address": "ipmi://h", "credentialsName": "s"},
                "bootMACAddress": "52:54:00:00:00:01",
            },
        }
    )
    assert host.spec.boot_mac_address == "52:54:00:00:00:01"
    assert host.spec.online is False and host.spec.boot_mode == "UEFI"
    assert host.to_k8s()["spec"]["bootMACAddress"] == "52:54:00:00:00:01"


def test_normalize_mac() -> None:
    assert normalize_mac(" 52-54-00-AB-CD-EF ") == "52:54:00:ab:cd:ef"


def _spec(kind: type[TrellisResource], spec: dict[str, Any]) -> Any:
    return kind.model_validate({"kind": kind.__name__, "metadata": {"name": "x"}, "spec": spec})


@pytest.mark.parametrize(
    ("kind", "spec"),
    [
        (DHCPReservation, {"networkRef": "lab", "mac": "00:11:22:33:44"}),
        (DHCPReservation, {"networkRef": "lab", "mac": "00:11:22:33:44:55", "hostname": "web_01"}),
        (DHCPReservation, {"networkRef": "lab", "mac": "00:11:22:33:44:55", "ip": "10.0.0.300"}),
        (Network, {"cidr": "10.0.0.5/24"}),
        (Network, {"cidr": "10.0.0.0/24", "vlan": 4095}),
        (
            BareMetalHost,
            {"bmc": {"address": "idrac://h", "credentialsName": "s"}, "bootMACAddress": "52:54:00:00:00:01"},
        ),
        (Registry, {"mode": "managed", "managed": {"storage": {"size": "-1Gi"}}}),
        (Registry, {"mode": "managed", "managed": {"storage": {"size": -1}}}),
        (TalosCluster, {"endpoint": "https://e:6443", "talosVersion": "1.12", "kubernetesVersion": "1.35.0"}),
        (TalosDevice, {"mac": "52:54:00:aa:bb:01", "approval": "Maybe"}),
    ],
)
def test_models_reject_what_the_schema_rejects(kind: type[TrellisResource], spec: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        _spec(kind, spec)
