"""BareMetalHost operator benchmark: 300 hosts whose BMCs are one IPMI emulator process (one UDP port each).

Figures: time from apply to all hosts Available (registration + inventory + online enforcement),
BMC requests per host per minute at steady state (counted by the emulator: RMCP+ sessions and
IPMI commands), and the operator's peak RSS. Prints them and writes build/bench/bmh.json.
`make bench-bmh`.
"""

from __future__ import annotations

import argparse
import base64
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

from tests.support.bmc import EmulatedSystem, IpmiEmulator  # noqa: E402
from tests.support.kube import BIN, ControlPlane  # noqa: E402
from tests.support.operators import OperatorProcess, free_port  # noqa: E402
from tests.support.wait import wait_for  # noqa: E402


def start_quiet_operator(cp: ControlPlane, log_dir: Path, env: dict[str, str]) -> OperatorProcess:
    """The operator as in production: INFO logging (the test helper's --verbose costs CPU per event)."""
    port = free_port()
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / "baremetalhost-operator.log"
    full_env = {**cp.env(), "PYTHONPATH": str(REPO), **env}
    cmd = [sys.executable, "-m", "kopf", "run", "--standalone", "--all-namespaces",
           "-L", f"http://127.0.0.1:{port}/healthz",
           "-m", "trellis.operators.baremetalhost.handlers"]  # fmt: skip
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=full_env, cwd=REPO)
    op = OperatorProcess(
        "trellis.operators.baremetalhost.handlers", proc, log_path, f"http://127.0.0.1:{port}/healthz"
    )
    wait_for(op.healthy, timeout=120, what="operator liveness")
    return op


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


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def states(cp: ControlPlane, namespace: str) -> dict[str, int]:
    out = cp.kubectl("get", "baremetalhosts.trellis.dev", "-n", namespace, "-o", "json", timeout=120).stdout
    counts: dict[str, int] = {}
    for item in json.loads(out)["items"]:
        status = item.get("status") or {}
        state = (status.get("provisioning") or {}).get("state") or "New"
        if state == "Available" and status.get("poweredOn") is not True:
            state = "AvailablePoweringOn"  # every host is online: Available counts once it is seen on
        counts[state] = counts.get(state, 0) + 1
    return counts


def hosts(namespace: str, emulator: IpmiEmulator) -> list[dict]:
    objs = []
    for i, name in enumerate(sorted(emulator.systems)):
        objs.append({
            "apiVersion": "trellis.dev/v1alpha1", "kind": "BareMetalHost",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "bmc": {"address": emulator.address(name), "credentialsName": "bmc"},
                "bootMACAddress": f"52:54:01:{i >> 16 & 255:02x}:{i >> 8 & 255:02x}:{i & 255:02x}",
                "online": True,
            },
        })  # fmt: skip
    return objs


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hosts", type=int, default=300)
    ap.add_argument("--poll-interval", type=float, default=60.0, help="operator power poll interval (s)")
    ap.add_argument("--steady-seconds", type=float, default=180.0, help="steady-state measuring window")
    args = ap.parse_args()
    work = Path(
        tempfile.mkdtemp(prefix="bmh-bench-", dir=REPO / "build" if (REPO / "build").is_dir() else None)
    )
    proc, cp = control_plane(work)
    emulator = op = None
    try:
        cp.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(REPO / "crds"))
        cp.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd", "-l",
                   "app.kubernetes.io/part-of=trellis")  # fmt: skip
        ns = f"bmh-bench-{secrets.token_hex(3)}"
        cp.kubectl("create", "namespace", ns)
        systems = [EmulatedSystem(f"node{i:03d}") for i in range(args.hosts)]
        emulator = IpmiEmulator(work / "ipmi", systems).start()
        cp.apply({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "bmc", "namespace": ns},
                  "data": {"username": base64.b64encode(b"admin").decode(),
                           "password": base64.b64encode(b"password").decode()}})  # fmt: skip
        op = start_quiet_operator(cp, work / "logs", {"TRELLIS_BMH_POLL_INTERVAL": str(args.poll_interval)})
        objs = hosts(ns, emulator)
        started = time.monotonic()
        for i in range(0, len(objs), 50):
            cp.apply(objs[i : i + 50])
        applied = time.monotonic() - started

        def all_available() -> bool:
            return states(cp, ns).get("Available", 0) == args.hosts

        wait_for(all_available, timeout=1800, interval=2.0, what=f"{args.hosts} hosts Available")
        to_available = time.monotonic() - started
        powered = sum(1 for s in emulator.state().values() if s["power"] == "on")
        print(
            f"{args.hosts} hosts Available and powered on in {to_available:.1f}s (apply took {applied:.1f}s)"
        )

        time.sleep(min(30.0, args.poll_interval / 2))  # let the last writes and immediate passes settle
        emulator.reset_counters()
        window_start = time.monotonic()
        time.sleep(args.steady_seconds)
        window = time.monotonic() - window_start
        snapshot = emulator.state().values()
        commands = sum(s["commands"] for s in snapshot)
        sessions = sum(s["sessions"] for s in snapshot)
        per_min = 60.0 / window / args.hosts
        rss = peak_rss_mib(op.proc.pid)
        result = {
            "hosts": args.hosts,
            "poll_interval_s": args.poll_interval,
            "apply_s": round(applied, 2),
            "to_all_available_s": round(to_available, 2),
            "hosts_powered_on": powered,
            "steady_window_s": round(window, 1),
            "bmc_sessions_per_host_per_min": round(sessions * per_min, 3),
            "ipmi_commands_per_host_per_min": round(commands * per_min, 3),
            "operator_peak_rss_mib": round(rss, 1),
            "driver": "ipmitool (one RMCP+ session per operation)",
            # Wall-clock figures depend on what else the machine runs; the load says how busy it was.
            "load_average_1m_at_end": round(os.getloadavg()[0], 2),
            "cpus": os.cpu_count(),
        }
        print(
            f"steady state over {window:.0f}s: {result['bmc_sessions_per_host_per_min']} RMCP+ sessions and "
            f"{result['ipmi_commands_per_host_per_min']} IPMI commands per host per minute"
        )
        print(f"operator peak RSS: {rss:.1f} MiB")
        out = REPO / "build" / "bench" / "bmh.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {out}")
        return 0
    finally:
        if op is not None:
            op.stop()
        if emulator is not None:
            emulator.stop()
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)


if __name__ == "__main__":
    sys.exit(main())
