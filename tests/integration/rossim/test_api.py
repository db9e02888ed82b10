"""The RouterOS binary API through the real librouteros 4.2.2 client, on every menu."""

from __future__ import annotations

import socket
import ssl
import threading

import librouteros
import pytest
from librouteros.exceptions import FatalError, TrapError
from librouteros.query import And, Key, Or
from rossim.wire import encode_sentence, encode_word

from tests.support.rossim import RosSim


@pytest.fixture
def api(fresh: RosSim):  # type: ignore[no-untyped-def]
    conn = fresh.api()
    yield conn
    conn.close()


def trap(call) -> TrapError:  # type: ignore[no-untyped-def]
    with pytest.raises(TrapError) as info:
        call()
    return info.value


def test_crud_on_every_network_menu(api) -> None:  # type: ignore[no-untyped-def]
    bridge = api.path("interface", "bridge")
    br = bridge.add(name="br-lab", **{"vlan-filtering": True})
    assert br.startswith("*")
    vlan = api.path("interface", "vlan").add(name="vlan20", **{"vlan-id": 20, "interface": "br-lab"})
    api.path("interface", "bridge", "port").add(bridge="br-lab", interface="ether2", pvid=20)
    api.path("interface", "bridge", "vlan").add(
        bridge="br-lab", **{"vlan-ids": "20", "tagged": "br-lab,ether3"}
    )
    api.path("ip", "address").add(address="10.20.0.1/24", interface="vlan20", comment="trellis:net/a")
    api.path("ip", "pool").add(name="pool-a", ranges="10.20.0.100-10.20.0.199")
    api.path("ip", "dhcp-server").add(name="dhcp-a", interface="vlan20", **{"address-pool": "pool-a"})
    api.path("ip", "dhcp-server", "network").add(
        address="10.20.0.0/24",
        gateway="10.20.0.1",
        **{
            "dns-server": "10.20.0.1",
            "next-server": "10.20.0.2",
            "boot-file-name": "ipxe.efi",
            "domain": "lab",
        },
    )
    api.path("ip", "dhcp-server", "option").add(name="ipxe-script", code=67, value="'http://x/boot.ipxe'")
    lease = api.path("ip", "dhcp-server", "lease").add(
        address="10.20.0.10",
        **{
            "mac-address": "aa:bb:cc:00:00:01",
            "server": "dhcp-a",
            "comment": "trellis:r1",
            "dhcp-option": "ipxe-script",
        },
    )
    api.path("ip", "dhcp-relay").add(
        name="relay-a", interface="br-lab", **{"dhcp-server": "10.0.0.1", "local-address": "10.20.0.1"}
    )
    api.path("ip", "dns", "static").add(name="node1.lab", address="10.20.0.10", comment="trellis:r1")
    api.path("ip", "dns", "static").add(name="node1.lab", address="10.20.0.11")
    masq = api.path("ip", "firewall", "nat").add(
        chain="srcnat", action="masquerade", **{"out-interface": "ether1"}
    )
    exempt = api.path("ip", "firewall", "nat").add(
        chain="srcnat",
        action="accept",
        protocol="udp",
        **{"src-port": "67", "dst-port": "67", "out-interface": "br-lab", "place-before": masq},
    )
    assert [r[".id"] for r in api.path("ip", "firewall", "nat")] == [exempt, masq]

    leases = list(api.path("ip", "dhcp-server", "lease"))
    assert leases == [
        {
            ".id": lease,
            "address": "10.20.0.10",
            "mac-address": "AA:BB:CC:00:00:01",
            "server": "dhcp-a",
            "dhcp-option": "ipxe-script",
            "status": "waiting",
            "last-seen": "never",
            "blocked": False,
            "radius": False,
            "comment": "trellis:r1",
            "disabled": False,
            "dynamic": False,
        }
    ]
    api.path("ip", "dhcp-server", "lease").update(**{".id": lease, "address": "10.20.0.11"})
    assert [r["address"] for r in api.path("ip", "dhcp-server", "lease")] == ["10.20.0.11"]
    vlans = list(api.path("interface", "vlan"))
    assert vlans[0]["vlan-id"] == 20 and vlans[0][".id"] == vlan
    pools = list(api.path("ip", "pool"))
    assert pools[0]["total"] == 100
    address = next(iter(api.path("ip", "address")))
    assert address["network"] == "10.20.0.0" and address["actual-interface"] == "vlan20"
    names = {r["name"]: r["type"] for r in api.path("interface")}
    assert names["br-lab"] == "bridge" and names["vlan20"] == "vlan" and names["ether1"] == "ether"

    api.path("ip", "dhcp-server", "lease").remove(lease)
    dns_ids = [r[".id"] for r in api.path("ip", "dns", "static")]
    api.path("ip", "dns", "static").remove(*dns_ids)
    assert list(api.path("ip", "dns", "static")) == []
    assert list(api.path("ip", "dhcp-server", "lease")) == []


