"""Capacity: thousands of items per menu and 50 concurrent API and SSH connections."""

from __future__ import annotations

import itertools
import threading

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from librouteros.query import Key

from tests.support.rossim import RosSim

ITEMS = 5000
NAMES = itertools.count()


def test_five_thousand_leases_and_disks(sim: RosSim) -> None:
    sim.control.reset()
    api = sim.api()
    leases = api.path("ip", "dhcp-server", "lease")
    for i in range(ITEMS):
        leases.add(
            address=f"10.{i // 250}.{i % 250}.1",
            **{"mac-address": f"02:00:00:00:{i // 256:02X}:{i % 256:02X}", "comment": f"trellis:r{i}"},
        )
    rows = list(leases)
    assert len(rows) == ITEMS
    assert len(list(api.rawCmd("/ip/dhcp-server/lease/print", "=count-only="))[0:1]) == 1
    hit = list(leases.select(Key("address")).where(Key("comment") == "trellis:r4321"))
    assert hit == [{"address": "10.17.71.1"}]
    for i in range(ITEMS):
        api.path("disk").add(
            type="file", **{"file-path": f"storage-pool/csi/v{i}.img", "file-size": "1M", "slot": f"v{i}"}
        )
    api.close()
    assert sim.ssh_exec("/disk print count-only") == f"{ITEMS + 1}\n"
    terse = sim.ssh_exec("/disk print terse without-paging")
    assert len(terse.splitlines()) == ITEMS + 1
    assert sim.ssh_exec(':put [/disk find where slot~"^v4999$"]') == f"*{ITEMS + 1:X}\n"
    assert sim.ssh_exec("/file print count-only") == f"{ITEMS + 2}\n"


def test_fifty_concurrent_ssh_connections(sim: RosSim) -> None:
    sim.control.reset()
    errors: list[BaseException] = []
    barrier = threading.Barrier(50)

    def worker(i: int) -> None:
        try:
            client = sim.ssh_client()
            barrier.wait(60)
            for j in range(3):
                _, stdout, _ = client.exec_command(
                    f"/disk add type=file file-path=storage-pool/c/{i}-{j}.img file-size=1M slot=c{i}-{j}"
                )
                assert stdout.read() == b""
            _, stdout, _ = client.exec_command(f':put [/disk find where slot~"^c{i}-"]')
            assert len(stdout.read().decode().strip().split(";")) == 3
            client.close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    assert errors == []
    assert sim.ssh_exec("/disk print count-only") == "151\n"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(comment=st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=20000))
def test_api_words_of_any_length_round_trip(sim: RosSim, comment: str) -> None:
    api = sim.api()
    pools = api.path("ip", "pool")
    ret = pools.add(name=f"p{next(NAMES)}", ranges="10.0.0.1-10.0.0.2", comment=comment)
    try:
        raw = list(api.rawCmd("/ip/pool/print", "=.proplist=comment", f"?.id={ret}"))
        got = raw[0].get("comment", "")
        # librouteros casts yes/no/true/false and round-tripping integers; compare what it parsed
        if isinstance(got, bool):
            assert comment in (("yes", "true") if got else ("no", "false"))
        else:
            assert str(got) == comment
    finally:
        pools.remove(ret)
        api.close()
