"""Seconds per boot stage for 1 and for 4 virtual servers booting at once through a Trellis release.

    make bench-boot-e2e        (or: python hack/bench/boot_e2e.py)

Uses the test suite's session fixtures (a control plane, the test node, the release installed with
helm) and the rack of tests/integration/release/test_4_rack.py: every machine is a known, approved
TalosDevice booted by its BareMetalHost over IPMI (SeaBIOS), so the figures are the boot chain's
own: BMC power-on, DHCP + iPXE script, kernel, Linux lease, config served, installed and rebooted,
Talos API answering (Installed), BareMetalHost Provisioned. Each stage is timed from the moment
the objects were applied. Prints a table and writes build/bench/boot-e2e.json.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.support.kube import REPO
from tests.support.rackboot import boot_through, rack_lab, server
from tests.support.rackenv import qemu_unusable_reason

OUT = REPO / "build" / "bench" / "boot-e2e.json"
RESULTS: dict[str, Any] = {}


@pytest.mark.timeout(3600)
@pytest.mark.parametrize("count", [1, 4])
def test_boot_stages(release: Any, tmp_path_factory: pytest.TempPathFactory, count: int) -> None:
    reason = qemu_unusable_reason()
    if reason:
        pytest.skip(f"QEMU cannot boot a virtual machine on this machine: {reason}")
    servers = [server(n, f"bench{count}-{n}", "bios", "ipmi", "known") for n in range(1, count + 1)]
    with (
        rack_lab(release, servers, tmp_path_factory.mktemp(f"bench-rack-{count}")) as lab,
        ThreadPoolExecutor(max_workers=count) as pool,
    ):
        timings = list(pool.map(lambda s: boot_through(lab, s, lab.applied_at), servers))
    stages = list(timings[0])
    summary = {
        stage: {
            "median_s": round(statistics.median(t[stage] for t in timings), 1),
            "max_s": max(t[stage] for t in timings),
        }
        for stage in stages
    }
    machines = {s.name: t for s, t in zip(servers, timings, strict=True)}
    RESULTS[str(count)] = {"machines": machines, "stages": summary}
    print(f"\n{count} machine(s) booting at once: seconds from apply to each stage (median / max)")
    for stage, figures in summary.items():
        print(f"  {stage:<45} {figures['median_s']:>7.1f} {figures['max_s']:>7.1f}")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(
        json.dumps(
            {
                "benchmark": "boot-e2e",
                "host": {"cpus": os.cpu_count(), "kernel": platform.release(), "load": os.getloadavg()},
                "accel": "tcg",
                "results": RESULTS,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    plugins = ["-p", "tests.conftest", "-p", "tests.integration.release.conftest"]
    sys.exit(pytest.main([*plugins, str(Path(__file__).resolve()), "-q", "-s", "-p", "no:cacheprovider"]))