def test_system_menus(api) -> None:  # type: ignore[no-untyped-def]
    (resource,) = api.path("system", "resource")
    assert resource["board-name"] == "RDS2216" and resource["total-memory"] > 0
    api.path("system", "identity").update(name="rack-router")
    assert list(api.path("system", "identity")) == [{"name": "rack-router"}]


def test_disk_and_file_over_api(api, fresh: RosSim) -> None:  # type: ignore[no-untyped-def]
    disks = api.path("disk")
    ret = disks.add(
        type="file", **{"file-path": "storage-pool/iso/a.iso", "file-size": "16M", "slot": "iso-a"}
    )
    disks.update(**{".id": ret, "iscsi-export": True})
    (row,) = disks.select(Key("iscsi-server-iqn"), Key("file-size")).where(
        Key("file-path") == "storage-pool/iso/a.iso"
    )
    assert row == {"iscsi-server-iqn": "iqn.2000-02.com.mikrotik:iso-a", "file-size": 16 << 20}
    files = {r["name"]: r for r in api.path("file")}
    assert files["storage-pool/iso/a.iso"]["type"] == ".iso file"
    assert files["storage-pool"]["type"] == "disk"
    api.path("file").add(type="directory", name="storage-pool/images")
    assert "storage-pool/images" in {r["name"] for r in api.path("file")}
    disks.update(**{".id": ret, "iscsi-export": False})
    disks.remove(ret)
    assert [r["slot"] for r in disks] == ["storage-pool"]


def test_queries_proplist_and_stack_operations(api) -> None:  # type: ignore[no-untyped-def]
    leases = api.path("ip", "dhcp-server", "lease")
    for i in range(6):
        leases.add(
            address=f"10.0.0.{i + 10}",
            **{
                "mac-address": f"AA:00:00:00:00:{i:02X}",
                "comment": "ours" if i % 2 else "user",
                "disabled": i == 5,
            },
        )
    ours = leases.select(Key("address")).where(Key("comment") == "ours", Key("disabled") != True)  # noqa: E712
    assert [r["address"] for r in ours] == ["10.0.0.11", "10.0.0.13"]
    either = leases.select(Key("address")).where(
        Or(Key("address") == "10.0.0.10", Key("address") == "10.0.0.14")
    )
    assert [r["address"] for r in either] == ["10.0.0.10", "10.0.0.14"]
    both = leases.select(Key("address")).where(And(Key("comment") == "user", Key("disabled") == False))  # noqa: E712
    assert [r["address"] for r in both] == ["10.0.0.10", "10.0.0.12", "10.0.0.14"]
    within = leases.select(Key("address")).where(Key("address").In("10.0.0.12", "10.0.0.15", "10.9.9.9"))
    assert [r["address"] for r in within] == ["10.0.0.12", "10.0.0.15"]
    raw = list(
        api.rawCmd(
            "/ip/dhcp-server/lease/print",
            "=.proplist=.id,comment",
            "?-client-id",
            "?comment=ours",
            "?#&",
            "=count-only=",
        )
    )
    assert raw == [{"ret": 3}]
    dup = list(api.rawCmd("/ip/dhcp-server/lease/print", "=.proplist=address", "?comment=user", "?#.&"))
    assert len(dup) == 3
    assert list(api.rawCmd("/ip/dhcp-server/lease/print", "?comment=nobody")) == []
    assert [r["address"] for r in api.rawCmd("/ip/dhcp-server/lease/print", "?>address=10.0.0.13")] == [
        "10.0.0.14",
        "10.0.0.15",
    ]


