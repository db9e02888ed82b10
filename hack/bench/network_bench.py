"""Network operator benchmark: 10 Networks x 200 reservations on the RouterOS simulator (5 ms/command).

Figures: time from apply to all reservations Ready, RouterOS commands per reservation on create
and on a no-op resync, operator peak RSS, time to converge after one reservation changes.
Prints them and writes build/bench/network.json. `make bench-network`.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO), str(REPO / "hack")]

from tests.support.kube import BIN, ControlPlane  # noqa: E402
from tests.support.network import network, reservation, router_objects  # noqa: E402
from tests.support.operators import OperatorProcess, free_port  # noqa: E402
from tests.support.rossim import start_rossim  # noqa: E402
from tests.support.wait import wait_for  # noqa: E402


def control_plane(workdir: Path) -> tuple[subprocess.Popen[bytes] | None, ControlPlane]:
    reuse = os.environ.get("TRELLIS_KUBECONFIG")
    if reuse:
        return None, ControlPlane(Path(reuse), "")
    log = open(workdir / "testenv.out", "wb")  # noqa: SIM115 - lives as long as the process
    proc = subprocess.Popen([str(BIN / "trellis-testenv"), "up", "--dir", str(workdir)], stdout=log,
                            stderr=subprocess.STDOUT)  # fmt: skip
    ready = workdir / "ready.json"
    wait_for(ready.exists, timeout=240, what="control plane")
    info = json.loads(ready.read_text())
    return proc, ControlPlane(Path(info["kubeconfig"]), info["server"])


def start_operator(cp: ControlPlane, logs: Path, env: dict[str, str]) -> OperatorProcess:
    """`kopf run` at normal log level (the tests' --verbose logging would dominate the figures)."""
    port = free_port()
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / f"operator-{port}.log"
    full_env = {**cp.env(), "PYTHONPATH": str(REPO), **env}
    cmd = [sys.executable, "-m", "kopf", "run", "--standalone", "--all-namespaces", "-L",
           f"http://127.0.0.1:{port}/healthz", "-m", "trellis.operators.network.handlers"]  # fmt: skip
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=full_env, cwd=REPO)
    op = OperatorProcess(
        "trellis.operators.network.handlers", proc, log_path, f"http://127.0.0.1:{port}/healthz"
    )
    wait_for(op.healthy, timeout=60, what="operator liveness")
    return op


def ready_count(cp: ControlPlane, namespace: str) -> int:
    out = cp.kubectl("get", "dhcpreservations.trellis.dev", "-n", namespace, "-o", "json", timeout=120).stdout
    n = 0
    for item in json.loads(out)["items"]:
        conds = (item.get("status") or {}).get("conditions") or []
        n += any(c["type"] == "Ready" and c["status"] == "True" for c in conds)
    return n


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def settle(sim: object, pid: int, quiet: float = 5.0, timeout: float = 300.0) -> float:
    """Wait until the router saw no command (probes aside) and the operator used under 5% CPU for
    ``quiet`` seconds; returns how long that took."""
    start = deadline = time.monotonic()
    deadline += timeout
    last = sim.control.last_seq()  # type: ignore[attr-defined]
    still_since, cpu = time.monotonic(), cpu_seconds(pid)
    while time.monotonic() < deadline:
        time.sleep(1.0)
        new = [e for e in sim.control.log(last) if not _probe(e)]  # type: ignore[attr-defined]
        now_cpu = cpu_seconds(pid)
        busy = now_cpu - cpu > 0.05
        cpu = now_cpu
        if new or busy:
            last = int(new[-1]["seq"]) if new else last
            still_since = time.monotonic()
        elif time.monotonic() - still_since >= quiet:
            break
    return time.monotonic() - start


