"""Boot service benchmark: a rack booting at once.

500 approved TalosDevices on the real apiserver (operator and boot service as real processes);
200 concurrent HTTP clients each fetch a device's iPXE script and then its machine config, once
with cold render caches and once warm. Figures: requests/s, p50/p99 latency per endpoint, render
time per config cold (full render) and warm (cache hit) as measured inside the service.
Prints them and writes build/bench/boot.json. `make bench-boot`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO), str(REPO / "hack")]

from tests.support.bootservice import running_boot_service  # noqa: E402
from tests.support.kube import BIN, ControlPlane  # noqa: E402
from tests.support.operators import start_operator  # noqa: E402
from tests.support.wait import wait_for  # noqa: E402

CONFIG_URL = re.compile(r"talos\.config=(\S+)")


def control_plane(workdir: Path) -> tuple[subprocess.Popen[bytes], ControlPlane]:
    log = open(workdir / "testenv.out", "wb")  # noqa: SIM115 - lives as long as the process
    proc = subprocess.Popen([str(BIN / "trellis-testenv"), "up", "--dir", str(workdir)], stdout=log,
                            stderr=subprocess.STDOUT)  # fmt: skip
    ready = workdir / "ready.json"
    wait_for(ready.exists, timeout=240, what="control plane")
    info = json.loads(ready.read_text())
    return proc, ControlPlane(Path(info["kubeconfig"]), info["server"])


def mac(i: int) -> str:
    return f"52:54:00:{(i >> 16) & 255:02x}:{(i >> 8) & 255:02x}:{i & 255:02x}"


def objects(devices: int) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = [
        {
            "apiVersion": "trellis.dev/v1alpha1",
            "kind": "TalosCluster",
            "metadata": {"name": "rack"},
            "spec": {
                "endpoint": "https://10.0.0.10:6443",
                "talosVersion": "v1.12.0",
                "kubernetesVersion": "1.35.0",
                "installDisk": "/dev/sda",
                "registryMirrors": [
                    {"registry": "docker.io", "endpoints": ["https://mirror.lab.example:5000"]}
                ],
                "volumes": [{"name": "EPHEMERAL", "provisioning": {"maxSize": "100GiB"}}],
            },
        }
    ]
    for i in range(devices):
        role = "controlplane" if i < 3 else "worker"
        address = f"10.{(i + 10) // 250}.{(i + 10) % 250}.{10 + i % 200}/16"
        if i == 0:
            address = "10.0.0.10/16"
        items.append(
            {
                "apiVersion": "trellis.dev/v1alpha1",
                "kind": "TalosDevice",
                "metadata": {"name": f"node-{i:03d}"},
                "spec": {
                    "mac": mac(i),
                    "clusterRef": "rack",
                    "role": role,
                    "approval": "Approved",
                    "hostname": f"node-{i:03d}",
                    "network": {
                        "interfaces": [{"selector": {"hardwareAddr": mac(i)}, "addresses": [address]}],
                        "nameservers": ["10.0.0.1"],
                    },
                },
            }
        )
    return items


def ready_devices(cp: ControlPlane, namespace: str) -> int:
    out = cp.kubectl("-n", namespace, "get", "talosdevices", "-o", "json", timeout=120).stdout
    count = 0
    for item in json.loads(out)["items"]:
        gen = item["metadata"].get("generation")
        for cond in (item.get("status") or {}).get("conditions") or []:
            count += (
                cond["type"] == "Ready" and cond["status"] == "True" and cond.get("observedGeneration") == gen
            )
    return count


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


async def http_get(host: str, port: int, target: str) -> tuple[int, bytes]:
    """One request on its own connection, as iPXE and Talos make them; a deliberately thin client
    so the load generator costs little of the CPU it shares with the service."""
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(f"GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
    data = await reader.read(-1)
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def requests_get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=30) as resp:
        return str(resp.read().decode())


async def boot_wave(url: str, devices: int, clients: int) -> dict[str, Any]:
    """Every device fetches its script and then its config; `clients` machines booting at a time."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    latencies: dict[str, list[float]] = {"ipxe": [], "config": []}
    failures: dict[str, int] = {}
    gate = asyncio.Semaphore(clients)

    async def one(i: int) -> None:
        async with gate:
            started = time.perf_counter()
            status, script = await http_get(host, port, f"/ipxe?mac={mac(i)}&arch=x86_64")
            latencies["ipxe"].append(time.perf_counter() - started)
            match = CONFIG_URL.search(script.decode())
            if status != 200 or not match:
                failures["ipxe"] = failures.get("ipxe", 0) + 1
                return
            config = urlsplit(match.group(1).replace("${uuid}", f"uuid-{i}"))
            started = time.perf_counter()
            status, body = await http_get(host, port, f"{config.path}?{config.query}")
            latencies["config"].append(time.perf_counter() - started)
            if status != 200 or b"machine:" not in body:
                failures["config"] = failures.get("config", 0) + 1

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(devices)))
    elapsed = time.perf_counter() - started
    requests = sum(len(v) for v in latencies.values())
    out: dict[str, Any] = {
        "requests": requests,
        "seconds": round(elapsed, 3),
        "req_per_s": round(requests / elapsed, 1),
    }
    for name, values in latencies.items():
        if values:
            out[name] = {
                "p50_ms": round(percentile(values, 50) * 1000, 2),
                "p99_ms": round(percentile(values, 99) * 1000, 2),
                "max_ms": round(max(values) * 1000, 2),
                "mean_ms": round(statistics.fmean(values) * 1000, 2),
            }
    every = [v for values in latencies.values() for v in values]
    out["all"] = {
        "p50_ms": round(percentile(every, 50) * 1000, 2),
        "p99_ms": round(percentile(every, 99) * 1000, 2),
    }
    out["failures"] = failures
    return out


