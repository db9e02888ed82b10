"""SIGKILL the operator again and again in the middle of a 200-reservation sync.

Every cycle changes part of the desired state, starts the operator, waits until it is writing to
the router, then kills it at a random moment. In the end the router must hold exactly the desired
state: one lease and one DNS record per reservation, nothing twice.
"""

from __future__ import annotations

import json
import random
import secrets
import time
from collections import Counter
from pathlib import Path

from tests.support.kube import ControlPlane
from tests.support.network import network, reservation, router_objects, tagged, unique, wait_ready
from tests.support.operators import start_operator
from tests.support.rossim import start_rossim
from tests.support.wait import wait_for

COUNT = 200
KILLS = 10


def _reservations(net: str, cycle: int) -> list[dict]:
    """200 reservations; every cycle renames a different slice of hosts (new DNS records)."""
    out = []
    for i in range(COUNT):
        host = f"h{i:03d}" + (f"-c{cycle}" if i % KILLS == cycle % KILLS else "")
        out.append(reservation(f"r{i:03d}", net, f"52:54:00:aa:{i // 256:02x}:{i % 256:02x}", hostname=host))
    return out


def test_sigkill_during_sync_converges_without_duplicates(
    crds: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    rng = random.Random(secrets.randbits(32))
    sim = start_rossim(tmp_path / "sim", tls=False)
    system_ns = f"trellis-crash-{secrets.token_hex(3)}"
    crds.kubectl("create", "namespace", system_ns)
    env = {"TRELLIS_NAMESPACE": system_ns}
    op = None
    try:
        sim.control.set_latency(5)
        router, net = unique("rtr"), unique("crash")
        crds.apply(router_objects(sim, router, system_ns))
        dhcp = {
            "server": "router",
            "range": {"start": "10.60.3.1", "end": "10.60.3.254"},
            "domain": "crash.test",
        }
        crds.apply(network(net, "10.60.0.0/22", router, gateway="10.60.0.1", dhcp=dhcp))
        crds.apply({"apiVersion": "v1", "kind": "List", "items": _reservations(net, 0)}, namespace)
        kills_mid_write = 0
        for cycle in range(1, KILLS + 1):
            if cycle > 1:
                crds.apply(
                    {"apiVersion": "v1", "kind": "List", "items": _reservations(net, cycle)}, namespace
                )
            mark = sim.control.last_seq()
            op = start_operator(crds, "trellis.operators.network.handlers", tmp_path / "logs", env=env)

            def writing(since: int = mark) -> bool:
                return any(e.get("write") for e in sim.control.log(since))

            try:
                wait_for(writing, timeout=20, interval=0.05, what="router writes")
                time.sleep(rng.uniform(0.0, 0.4))
                kills_mid_write += 1
            except AssertionError:
                pass  # nothing left to write this cycle: killed anyway
            op.kill()
            op = None
        assert kills_mid_write >= KILLS // 2, f"only {kills_mid_write} kills landed during router writes"

        op = start_operator(crds, "trellis.operators.network.handlers", tmp_path / "logs", env=env)
        wait_ready(crds, namespace, [f"r{i:03d}" for i in range(COUNT)], timeout=180)
        items = json.loads(
            crds.kubectl("get", "dhcpreservations.trellis.dev", "-n", namespace, "-o", "json").stdout
        )
        want_leases = {}
        want_dns = {}
        for item in items["items"]:
            key = f"{namespace}/{item['metadata']['name']}"
            ip = item["status"]["ip"]
            want_leases[f"trellis:{net}:lease:{key}"] = (ip, item["spec"]["mac"].upper())
            want_dns[f"trellis:{net}:dns:{key}"] = (f"{item['spec']['hostname']}.crash.test", ip)
        assert len(set(ip for ip, _ in want_leases.values())) == COUNT

        def converged() -> bool:
            rows = tagged(sim, net)
            leases = rows["ip/dhcp-server/lease"]
            dns = rows["ip/dns/static"]
            got_leases = {r["comment"]: (r["address"], r["mac-address"].upper()) for r in leases}
            got_dns = {r["comment"]: (r["name"], r["address"]) for r in dns}
            return (
                len(leases) == COUNT
                and len(dns) == COUNT
                and got_leases == want_leases
                and got_dns == want_dns
            )

        wait_for(converged, timeout=60, what="router equals desired state")
        rows = tagged(sim, net)
        for menu, entries in rows.items():
            dupes = [tag for tag, n in Counter(r["comment"] for r in entries).items() if n > 1]
            assert not dupes, (menu, dupes)
        assert len(rows["interface/bridge"]) == 1 and len(rows["ip/dhcp-server"]) == 1
        assert len({r["mac-address"] for r in rows["ip/dhcp-server/lease"]}) == COUNT
        crds.kubectl("delete", "dhcpreservations.trellis.dev", "--all", "-n", namespace)
        crds.kubectl("delete", "network.trellis.dev", net, "--timeout=90s")
        assert all(not entries for entries in tagged(sim, net).values())
    finally:
        if op is not None:
            op.stop()
        crds.kubectl("delete", "namespace", system_ns, "--wait=false", check=False)
        sim.stop()