def test_duplicate_and_invalid_value_traps(api) -> None:  # type: ignore[no-untyped-def]
    bridge = api.path("interface", "bridge")
    bridge.add(name="br1")
    err = trap(lambda: bridge.add(name="br1"))
    assert (err.message, err.category) == ("failure: item with such name already exists", 4)
    err = trap(lambda: bridge.add(name="ether1"))
    assert err.message == "failure: item with such name already exists"
    err = trap(lambda: api.path("interface", "vlan").add(name="v", **{"vlan-id": 10, "interface": "nope"}))
    assert (err.message, err.category) == ("input does not match any value of interface", 1)
    err = trap(lambda: api.path("interface", "vlan").add(name="v", **{"vlan-id": "15x", "interface": "br1"}))
    assert err.message == "value of vlan-id contains invalid trailing characters"
    err = trap(lambda: api.path("ip", "address").add(address="10.0.0.300/24", interface="br1"))
    assert err.message == "invalid value for argument address"
    err = trap(lambda: bridge.add(name="br2", **{"protocol-mode": "fast"}))
    assert err.message == "input does not match any value of protocol-mode"
    err = trap(lambda: bridge.add(name="br2", bogus="1"))
    assert err.message == "unknown parameter bogus"
    api.path("ip", "dhcp-server", "lease").add(**{"mac-address": "AA:00:00:00:00:01", "address": "10.0.0.2"})
    err = trap(lambda: api.path("ip", "dhcp-server", "lease").add(**{"mac-address": "aa:00:00:00:00:01"}))
    assert err.message == "failure: already have such entry"
    api.path("interface", "bridge", "port").add(bridge="br1", interface="ether4")
    err = trap(lambda: api.path("interface", "bridge", "port").add(bridge="br1", interface="ether4"))
    assert "already" in err.message
    err = trap(lambda: bridge.update(**{".id": "*FFFF", "comment": "x"}))
    assert (err.message, err.category) == ("no such item", 0)
    err = trap(lambda: list(api("/ip/nothing/print")))
    assert err.message == "no such command prefix"
    err = trap(lambda: list(api("/interface/ethernet/add", name="x")))
    assert err.message == "no such command prefix"


def test_dhcp_options_sets_and_lease_references(api) -> None:  # type: ignore[no-untyped-def]
    options = api.path("ip", "dhcp-server", "option")
    sets = api.path("ip", "dhcp-server", "option", "sets")
    leases = api.path("ip", "dhcp-server", "lease")
    options.add(name="boot-67", code=67, value="'undionly.kpxe'")
    options.add(name="tftp-66", code=66, value="'10.0.0.5'")
    err = trap(lambda: options.add(name="boot-67", code=67, value="'other'"))
    assert err.message == "failure: item with such name already exists"
    set_id = sets.add(name="host-a", options="boot-67,tftp-66")
    err = trap(lambda: sets.add(name="host-a", options="boot-67"))
    assert err.message == "failure: item with such name already exists"
    err = trap(lambda: sets.add(name="host-b", options="boot-67,missing"))
    assert err.message == "input does not match any value of options"
    lease = leases.add(
        **{"mac-address": "02:00:00:00:00:41", "address": "10.0.0.41", "dhcp-option-set": "host-a"}
    )
    err = trap(lambda: leases.add(**{"mac-address": "02:00:00:00:00:42", "dhcp-option-set": "nope"}))
    assert err.message == "input does not match any value of dhcp-option-set"
    err = trap(lambda: leases.add(**{"mac-address": "02:00:00:00:00:43", "dhcp-option": "boot-67,nope"}))
    assert err.message == "input does not match any value of dhcp-option"
    leases.update(**{".id": lease, "dhcp-option": "boot-67,tftp-66"})
    (row,) = list(leases)
    assert (row["dhcp-option-set"], row["dhcp-option"]) == ("host-a", "boot-67,tftp-66")
    assert [(r["name"], r["options"]) for r in sets] == [("host-a", "boot-67,tftp-66")]
    sets.update(**{".id": set_id, "name": "host-a2"})
    assert next(iter(leases))["dhcp-option-set"] == "host-a2"
    assert {(r["name"], r["code"], r["value"]) for r in options} == {
        ("boot-67", 67, "'undionly.kpxe'"),
        ("tftp-66", 66, "'10.0.0.5'"),
    }


