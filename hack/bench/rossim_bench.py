"""Throughput of the RouterOS/RDS simulator itself: API and SSH commands per second, SFTP MB/s.

Run: .venv/bin/python hack/bench/rossim_bench.py [--quick]
Prints the figures and writes build/bench/rossim.json.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO), str(REPO / "hack")]

from tests.support.rossim import RosSim, start_rossim  # noqa: E402

WINDOW = 64 << 20


def timed(ops: int, work: Callable[[int], None], workers: int) -> dict[str, float]:
    """Run `ops` operations split across `workers` threads; returns rate and latency percentiles."""
    latencies: list[float] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def run(worker: int) -> None:
        local = []
        try:
            for i in range(worker, ops, workers):
                started = time.perf_counter()
                work(i)
                local.append(time.perf_counter() - started)
        except BaseException as exc:
            errors.append(exc)
        with lock:
            latencies.extend(local)

    started = time.perf_counter()
    threads = [threading.Thread(target=run, args=(w,)) for w in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise errors[0]
    latencies.sort()
    return {
        "ops": ops,
        "workers": workers,
        "seconds": round(elapsed, 3),
        "ops_per_second": round(ops / elapsed, 1),
        "p50_ms": round(statistics.median(latencies) * 1000, 2),
        "p99_ms": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 2),
    }


def api_bench(sim: RosSim, ops: int, workers: int) -> dict[str, float]:
    conns = [sim.api() for _ in range(workers)]

    def work(i: int) -> None:
        api = conns[i % workers]
        pool = api.path("ip", "dns", "static")
        ret = pool.add(name=f"bench-{i}.lab", address="10.0.0.1")
        pool.update(**{".id": ret, "comment": "b"})
        pool.remove(ret)

    result = timed(ops, work, workers)
    for c in conns:
        c.close()
    result["commands_per_second"] = round(result["ops_per_second"] * 3, 1)
    return result


def ssh_bench(sim: RosSim, ops: int, workers: int) -> dict[str, float]:
    clients = [sim.ssh_client() for _ in range(workers)]

    def work(i: int) -> None:
        client = clients[i % workers]
        _, stdout, _ = client.exec_command(
            f"/disk add type=file file-path=storage-pool/bench/{i}.img file-size=1M slot=b{i}"
            " nvme-tcp-export=yes"
        )
        assert stdout.read() == b""
        _, stdout, _ = client.exec_command(f"/disk remove [find slot=b{i}]")
        assert stdout.read() == b""

    result = timed(ops, work, workers)
    for c in clients:
        c.close()
    result["commands_per_second"] = round(result["ops_per_second"] * 2, 1)
    return result


def raw_print_seconds(sim: RosSim, command: str) -> float:
    """Time a print with a bare socket reader, so client-side parsing does not count."""
    from rossim.wire import encode_sentence

    sock = socket.create_connection((sim.host, sim.api_port))
    sock.sendall(encode_sentence(["/login", f"=name={sim.username}", f"=password={sim.password}"]))
    sock.recv(100)
    started = time.perf_counter()
    sock.sendall(encode_sentence([command]))
    data = b""
    while not data.endswith(b"\x05!done\x00"):
        data += sock.recv(1 << 20)
    elapsed = time.perf_counter() - started
    sock.close()
    return elapsed


def large_print(sim: RosSim, items: int) -> dict[str, Any]:
    api = sim.api()
    leases = api.path("ip", "dhcp-server", "lease")
    for i in range(items):
        leases.add(
            **{
                "mac-address": f"02:00:00:00:{i // 256:02X}:{i % 256:02X}",
                "address": f"10.9.{i // 250}.{i % 250}",
            }
        )
    started = time.perf_counter()
    rows = list(leases)
    api_seconds = time.perf_counter() - started
    api.close()
    raw = raw_print_seconds(sim, "/ip/dhcp-server/lease/print")
    started = time.perf_counter()
    out = sim.ssh_exec("/ip dhcp-server lease print terse without-paging")
    ssh_seconds = time.perf_counter() - started
    assert len(rows) == items and len(out.splitlines()) == items
    return {
        "items": items,
        "api_print_librouteros_ms": round(api_seconds * 1000, 1),
        "api_print_raw_socket_ms": round(raw * 1000, 1),
        "ssh_print_terse_ms": round(ssh_seconds * 1000, 1),
    }


def sftp_bench(sim: RosSim, mib: int) -> dict[str, float]:
    import paramiko

    client = sim.ssh_client()
    transport = client.get_transport()
    transport.default_window_size = WINDOW
    # paramiko's default 2 MiB window halves loopback throughput; any serious client raises it
    sftp = paramiko.SFTPClient.from_transport(transport, window_size=WINDOW, max_packet_size=32768)
    assert sftp is not None
    chunk = os.urandom(1 << 20)
    started = time.perf_counter()
    with sftp.open("/storage-pool/bench.iso", "wb") as fh:
        fh.set_pipelined(True)
        for _ in range(mib):
            fh.write(chunk)
    elapsed = time.perf_counter() - started
    sftp.remove("/storage-pool/bench.iso")
    client.close()
    return {
        "mib": mib,
        "seconds": round(elapsed, 3),
        "mb_per_second": round(mib * (1 << 20) / elapsed / 1e6, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="smaller runs (for smoke testing)")
    parser.add_argument("--out", type=Path, default=REPO / "build" / "bench" / "rossim.json")
    args = parser.parse_args()
    scale = 0.1 if args.quick else 1.0
    results: dict[str, Any] = {"host_cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="rossim-bench-") as tmp:
        sim = start_rossim(Path(tmp) / "rds", tls=False)
        try:
            for workers in (1, 16):
                results[f"api_add_set_remove_w{workers}"] = api_bench(sim, int(2000 * scale), workers)
                sim.control.reset()
                results[f"ssh_add_remove_w{workers}"] = ssh_bench(sim, int(400 * scale), workers)
                sim.control.reset()
            results["print_5000"] = large_print(sim, int(5000 * scale))
            sim.control.reset()
            results["sftp_upload"] = sftp_bench(sim, int(256 * scale))
        finally:
            sim.stop()
    for name, figures in results.items():
        print(f"{name:28} {figures}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