def apache_bench(url: str, requests: int, clients: int) -> dict[str, Any] | None:
    """The service alone, under `ab` (a C client): warm requests for one device, `clients` at once.

    Separates the service's capacity from the Python load generator sharing the same CPUs."""
    binary = shutil.which("ab")
    if binary is None:
        return None
    proc = subprocess.run(
        [binary, "-q", "-n", str(requests), "-c", str(clients), url],
        capture_output=True,
        text=True,
        timeout=600,
    )
    out = proc.stdout
    rate = re.search(r"Requests per second:\s+([0-9.]+)", out)
    pct = dict(re.findall(r"^\s+(\d+)%\s+(\d+)", out, re.MULTILINE))
    failed = re.search(r"Failed requests:\s+(\d+)", out)
    if not rate:
        return {"error": (proc.stderr or out)[-500:]}
    return {
        "requests": requests,
        "clients": clients,
        "req_per_s": float(rate.group(1)),
        "p50_ms": int(pct.get("50", -1)),
        "p99_ms": int(pct.get("99", -1)),
        "failed": int(failed.group(1)) if failed else None,
    }


async def stats(url: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session, session.get(f"{url}/stats") as resp:
        return dict(await resp.json())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=500)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--out", default=str(REPO / "build" / "bench" / "boot.json"))
    args = parser.parse_args()
    workdir = Path(
        tempfile.mkdtemp(prefix="boot-bench-", dir=REPO / "build" if (REPO / "build").is_dir() else None)
    )
    testenv, cp = control_plane(workdir)
    operator = None
    try:
        cp.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(REPO / "crds"))
        cp.kubectl(
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd",
            "-l",
            "app.kubernetes.io/part-of=trellis",
        )
        namespace = f"bench-{secrets.token_hex(3)}"
        cp.kubectl("create", "namespace", namespace)
        operator = start_operator(
            cp, "trellis.operators.talosdevice.handlers", workdir / "logs", namespace=namespace
        )
        started = time.perf_counter()
        cp.kubectl(
            "-n",
            namespace,
            "apply",
            "--server-side",
            "-f",
            "-",
            input=yaml.safe_dump_all(objects(args.devices)),
            timeout=300,
        )
        wait_for(
            lambda: ready_devices(cp, namespace) >= args.devices,
            timeout=900,
            interval=2,
            what="devices Ready",
        )
        admitted = time.perf_counter() - started
        load_before = os.getloadavg()[0]
        with running_boot_service(cp, workdir / "logs", namespace, ["--config-window", "0"]) as boot:
            cold = asyncio.run(boot_wave(boot.url, args.devices, args.clients))
            after_cold = asyncio.run(stats(boot.url))
            warm = asyncio.run(boot_wave(boot.url, args.devices, args.clients))
            after_warm = asyncio.run(stats(boot.url))
            script = requests_get(f"{boot.url}/ipxe?mac={mac(7)}&arch=x86_64")
            config_url = CONFIG_URL.search(script).group(1).replace("${uuid}", "ab")  # type: ignore[union-attr]
            ab = {
                "ipxe": apache_bench(f"{boot.url}/ipxe?mac={mac(7)}&arch=x86_64", 4000, args.clients),
                "config": apache_bench(config_url, 4000, args.clients),
            }
        hits = after_warm["cacheHits"] - after_cold["cacheHits"]
        result = {
            "devices": args.devices,
            "clients": args.clients,
            "operator_admit_seconds": round(admitted, 2),
            "cold": cold,
            "warm": warm,
            "render_cold_ms_per_config": round(
                after_cold["renderSeconds"] / max(1, after_cold["renders"]) * 1000, 3
            ),
            "render_warm_ms_per_config": round(
                (after_warm["hitSeconds"] - after_cold["hitSeconds"]) / max(1, hits) * 1000, 4
            ),
            "renders": after_warm["renders"],
            "cache_hits": after_warm["cacheHits"],
            "status_writes": after_warm["statusWrites"],
            "target_p99_warm_ms": 50,
            "ab_warm_single_device": ab,
            # The machine is shared: the load average says how much else competed for its 2 cores.
            "loadavg_1m_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        }
    finally:
        if operator is not None:
            operator.stop()
        testenv.send_signal(signal.SIGTERM)
        testenv.wait(timeout=60)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"boot bench: {args.devices} devices, {args.clients} concurrent clients "
        f"(operator admitted all in {result['operator_admit_seconds']} s)"
    )
    for wave in ("cold", "warm"):
        w = result[wave]
        print(
            f"  {wave:4}: {w['req_per_s']} req/s, all p50 {w['all']['p50_ms']} ms,"
            f" p99 {w['all']['p99_ms']} ms; ipxe p99 {w['ipxe']['p99_ms']} ms,"
            f" config p99 {w['config']['p99_ms']} ms, failures {w['failures']}"
        )
    print(
        f"  render per config: cold {result['render_cold_ms_per_config']} ms,"
        f" warm (cache hit) {result['render_warm_ms_per_config']} ms"
    )
    for name, figures in (result["ab_warm_single_device"] or {}).items():
        if figures and "req_per_s" in figures:
            print(
                f"  ab, warm {name}: {figures['req_per_s']} req/s at {figures['clients']} concurrent,"
                f" p50 {figures['p50_ms']} ms, p99 {figures['p99_ms']} ms"
            )
    print(f"  load average (1 min) before/after: {result['loadavg_1m_before_after']}")
    print(f"  wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
