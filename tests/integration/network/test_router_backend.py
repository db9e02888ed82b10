"""The network operator (a real `kopf run`) against the real apiserver and the RouterOS simulator.

The router's own command log is the witness: which writes happened, and that a no-op pass
makes none.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.kube import ControlPlane
from tests.support.network import (
    events_for,
    network,
    reservation,
    reservation_status,
    router_objects,
    snapshot,
    tagged,
    unique,
    wait_ready,
    writes_since,
)
from tests.support.operators import OperatorProcess, start_operator
from tests.support.rossim import RosSim, start_rossim
from tests.support.wait import wait_for

MODULE = "trellis.operators.network.handlers"


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RosSim]:
    s = start_rossim(tmp_path_factory.mktemp("rossim"), tls=False)
    yield s
    s.stop()


@pytest.fixture(scope="module")
def operator(crds: ControlPlane, system_ns: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    logs = tmp_path_factory.mktemp("operator-logs")
    env = {"TRELLIS_NAMESPACE": system_ns}
    holder: dict[str, OperatorProcess] = {"op": start_operator(crds, MODULE, logs, env=env)}

    class Handle:
        @property
        def proc(self) -> OperatorProcess:
            return holder["op"]

        def restart(self) -> None:
            holder["op"].stop()
            holder["op"] = start_operator(crds, MODULE, logs, env=env)

    yield Handle()
    holder["op"].stop()


@pytest.fixture(scope="module")
def router(crds: ControlPlane, sim: RosSim, system_ns: str, operator: Any) -> str:
    name = unique("rtr")
    crds.apply(router_objects(sim, name, system_ns))
    return name


def test_router_probe_reports_version_and_identity(crds: ControlPlane, router: str) -> None:
    cond = crds.wait_condition("routers", router, "Ready", timeout=60)
    status = crds.get("routers", router)["status"]
    assert status["reachable"] is True
    assert status["routerOSVersion"].startswith("7.")
    assert status["identity"] and status["boardName"]
    assert cond["reason"] == "Reachable"


def test_router_with_bad_password_is_reported(
    crds: ControlPlane, sim: RosSim, system_ns: str, operator: Any
) -> None:
    name = unique("badrtr")
    objs = router_objects(sim, name, system_ns)
    objs[0]["stringData"]["password"] = "wrong"
    crds.apply(objs)
    cond = crds.wait_condition("routers", name, "Ready", status="False", timeout=60)
    assert cond["reason"] == "LoginFailed"
    assert crds.get("routers", name)["status"]["reachable"] is False
    crds.kubectl("delete", "router.trellis.dev", name)


def _user_entries(sim: RosSim) -> None:
    api = sim.api()
    try:
        list(api("/ip/dns/static/add", name="printer.home", address="192.168.88.20", comment="added by hand"))
        list(api("/interface/bridge/add", name="bridge-home"))
        list(api("/ip/pool/add", name="home", ranges="192.168.88.100-192.168.88.200"))
    finally:
        api.close()


def test_sync_change_noop_and_delete(
    crds: ControlPlane, sim: RosSim, router: str, namespace: str, operator: Any
) -> None:
    _user_entries(sim)
    before_user = {m: [r for r in rows if not r.get("comment", "").startswith("trellis:")]
                   for m, rows in snapshot(sim).items()}  # fmt: skip
    net = unique("lab")
    dhcp = {
        "server": "router",
        "range": {"start": "10.20.0.100", "end": "10.20.0.199"},
        "domain": "lab.example",
        "dns": ["10.20.0.1"],
        "pxe": {"nextServer": "10.20.0.5", "bootFile": "undionly.kpxe"},
    }
    crds.apply(
        network(net, "10.20.0.0/24", router, gateway="10.20.0.1", interface="ether2", vlan=20, dhcp=dhcp)
    )
    crds.apply(
        [
            reservation("node-a", net, "52:54:00:20:00:01", hostname="node-a"),
            reservation("node-b", net, "52:54:00:20:00:02", hostname="node-b"),
            reservation("bmc-c", net, "52:54:00:20:00:03", ip="10.20.0.50", hostname="bmc-c"),
        ],
        namespace,
    )
    wait_ready(crds, namespace, ["node-a", "node-b", "bmc-c"])
    ips = {n: reservation_status(crds, namespace, n)["ip"] for n in ("node-a", "node-b", "bmc-c")}
    assert ips == {"node-a": "10.20.0.2", "node-b": "10.20.0.3", "bmc-c": "10.20.0.50"}

    rows = tagged(sim, net)
    assert [r["name"] for r in rows["interface/bridge"]] == [f"trellis-{net}"]
    assert rows["interface/vlan"][0]["vlan-id"] == "20" and rows["interface/vlan"][0]["interface"] == "ether2"
    assert rows["ip/address"][0]["address"] == "10.20.0.1/24"
    assert rows["ip/pool"][0]["ranges"] == "10.20.0.100-10.20.0.199"
    assert rows["ip/dhcp-server"][0]["interface"] == f"trellis-{net}"
    assert rows["ip/dhcp-server/network"][0]["next-server"] == "10.20.0.5"
    leases = {r["comment"].rsplit(":", 1)[1]: r for r in rows["ip/dhcp-server/lease"]}
    assert {k: (v["address"], v["mac-address"]) for k, v in leases.items()} == {
        f"{namespace}/node-a": ("10.20.0.2", "52:54:00:20:00:01"),
        f"{namespace}/node-b": ("10.20.0.3", "52:54:00:20:00:02"),
        f"{namespace}/bmc-c": ("10.20.0.50", "52:54:00:20:00:03"),
    }
    assert sorted(r["name"] for r in rows["ip/dns/static"]) == [
        "bmc-c.lab.example",
        "node-a.lab.example",
        "node-b.lab.example",
    ]
    status = crds.get("networks", net)["status"]
    assert (status["size"], status["allocated"], status["reservations"], status["conflicts"]) == (
        254,
        3,
        3,
        0,
    )
    assert status["free"] == 254 - 100 - 1 - 3
    assert status["allocations"][f"{namespace}/node-a"] == "10.20.0.2"

    # One reservation changes: exactly one lease (and its DNS record) is rewritten.
    mark = sim.control.last_seq()
    crds.kubectl("patch", "dhcpreservation.trellis.dev", "bmc-c", "-n", namespace, "--type=merge",
                 "-p", '{"spec":{"ip":"10.20.0.60"}}')  # fmt: skip
    wait_for(lambda: reservation_status(crds, namespace, "bmc-c").get("ip") == "10.20.0.60", timeout=30)
    wait_ready(crds, namespace, ["bmc-c"])
    writes = writes_since(sim, mark)
    assert [(w["menu"], w["verb"]) for w in writes] == [
        ("/ip/dhcp-server/lease", "set"),
        ("/ip/dns/static", "set"),
    ], writes
    assert leases[f"{namespace}/bmc-c"][".id"] in writes[0]["text"]

    # A fresh operator reads everything again and finds nothing to do: zero writes.
    mark = sim.control.last_seq()
    operator.restart()

    def full_read():
        return any(e["menu"] == "/ip/dns/static" and e["verb"] == "print" for e in sim.control.log(mark))

    wait_for(full_read, timeout=60, what="a full read after restart")
    wait_ready(crds, namespace, ["node-a", "node-b", "bmc-c"])
    assert writes_since(sim, mark) == []

    # Deleting the Network is refused while reservations reference it; nothing is torn down.
    mark = sim.control.last_seq()
    crds.kubectl("delete", "network.trellis.dev", net, "--wait=false")
    cond = crds.wait_condition("networks", net, "Ready", status="False", timeout=30)
    assert cond["reason"] == "DeletionBlocked" and "3 DHCPReservation" in cond["message"]
    assert writes_since(sim, mark) == []
    assert len(tagged(sim, net)["ip/dhcp-server/lease"]) == 3

    # Removing one reservation removes its lease and record only.
    crds.kubectl("delete", "dhcpreservation.trellis.dev", "node-b", "-n", namespace)
    crds.kubectl("delete", "dhcpreservation.trellis.dev", "node-a", "bmc-c", "-n", namespace)
    wait_for(lambda: crds.kubectl("get", "network.trellis.dev", net, check=False).returncode != 0,
             timeout=60, what="Network deletion")  # fmt: skip
    assert all(not rows for rows in tagged(sim, net).values())
    after_user = {m: [r for r in rows if not r.get("comment", "").startswith("trellis:")]
                  for m, rows in snapshot(sim).items()}  # fmt: skip
    assert after_user == before_user


def test_per_host_boot_options_become_lease_options(
    crds: ControlPlane, sim: RosSim, router: str, namespace: str, operator: Any
) -> None:
    net = unique("pxe")
    dhcp = {"server": "router", "pxe": {"nextServer": "10.60.0.5", "bootFile": "undionly.kpxe"}}
    crds.apply(network(net, "10.60.0.0/24", router, gateway="10.60.0.1", dhcp=dhcp))
    crds.apply(reservation("plain", net, "52:54:00:60:00:01", ip="10.60.0.10"), namespace)
    wait_ready(crds, namespace, ["plain"])

    mark = sim.control.last_seq()
    pxe = {"bootFile": "custom.kpxe", "rootPath": "iscsi:10.60.0.1::::iqn.2000-02.com.mikrotik:live"}
    crds.apply(reservation("custom", net, "52:54:00:60:00:02", ip="10.60.0.11", pxe=pxe), namespace)
    wait_ready(crds, namespace, ["custom"])
    writes = writes_since(sim, mark)
    assert sorted((w["menu"], w["verb"]) for w in writes) == [
        ("/ip/dhcp-server/lease", "add"),
        ("/ip/dhcp-server/option", "add"),
        ("/ip/dhcp-server/option", "add"),
    ], writes
    rows = tagged(sim, net)
    options = {r["code"]: r for r in rows["ip/dhcp-server/option"]}
    assert {code: r["value"] for code, r in options.items()} == {
        "67": "'custom.kpxe'",
        "17": "'iscsi:10.60.0.1::::iqn.2000-02.com.mikrotik:live'",
    }
    assert all(r["comment"].endswith(f":{namespace}/custom") for r in options.values())
    leases = {r["comment"].rsplit(":", 1)[1]: r for r in rows["ip/dhcp-server/lease"]}
    custom_lease = leases[f"{namespace}/custom"]
    assert sorted(custom_lease["dhcp-option"].split(",")) == sorted(r["name"] for r in options.values())
    assert not leases[f"{namespace}/plain"].get("dhcp-option")

    # A fresh operator finds nothing to do: zero writes.
    mark = sim.control.last_seq()
    operator.restart()
    wait_for(
        lambda: any(
            e["menu"] == "/ip/dhcp-server/option" and e["verb"] == "print" for e in sim.control.log(mark)
        ),
        timeout=60,
        what="a full read after restart",
    )
    wait_ready(crds, namespace, ["plain", "custom"])
    assert writes_since(sim, mark) == []

    # Gone with its reservation: lease first, then its options.
    crds.kubectl("delete", "dhcpreservation.trellis.dev", "custom", "-n", namespace)
    wait_for(lambda: not tagged(sim, net)["ip/dhcp-server/option"], timeout=60, what="option removal")
    assert [r["comment"].rsplit(":", 1)[1] for r in tagged(sim, net)["ip/dhcp-server/lease"]] == [
        f"{namespace}/plain"
    ]
    crds.kubectl("delete", "dhcpreservation.trellis.dev", "plain", "-n", namespace)
    crds.kubectl("delete", "network.trellis.dev", net, "--wait=false")
    wait_for(lambda: all(not rows for rows in tagged(sim, net).values()), timeout=60, what="teardown")


def _reason(crds: ControlPlane, namespace: str, name: str, cond: str = "Ready") -> str | None:
    found = crds.condition("dhcpreservations", name, cond, namespace)
    return str(found.get("reason")) if found else None


def _warnings(crds: ControlPlane, namespace: str | None, name: str) -> set[str]:
    return {e["reason"] for e in events_for(crds, namespace, name) if e.get("type") == "Warning"}


def test_bad_input_is_reported_and_changes_nothing(
    crds: ControlPlane, sim: RosSim, router: str, namespace: str, operator: Any
) -> None:
    dhcp = {"server": "router", "range": {"start": "10.30.0.100", "end": "10.30.0.199"}}
    older, newer, missing, clash = unique("older"), unique("newer"), unique("norouter"), unique("clash")
    crds.apply(network(older, "10.30.0.0/24", router, gateway="10.30.0.1", dhcp=dhcp))
    crds.apply(reservation("first", older, "52:54:00:30:00:01", ip="10.30.0.10"), namespace)
    wait_ready(crds, namespace, ["first"])

    mark = sim.control.last_seq()
    # A user already has a pool with the name the next Network would use.
    api = sim.api()
    list(api("/ip/pool/add", name=f"trellis-{clash}", ranges="10.50.0.10-10.50.0.20", comment="not yours"))
    api.close()
    crds.apply(network(newer, "10.30.0.0/16", router, gateway="10.30.1.1"))
    crds.apply(
        network(missing, "10.40.0.0/24", "no-such-router", gateway="10.40.0.1", dhcp={"server": "router"})
    )
    clash_dhcp = {"server": "router", "range": {"start": "10.50.0.100", "end": "10.50.0.199"}}
    crds.apply(network(clash, "10.50.0.0/24", router, gateway="10.50.0.1", dhcp=clash_dhcp))
    crds.apply(
        [
            reservation("same-ip", older, "52:54:00:30:00:02", ip="10.30.0.10"),
            reservation("same-mac", older, "52:54:00:30:00:01"),
            reservation("outside", older, "52:54:00:30:00:03", ip="10.31.0.5"),
            reservation("in-range", older, "52:54:00:30:00:04", ip="10.30.0.150"),
            reservation("gateway", older, "52:54:00:30:00:05", ip="10.30.0.1"),
            reservation("orphan", "no-such-network", "52:54:00:30:00:06"),
            reservation("waiting", missing, "52:54:00:30:00:07"),
        ],
        namespace,
    )
    expected = {
        "same-ip": "DuplicateIP",
        "same-mac": "DuplicateMAC",
        "outside": "IPOutsideNetwork",
        "in-range": "IPInDynamicRange",
        "gateway": "IPIsGateway",
        "orphan": "NetworkNotFound",
        "waiting": "NetworkNotReady",
    }
    wait_for(lambda: all(_reason(crds, namespace, n) == r for n, r in expected.items()), timeout=60,
             what="every bad reservation reported")  # fmt: skip
    assert crds.wait_condition("networks", newer, status="False")["reason"] == "Overlapping"
    assert older in (crds.condition("networks", newer, "Ready") or {}).get("message", "")
    assert crds.wait_condition("networks", missing, status="False")["reason"] == "RouterNotFound"
    cond = crds.wait_condition("networks", clash, status="False")
    assert cond["reason"] == "RouterConflict" and "not yours" in cond["message"]

    # Both sides of a conflict carry it; the older one keeps its address and stays Ready.
    first = crds.condition("dhcpreservations", "first", "Conflict", namespace)
    assert first and first["status"] == "True" and f"{namespace}/same-ip" in first["message"]
    assert reservation_status(crds, namespace, "first")["ip"] == "10.30.0.10"
    assert _reason(crds, namespace, "first") == "Synced"
    assert reservation_status(crds, namespace, "same-ip").get("ip") is None
    wait_for(
        lambda: "ConflictDetected" in _warnings(crds, namespace, "first"), timeout=30, what="Event on older"
    )
    wait_for(
        lambda: "DuplicateIP" in _warnings(crds, namespace, "same-ip"), timeout=30, what="Event on newer"
    )
    wait_for(lambda: "Overlapping" in _warnings(crds, None, newer), timeout=30, what="Event on Network")

    # None of it reached the router: only the older Network's single lease exists, nothing else was written.
    assert [w["text"] for w in writes_since(sim, mark)] == [
        f"/ip/pool/add =name=trellis-{clash} =ranges=10.50.0.10-10.50.0.20 =comment=not yours"
    ]
    for net in (newer, missing, clash):
        assert all(not rows for rows in tagged(sim, net).values()), net
    assert len(tagged(sim, older)["ip/dhcp-server/lease"]) == 1

    for name in expected:
        crds.kubectl("delete", "dhcpreservation.trellis.dev", name, "-n", namespace, "--wait=false")
    crds.kubectl("delete", "dhcpreservation.trellis.dev", "first", "-n", namespace)
    for net in (older, newer, missing, clash):
        crds.kubectl("delete", "network.trellis.dev", net, "--wait=false")


def test_router_over_tls_with_ca_from_secret(
    crds: ControlPlane, system_ns: str, operator: Any, tmp_path_factory: pytest.TempPathFactory
) -> None:
    tls_sim = start_rossim(tmp_path_factory.mktemp("rossim-tls"), tls=True)
    try:
        assert tls_sim.tls_cert_pem and tls_sim.api_tls_port
        good, bad = unique("tlsrtr"), unique("tlsbad")
        for name, ca in ((good, tls_sim.tls_cert_pem), (bad, _other_ca())):
            objs = router_objects(tls_sim, name, system_ns)
            meta = {"name": f"{name}-ca", "namespace": system_ns}
            objs.append(
                {"apiVersion": "v1", "kind": "Secret", "metadata": meta, "stringData": {"ca.crt": ca}}
            )
            objs[1]["spec"]["apiTLS"] = {
                "enabled": True,
                "port": tls_sim.api_tls_port,
                "serverName": "localhost",
                "caSecretRef": {"name": f"{name}-ca", "namespace": system_ns, "key": "ca.crt"},
            }
            crds.apply(objs)
        assert crds.wait_condition("routers", good, timeout=60)["reason"] == "Reachable"
        cond = crds.wait_condition("routers", bad, status="False", timeout=60)
        assert cond["reason"] == "Unreachable" and "TLS" in cond["message"]
        for name in (good, bad):
            crds.kubectl("delete", "router.trellis.dev", name)
    finally:
        tls_sim.stop()


def _other_ca() -> str:
    """A self-signed certificate that did not sign the simulator's."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "not-the-router-ca")])
    now = dt.datetime.now(dt.UTC)
    builder = x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
    builder = builder.serial_number(x509.random_serial_number()).not_valid_before(now)
    builder = builder.not_valid_after(now + dt.timedelta(days=1))
    builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    cert = builder.sign(key, hashes.SHA256())
    return cert.public_bytes(serialization.Encoding.PEM).decode()