def _probe(entry: dict) -> bool:
    return str(entry.get("menu", "")).startswith("/system")


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--networks", type=int, default=10)
    ap.add_argument("--reservations", type=int, default=200)
    ap.add_argument("--latency-ms", type=float, default=5.0)
    ap.add_argument("--no-hostnames", action="store_true", help="leases only, no DNS records")
    args = ap.parse_args()
    total = args.networks * args.reservations
    work = Path(
        tempfile.mkdtemp(prefix="network-bench-", dir=REPO / "build" if (REPO / "build").is_dir() else None)
    )
    proc, cp = control_plane(work)
    sim = op = None
    try:
        cp.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(REPO / "crds"))
        cp.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd", "-l",
                   "app.kubernetes.io/part-of=trellis")  # fmt: skip
        ns = f"bench-{secrets.token_hex(3)}"
        cp.kubectl("create", "namespace", ns)
        sim = start_rossim(work / "sim", tls=False)
        sim.control.set_latency(args.latency_ms)
        op = start_operator(cp, work / "logs", {"TRELLIS_NAMESPACE": ns})
        cp.apply(router_objects(sim, "bench-router", ns))
        nets = [f"bench-{i}" for i in range(args.networks)]
        for i, net in enumerate(nets):
            dhcp = {"server": "router", "range": {"start": f"10.{100 + i}.1.1", "end": f"10.{100 + i}.1.254"},
                    "domain": f"n{i}.bench"}  # fmt: skip
            cp.apply(
                network(net, f"10.{100 + i}.0.0/23", "bench-router", gateway=f"10.{100 + i}.0.1", dhcp=dhcp)
            )
        wait_for(
            lambda: all(cp.condition("networks", n, "Ready") for n in nets), timeout=120, what="networks"
        )
        mark = sim.control.last_seq()
        items = []
        for i, net in enumerate(nets):
            for j in range(args.reservations):
                extra = {} if args.no_hostnames else {"hostname": f"h{j:03d}"}
                mac = f"52:54:{i:02x}:00:{j // 256:02x}:{j % 256:02x}"
                items.append(reservation(f"{net}-r{j:03d}", net, mac, **extra))
        start = time.monotonic()
        for k in range(0, len(items), 500):
            cp.apply({"apiVersion": "v1", "kind": "List", "items": items[k : k + 500]}, ns)
        wait_for(lambda: ready_count(cp, ns) == total, timeout=900, interval=1.0, what="all Ready")
        create_seconds = time.monotonic() - start
        log = sim.control.log(mark)
        api = [e for e in log if e["protocol"] == "api" and not _probe(e)]
        writes = [e for e in api if e["write"]]
        lease_writes = [e for e in writes if e["menu"] == "/ip/dhcp-server/lease"]

        # No-op resync: every Network makes a pass; then a fresh operator re-reads everything.
        mark = sim.control.last_seq()
        for net in nets:
            cp.kubectl("annotate", "network.trellis.dev", net, f"bench/poke={time.time()}", "--overwrite")
        time.sleep(5)
        # The Router probe's own reads (/system/...) are not part of a Network resync.
        noop_cached = [e for e in sim.control.log(mark) if e["protocol"] == "api" and not _probe(e)]
        op.stop()
        mark = sim.control.last_seq()
        op = start_operator(cp, work / "logs", {"TRELLIS_NAMESPACE": ns})
        want_prints = 10 * args.networks

        def reread() -> bool:
            return sum(1 for e in sim.control.log(mark) if e["verb"] == "print") >= want_prints

        wait_for(reread, timeout=120, what="full re-read")
        time.sleep(3)
        noop_full = [e for e in sim.control.log(mark) if e["protocol"] == "api" and not _probe(e)]

        # One reservation changes: time until the router's lease shows it.
        target = f"{nets[0]}-r000"
        new_ip = "10.100.0.250"
        settled_after = settle(sim, op.proc.pid)  # one change on a settled operator, not behind a backlog
        mark = sim.control.last_seq()
        start = time.monotonic()
        cp.kubectl("patch", "dhcpreservation.trellis.dev", target, "-n", ns, "--type=merge",
                   "-p", json.dumps({"spec": {"ip": new_ip}}))  # fmt: skip

        def lease_moved() -> bool:
            sets = sim.control.log(mark, menu="/ip/dhcp-server/lease", write="true")
            return any(new_ip in e["text"] for e in sets)

        wait_for(lease_moved, timeout=60, interval=0.02, what="lease moved")
        change_seconds = time.monotonic() - start
        rss = peak_rss_mib(op.proc.pid)
        result = {
            "networks": args.networks,
            "reservations": total,
            "hostnames": not args.no_hostnames,
            "latency_ms_per_command": args.latency_ms,
            "apply_to_all_ready_seconds": round(create_seconds, 2),
            "create_commands_per_reservation": round(len(api) / total, 3),
            "create_writes_per_reservation": round(len(writes) / total, 3),
            "create_lease_writes_per_reservation": round(len(lease_writes) / total, 3),
            "noop_resync_commands": len(noop_cached),
            "noop_full_reread_commands": len(noop_full),
            "noop_full_reread_writes": sum(1 for e in noop_full if e["write"]),
            "noop_commands_per_reservation": round(len(noop_cached) / total, 3),
            "one_change_converge_seconds": round(change_seconds, 3),
            "operator_peak_rss_mib": round(rss, 1),
            "restart_settle_seconds": round(settled_after, 1),
        }
        for key, value in result.items():
            print(f"{key:40s} {value}")
        out = (
            REPO
            / "build"
            / "bench"
            / ("network.json" if not args.no_hostnames else "network-leases-only.json")
        )
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {out}")
        return 0
    finally:
        if op is not None:
            op.stop()
        if sim is not None:
            sim.stop()
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)


if __name__ == "__main__":
    sys.exit(main())