def test_name_works_as_id_for_interfaces(api) -> None:  # type: ignore[no-untyped-def]
    api.path("interface", "bridge").add(name="br-x")
    api.path("interface", "bridge").update(**{".id": "br-x", "comment": "by name"})
    assert next(iter(api.path("interface", "bridge")))["comment"] == "by name"
    api.path("ip", "dns", "static").add(name="a", address="10.0.0.1")
    err = trap(lambda: api.path("ip", "dns", "static").remove("a"))
    assert err.message == "no such item"


def test_rename_keeps_references(api) -> None:  # type: ignore[no-untyped-def]
    bridge = api.path("interface", "bridge")
    br = bridge.add(name="old")
    api.path("ip", "address").add(address="10.1.0.1/24", interface="old")
    bridge.update(**{".id": br, "name": "new"})
    assert next(iter(api.path("ip", "address")))["interface"] == "new"


def test_login_failures_and_quit(fresh: RosSim) -> None:
    with pytest.raises(TrapError) as info:
        librouteros.connect(fresh.host, fresh.username, "wrong", port=fresh.api_port)
    assert "invalid user name or password" in info.value.message
    api = fresh.api()
    with pytest.raises(FatalError) as fatal:
        list(api("/quit"))
    assert str(fatal.value) == "session terminated on request"


def test_token_login_for_old_routers(fresh: RosSim) -> None:
    from librouteros.login import token

    api = librouteros.connect(
        fresh.host, fresh.username, fresh.password, port=fresh.api_port, login_method=token
    )
    assert list(api.path("system", "identity"))
    api.close()


def test_tls_with_generated_certificate(fresh: RosSim) -> None:
    api = fresh.api(tls=True)
    assert list(api.path("system", "identity")) == [{"name": "MikroTik"}]
    api.close()
    ctx = ssl.create_default_context()
    with pytest.raises(ssl.SSLError), socket.create_connection((fresh.host, fresh.api_tls_port)) as raw:
        ctx.wrap_socket(raw, server_hostname="localhost")


class RawClient:
    """A bare socket speaking sentences, for what librouteros cannot do (tags, /cancel, listen)."""

    def __init__(self, sim: RosSim) -> None:
        self.sock = socket.create_connection((sim.host, sim.api_port), timeout=10)
        self.buf = b""
        self.send("/login", f"=name={sim.username}", f"=password={sim.password}")
        assert self.read() == ["!done"]

    def send(self, *words: str) -> None:
        self.sock.sendall(encode_sentence(list(words)))

    def _byte(self) -> int:
        while not self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError
            self.buf += chunk
        b, self.buf = self.buf[0], self.buf[1:]
        return b

    def read(self) -> list[str]:
        words = []
        while True:
            first = self._byte()
            if first == 0:
                return words
            size = 1 if first < 0x80 else 2 if first < 0xC0 else 3 if first < 0xE0 else 4
            length = first & (0x7F if size == 1 else 0x3F if size == 2 else 0x1F if size == 3 else 0x0F)
            for _ in range(size - 1):
                length = (length << 8) | self._byte()
            words.append(bytes(self._byte() for _ in range(length)).decode())

    def close(self) -> None:
        self.sock.close()


