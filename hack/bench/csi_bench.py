"""CreateVolume+DeleteVolume latency and throughput of the CSI controller against the RDS simulator.

Matrix: injected RouterOS command latency 0 / 20 ms x SSH pool size 1 / N x concurrency 1 / 8 / 32.
Each cell runs a fixed number of create+delete pairs (bounded in count) through the real gRPC
socket of a real ``trellis-csi --mode controller`` process; the simulator runs on loopback.
Prints a table and writes build/bench/csi.json, including the driver's peak RSS.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO), str(REPO / "hack")]

from tests.support.csi_driver import Driver, load_stubs, start_driver  # noqa: E402
from tests.support.rossim import RosSim, start_rossim  # noqa: E402

GIB = 1 << 30


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def run_cell(driver: Driver, pb: Any, concurrency: int, pairs: int, tag: str) -> dict[str, Any]:
    cap = pb.VolumeCapability(
        mount=pb.VolumeCapability.MountVolume(fs_type="ext4"),
        access_mode=pb.VolumeCapability.AccessMode(mode=pb.VolumeCapability.AccessMode.SINGLE_NODE_WRITER),
    )
    stub = driver.controller

    def one(i: int) -> float:
        started = time.perf_counter()
        req = pb.CreateVolumeRequest(
            name=f"bench-{tag}-{i}",
            capacity_range=pb.CapacityRange(required_bytes=GIB),
            volume_capabilities=[cap],
        )
        vol = stub.CreateVolume(req, timeout=120).volume
        stub.DeleteVolume(pb.DeleteVolumeRequest(volume_id=vol.volume_id), timeout=120)
        return time.perf_counter() - started

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        latencies = list(pool.map(one, range(pairs)))
    elapsed = time.perf_counter() - started
    return {
        "pairs": pairs,
        "seconds": round(elapsed, 3),
        "throughput_pairs_per_s": round(pairs / elapsed, 2),
        "p50_ms": round(percentile(latencies, 0.50) * 1000, 1),
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 1),
        "mean_ms": round(statistics.fmean(latencies) * 1000, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pool-size", type=int, default=32, help="the 'N' of pool size 1 vs N")
    parser.add_argument("--pairs", type=int, default=64, help="create+delete pairs per cell")
    parser.add_argument("--out", type=Path, default=REPO / "build" / "bench" / "csi.json")
    args = parser.parse_args()
    pb, _ = load_stubs()
    work = Path(tempfile.mkdtemp(prefix="csi-bench-"))
    sim: RosSim = start_rossim(work / "rds", tls=False, pool_size="100T")
    results: list[dict[str, Any]] = []
    peak_rss = 0
    try:
        for pool_size in (1, args.pool_size):
            driver = start_driver(
                sim, work / f"csi-{pool_size}", mode="controller",
                extra_args=["--ssh-pool-size", str(pool_size), "--log-level", "WARNING", "--workers", "64"],
            )  # fmt: skip
            try:
                for latency in (0, 20):
                    sim.control.set_latency(latency, protocol="ssh")
                    run_cell(driver, pb, 4, 8, f"warm-{pool_size}-{latency}")
                    for concurrency in (1, 8, 32):
                        cell = run_cell(
                            driver, pb, concurrency, args.pairs, f"{pool_size}-{latency}-{concurrency}"
                        )
                        cell.update(pool_size=pool_size, latency_ms=latency, concurrency=concurrency)
                        results.append(cell)
                        print(
                            f"pool={pool_size:>2} latency={latency:>2}ms c={concurrency:>2}: "
                            f"{cell['throughput_pairs_per_s']:>7} pairs/s  p50={cell['p50_ms']:>7} ms  "
                            f"p99={cell['p99_ms']:>7} ms",
                            flush=True,
                        )
                peak_rss = max(peak_rss, driver.peak_rss_bytes())
            finally:
                driver.stop()
            sim.control.set_latency(0)
    finally:
        sim.stop()

    def tput(pool: int, latency: int, conc: int) -> float:
        return next(
            r["throughput_pairs_per_s"]
            for r in results
            if (r["pool_size"], r["latency_ms"], r["concurrency"]) == (pool, latency, conc)
        )

    speedup = tput(args.pool_size, 20, 32) / tput(args.pool_size, 20, 1)
    summary = {
        "speedup_c32_over_c1_at_20ms": round(speedup, 2),
        "speedup_target": 8.0,
        "speedup_target_met": speedup >= 8.0,
        "pool1_c32_over_c1_at_20ms": round(tput(1, 20, 32) / tput(1, 20, 1), 2),
        "driver_peak_rss_mib": round(peak_rss / (1 << 20), 1),
        "rss_target_mib": 150,
        "rss_target_met": peak_rss < 150 * (1 << 20),
    }
    print(json.dumps(summary, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"cells": results, "summary": summary}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
