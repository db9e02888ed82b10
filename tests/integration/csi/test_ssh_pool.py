"""The SSH pool against the simulator's real SSH server: pinning, auth, reconnects, retry rules."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from tests.support.rossim import RosSim
from trellis.routeros.cli import RouterOSCli, RouterOSError, eq
from trellis.routeros.ssh import AuthenticationFailed, HostKeyMismatch, SSHConfig, SSHPool, TransportError

pytestmark = pytest.mark.integration
PRINT = ':put [/disk print detail as-value where slot="storage-pool"]'


def config(sim: RosSim, **overrides: object) -> SSHConfig:
    values: dict[str, object] = {
        "host": sim.host,
        "port": sim.ssh_port,
        "username": sim.username,
        "known_hosts": sim.known_hosts_line,
        "private_key": sim.client_key_path.read_text(),
        "pool_size": 2,
        "backoff_initial": 0.05,
    }
    values.update(overrides)
    return SSHConfig(**values)  # type: ignore[arg-type]


@pytest.fixture
def pool(sim: RosSim) -> Iterator[SSHPool]:
    sim.control.clear_faults()
    p = SSHPool(config(sim))
    yield p
    p.close()
    sim.control.clear_faults()


def test_key_and_password_auth_and_a_persistent_connection(sim: RosSim, pool: SSHPool) -> None:
    for _ in range(5):
        assert "slot=storage-pool" in pool.run(PRINT, idempotent=True).stdout
    assert pool.stats().connects == 1, "commands reuse one connection"
    by_password = SSHPool(config(sim, private_key=None, password=sim.password))
    assert "slot=storage-pool" in by_password.run(PRINT, idempotent=True).stdout
    by_password.close()


def test_wrong_host_key_is_refused_and_not_retried(sim: RosSim) -> None:
    other = ed25519.Ed25519PrivateKey.generate().public_key()
    line = other.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    known = f"[{sim.host}]:{sim.ssh_port} {line}"
    bad = SSHPool(config(sim, known_hosts=known))
    with pytest.raises(HostKeyMismatch):
        bad.run(PRINT, idempotent=True)
    assert bad.stats().retries == 0 and bad.stats().connects == 0
    with pytest.raises(ValueError, match="no key for"):
        SSHPool(config(sim, known_hosts=f"otherhost {sim.known_hosts_line.split(' ', 1)[1]}"))


def test_wrong_password_is_refused(sim: RosSim) -> None:
    bad = SSHPool(config(sim, private_key=None, password="not-it"))
    with pytest.raises(AuthenticationFailed):
        bad.run(PRINT, idempotent=True)
    assert bad.stats().retries == 0


def test_reconnects_after_the_connection_drops(sim: RosSim, pool: SSHPool) -> None:
    pool.run(PRINT, idempotent=True)
    sim.control.drop_connections()
    assert "storage-pool" in pool.run(PRINT, idempotent=True).stdout
    assert pool.stats().connects >= 2


def test_idempotent_commands_are_resent_others_report_the_ambiguity(sim: RosSim, pool: SSHPool) -> None:
    pool.run(PRINT, idempotent=True)
    sim.control.drop_after(0, protocol="ssh", when="after")
    assert "storage-pool" in pool.run(PRINT, idempotent=True).stdout
    assert pool.stats().retries == 1
    sim.control.drop_after(0, protocol="ssh", when="after")
    with pytest.raises(TransportError) as info:
        add = '/disk add type="file" file-path="storage-pool/t/x.img" file-size=1048576 slot="x"'
        pool.run(add, idempotent=False)
    assert info.value.sent, "the add may have run: the caller must check, not the pool resend"
    slots = [r["slot"] for r in RouterOSCli(pool).print("/disk", eq("slot", "x"))]
    assert slots == ["x"], "it did run on the RDS"
    RouterOSCli(pool).execute('/disk remove [find where slot="x"]', idempotent=True)


def test_router_errors_are_not_retried(sim: RosSim, pool: SSHPool) -> None:
    cli = RouterOSCli(pool)
    with pytest.raises(RouterOSError):
        cli.execute("/disk remove nosuchslot", idempotent=True)
    assert pool.stats().retries == 0


def test_unreachable_router_fails_fast_with_bounded_retries(sim: RosSim) -> None:
    key = sim.known_hosts_line.split(" ", 1)[1]
    dead = SSHPool(
        config(sim, port=1, known_hosts=f"[{sim.host}]:1 {key}", max_attempts=3, connect_timeout=1)
    )
    with pytest.raises(TransportError) as info:
        dead.run(PRINT, idempotent=True)
    assert not info.value.sent
    stats = dead.stats()
    assert stats.failed_connects == 3 and stats.retries == 2


def test_many_threads_share_the_pool(sim: RosSim, pool: SSHPool) -> None:
    with ThreadPoolExecutor(8) as workers:
        outputs = list(workers.map(lambda _: pool.run(PRINT, idempotent=True).stdout, range(32)))
    assert all("storage-pool" in out for out in outputs)
    assert pool.stats().connects <= 2, "never more connections than the pool size"