def test_tagged_commands_run_concurrently_and_cancel(fresh: RosSim) -> None:
    client = RawClient(fresh)
    fresh.control.set_latency(2000, protocol="api", menu="/ip/pool")
    try:
        client.send("/ip/pool/print", ".tag=slow")
        client.send("/system/identity/print", ".tag=fast")
        assert client.read() == ["!re", "=name=MikroTik", ".tag=fast"]
        assert client.read() == ["!done", ".tag=fast"]
        client.send("/cancel", "=tag=slow", ".tag=c")
        replies = [client.read() for _ in range(3)]
    finally:
        fresh.control.set_latency(0)
    assert ["!trap", "=category=2", "=message=interrupted", ".tag=slow"] in replies
    assert ["!done", ".tag=slow"] in replies
    assert ["!done", ".tag=c"] in replies
    client.close()


def test_listen_streams_changes_until_cancel(fresh: RosSim) -> None:
    client = RawClient(fresh)
    client.send("/interface/listen", ".tag=l")
    api = fresh.api()
    br = api.path("interface", "bridge").add(name="br-listen")
    first = client.read()
    assert first[0] == "!re" and f"=.id={br}" in first and "=name=br-listen" in first
    api.path("interface", "bridge").remove(br)
    assert client.read() == ["!re", f"=.id={br}", "=.dead=yes", ".tag=l"]
    client.send("/cancel", "=tag=l")
    rest = [client.read() for _ in range(3)]
    assert ["!trap", "=category=2", "=message=interrupted", ".tag=l"] in rest
    api.close()
    client.close()


def test_empty_reply_and_ret_on_add(fresh: RosSim) -> None:
    client = RawClient(fresh)
    client.send("/ip/pool/print")
    assert client.read() == ["!empty"]
    assert client.read() == ["!done"]
    client.send("/ip/pool/add", "=name=p", "=ranges=10.0.0.1-10.0.0.9")
    assert client.read() == ["!done", "=ret=*1"]
    client.send("/ip/pool/getall", "=.proplist=name")
    assert client.read() == ["!re", "=name=p"]
    client.close()


def test_commands_before_login_are_fatal(fresh: RosSim) -> None:
    sock = socket.create_connection((fresh.host, fresh.api_port), timeout=10)
    sock.sendall(encode_sentence(["/ip/address/print"]))
    data = b""
    while True:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    assert data.startswith(b"\x06!fatal")
    sock.close()


def test_fifty_concurrent_api_connections(fresh: RosSim) -> None:
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            api = fresh.api()
            for j in range(10):
                api.path("ip", "dns", "static").add(name=f"h{i}-{j}.lab", address=f"10.{i}.0.{j + 1}")
            assert (
                len(
                    list(
                        api.path("ip", "dns", "static")
                        .select(Key("name"))
                        .where(Key("address") == f"10.{i}.0.1")
                    )
                )
                == 1
            )
            api.close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    assert fresh.control.menu("ip/dns/static").__len__() == 500


