"""trellis.routeros.api against the RouterOS simulator over the real API protocol (plain and TLS)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from tests.support.rossim import RosSim, start_rossim
from trellis.routeros.api import (
    Endpoint,
    RouterClient,
    RouterClients,
    RouterLoginFailed,
    RouterTrap,
    RouterUnreachable,
    UnsafeValue,
)


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RosSim]:
    s = start_rossim(tmp_path_factory.mktemp("rossim-api"), tls=True)
    yield s
    s.stop()


def endpoint(sim: RosSim, **over: object) -> Endpoint:
    base: dict[str, object] = {"host": sim.host, "username": sim.username, "password": sim.password,
                               "port": sim.api_port}  # fmt: skip
    base.update(over)
    return Endpoint(**base)  # type: ignore[arg-type]


def test_connections_are_pooled_and_reused(sim: RosSim) -> None:
    client = RouterClient(endpoint(sim), max_connections=2)
    try:
        for _ in range(20):
            assert client.call(lambda s: s.print("/system/identity"))[0]["name"]
        client.run_parallel([lambda s: s.print("/system/resource") for _ in range(10)])
        assert client.stats.by_command["/login"] <= 2
        assert client.stats.reads == client.stats.by_command["/login"] + 30
    finally:
        client.close()


def test_values_come_back_as_strings(sim: RosSim) -> None:
    client = RouterClient(endpoint(sim))
    try:
        ret = client.call(
            lambda s: s.add("/ip/dns/static", {"name": "n1.api", "address": "10.9.9.1", "comment": "42"})
        )
        assert ret.startswith("*")
        rows = client.call(lambda s: s.print("/ip/dns/static", where={"name": "n1.api"}))
        assert rows[0]["comment"] == "42" and rows[0]["disabled"] == "false"
        client.call(lambda s: s.remove("/ip/dns/static", [ret]))
    finally:
        client.close()


def test_trap_keeps_the_connection(sim: RosSim) -> None:
    client = RouterClient(endpoint(sim), max_connections=1)
    try:
        with pytest.raises(RouterTrap) as err:
            client.call(lambda s: s.set("/ip/pool", "*FFFF", {"ranges": "10.0.0.1-10.0.0.2"}))
        assert err.value.message and "/ip/pool/set" in str(err.value)
        assert client.call(lambda s: s.print("/system/identity"))
        assert client.stats.by_command["/login"] == 1
    finally:
        client.close()


def test_dropped_connection_is_replaced(sim: RosSim) -> None:
    client = RouterClient(endpoint(sim), max_connections=1)
    try:
        client.call(lambda s: s.print("/system/identity"))
        assert sim.control.drop_connections("api") >= 1
        assert client.call(lambda s: s.print("/system/identity"), retries=1)
        assert client.stats.by_command["/login"] == 2
    finally:
        client.close()


def test_bad_password_and_unsafe_values(sim: RosSim) -> None:
    client = RouterClient(endpoint(sim, password="wrong"))
    with pytest.raises(RouterLoginFailed):
        client.call(lambda s: s.print("/system/identity"))
    client.close()
    client = RouterClient(endpoint(sim))
    try:
        with pytest.raises(UnsafeValue):
            client.call(lambda s: s.add("/ip/dns/static", {"name": "x\ny", "address": "10.0.0.1"}))
    finally:
        client.close()


def test_unreachable(sim: RosSim) -> None:
    client = RouterClient(Endpoint("127.0.0.1", "u", "p", port=1, timeout=2))
    with pytest.raises(RouterUnreachable):
        client.call(lambda s: s.print("/system/identity"), retries=0)
    client.close()


def test_tls_with_the_routers_ca(sim: RosSim) -> None:
    assert sim.tls_cert_pem and sim.api_tls_port
    tls = endpoint(sim, port=sim.api_tls_port, tls=True, ca_pem=sim.tls_cert_pem, server_name="localhost")
    clients = RouterClients()
    try:
        assert clients.get("r", tls).call(lambda s: s.print("/system/identity"))[0]["name"]
        wrong_name = endpoint(
            sim, port=sim.api_tls_port, tls=True, ca_pem=sim.tls_cert_pem, server_name="other"
        )
        with pytest.raises(RouterUnreachable, match="TLS"):
            clients.get("r", wrong_name).call(lambda s: s.print("/system/identity"), retries=0)
    finally:
        clients.close()


def test_async_run_does_not_block_the_event_loop(sim: RosSim) -> None:
    """While a slow router call is in flight, other coroutines keep running (order, not timing)."""
    client = RouterClient(endpoint(sim))
    sim.control.set_latency(300)
    events: list[str] = []

    async def ticker() -> None:
        for _ in range(10):
            events.append("tick")
            await asyncio.sleep(0.01)

    async def call() -> None:
        await client.run(lambda s: s.print("/system/identity"))
        events.append("done")

    async def main() -> None:
        await asyncio.gather(call(), ticker())

    try:
        asyncio.run(main())
    finally:
        sim.control.set_latency(0)
        client.close()
    assert events.index("done") >= 5, events