# menu -> (add arguments, query key, update arguments); prerequisites are created by the test
EVERY_MENU = {
    ("interface", "bridge"): ({"name": "br-m"}, "name", {"comment": "c"}),
    ("interface", "vlan"): ({"name": "vl-m", "vlan-id": 30, "interface": "ether5"}, "name", {"mtu": 1400}),
    ("interface", "bridge", "port"): (
        {"bridge": "br-base", "interface": "ether6"},
        "interface",
        {"pvid": 30},
    ),
    ("interface", "bridge", "vlan"): (
        {"bridge": "br-base", "vlan-ids": "30"},
        "vlan-ids",
        {"tagged": "ether7"},
    ),
    ("ip", "address"): ({"address": "10.30.0.1/24", "interface": "br-base"}, "address", {"comment": "c"}),
    ("ip", "pool"): ({"name": "pool-m", "ranges": "10.30.0.10-10.30.0.20"}, "name", {"ranges": "10.30.0.30"}),
    ("ip", "dhcp-server"): ({"name": "dhcp-m", "interface": "ether8"}, "name", {"lease-time": "1h"}),
    ("ip", "dhcp-server", "lease"): (
        {"mac-address": "02:00:00:00:00:30", "address": "10.30.0.5"},
        "mac-address",
        {"address": "10.30.0.6"},
    ),
    ("ip", "dhcp-server", "network"): (
        {"address": "10.30.0.0/24", "gateway": "10.30.0.1"},
        "address",
        {"dns-server": "10.30.0.1,1.1.1.1"},
    ),
    ("ip", "dhcp-server", "option"): (
        {"name": "opt-m", "code": 66, "value": "'10.0.0.2'"},
        "name",
        {"code": 67},
    ),
    ("ip", "dhcp-server", "option", "sets"): ({"name": "set-m"}, "name", {"comment": "c"}),
    ("ip", "dhcp-relay"): (
        {"name": "relay-m", "interface": "br-base", "dhcp-server": "10.0.0.1"},
        "name",
        {"local-address": "10.30.0.1"},
    ),
    ("ip", "dns", "static"): ({"name": "m.lab", "address": "10.30.0.7"}, "name", {"ttl": "5m"}),
    ("ip", "firewall", "nat"): (
        {
            "chain": "dstnat",
            "action": "dst-nat",
            "protocol": "tcp",
            "dst-port": "80",
            "to-addresses": "10.30.0.7",
        },
        "chain",
        {"to-ports": "8080"},
    ),
    ("disk",): (
        {"type": "file", "file-path": "storage-pool/m.img", "file-size": "1M", "slot": "m"},
        "slot",
        {"nvme-tcp-export": True},
    ),
    ("file",): ({"name": "storage-pool/m-dir", "type": "directory"}, "name", {"name": "storage-pool/m-dir2"}),
}


@pytest.mark.parametrize("path", list(EVERY_MENU), ids=["/".join(p) for p in EVERY_MENU])
def test_add_print_query_update_remove_on_every_menu(api, path: tuple[str, ...]) -> None:  # type: ignore[no-untyped-def]
    api.path("interface", "bridge").add(name="br-base")
    add, key, update = EVERY_MENU[path]
    menu = api.path(*path)
    ret = menu.add(**add)
    assert ret.startswith("*")
    (row,) = menu.select(Key(".id"), Key(key)).where(Key(key) == add[key])
    assert row[".id"] == ret
    menu.update(**{".id": ret, **update})
    (row,) = list(api.rawCmd(f"/{'/'.join(path)}/print", f"?.id={ret}"))
    for name, value in update.items():
        assert row[name] == value if isinstance(value, bool) else str(row[name]) == str(value)
    menu.remove(ret)
    assert not list(api.rawCmd(f"/{'/'.join(path)}/print", f"?.id={ret}"))


def test_reserved_control_byte_closes_the_connection(fresh: RosSim) -> None:
    client = RawClient(fresh)
    client.sock.sendall(b"\xf8\x00")
    with pytest.raises((EOFError, ConnectionError)):
        client.read()
    client.close()


def test_five_byte_lengths_are_accepted(fresh: RosSim) -> None:
    client = RawClient(fresh)
    word = b"=comment=" + b"x" * 20
    # a 5-byte length prefix (0xF0 + 4 bytes): librouteros never sends one, RouterOS defines it
    head = b"".join(encode_word(w) for w in ("/ip/pool/add", "=name=p5", "=ranges=10.0.0.1"))
    client.sock.sendall(head + b"\xf0" + len(word).to_bytes(4, "big") + word + b"\x00")
    assert client.read() == ["!done", "=ret=*1"]
    client.close()
