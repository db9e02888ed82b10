"""SFTP throughput of the ISOCDROM transfer path: a 256 MiB image to the RDS simulator on loopback.

Runs the same upload with paramiko's defaults and with the operator's tuned transport (window,
packet size, AEAD cipher, pipelined writes; 32 KiB and 128 KiB write requests), then the full
product path (HTTP download → SFTP with sha256 on the fly → verify → rename). Prints MB/s and
writes build/bench/sftp.json.

The server side is the simulator's SFTP subsystem (paramiko, Python), which shares the two cores
with the client; a real RDS would not, so these are lower bounds for the client.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paramiko

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO), str(REPO / "hack")]

from tests.support.rossim import start_rossim  # noqa: E402
from trellis.operators.isocdrom import transfer  # noqa: E402
from trellis.routeros.ssh import SSHConfig  # noqa: E402

SIZE = 256 * 1024 * 1024
# paramiko's defaults move about 1 MB/s here: they are measured on a smaller image.
DEFAULTS_SIZE = 16 * 1024 * 1024
BLOCK = 1024 * 1024
REPEAT = 3


def blocks(size: int = SIZE) -> Iterator[bytes]:
    seed = os.urandom(BLOCK)
    for i in range(size // BLOCK):
        yield seed[i:] + seed[:i]


def timed(fn: Callable[[], object], size: int = SIZE) -> float:
    start = time.monotonic()
    fn()
    return size / (time.monotonic() - start) / 1e6


def repeated(fn: Callable[[], object], size: int = SIZE, repeat: int = REPEAT) -> dict[str, Any]:
    """Several runs: the machine is shared, so the median and the best are both reported."""
    rates = sorted(timed(fn, size) for _ in range(repeat))
    return {
        "median": round(statistics.median(rates), 1),
        "best": round(rates[-1], 1),
        "runs": [round(r, 1) for r in rates],
    }


def defaults_upload(cfg: SSHConfig, path: str) -> None:
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    client.connect(cfg.host, port=cfg.port, username=cfg.username, password=cfg.password, look_for_keys=False)
    try:
        sftp = client.open_sftp()
        with sftp.open(path, "wb") as fh:
            for block in blocks(DEFAULTS_SIZE):
                fh.write(block)
    finally:
        client.close()


def tuned_upload(cfg: SSHConfig, path: str, write_size: int) -> None:
    transport = transfer.open_transport(cfg)
    try:
        sftp = transfer.open_sftp(transport)
        transfer.upload_stream(sftp, blocks(), path, False, hashlib.sha256(), 0, write_size=write_size)
    finally:
        transport.close()


def serve_file(path: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    directory = str(path.parent)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=directory, **kwargs)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/{path.name}"


def product_path(cfg: SSHConfig, url: str, sha: str) -> None:
    transport = transfer.open_transport(cfg)
    try:
        sftp = transfer.open_sftp(transport)
        final = "/storage-pool/iso/bench.iso"
        transfer.ensure_directory(sftp, "/storage-pool/iso")
        temp = transfer.temp_name(final)
        result = transfer.transfer(sftp, transfer.HTTPSource(url), temp)
        transfer.finalize(sftp, temp, final, sha, result)
    finally:
        transport.close()


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="sftp-bench-"))
    sim = start_rossim(work / "rds", tls=False, pool_size="4G")
    results: dict[str, Any] = {"size_bytes": SIZE, "server": "rossim (paramiko SFTP subsystem), loopback"}
    try:
        cfg = SSHConfig(
            host=sim.host,
            port=sim.ssh_port,
            username=sim.username,
            password=sim.password,
            known_hosts=sim.known_hosts_line,
        )
        results["paramiko_defaults_MBps"] = repeated(
            lambda: defaults_upload(cfg, "/storage-pool/a.bin"), DEFAULTS_SIZE, repeat=1
        )
        results["paramiko_defaults_size_bytes"] = DEFAULTS_SIZE
        results["tuned_32KiB_requests_MBps"] = repeated(
            lambda: tuned_upload(cfg, "/storage-pool/b.bin", 32 * 1024)
        )
        results["tuned_128KiB_requests_MBps"] = repeated(
            lambda: tuned_upload(cfg, "/storage-pool/c.bin", 128 * 1024)
        )
        for name in ("paramiko_defaults", "tuned_32KiB_requests", "tuned_128KiB_requests"):
            figures = results[f"{name}_MBps"]
            print(f"{name:28s} median {figures['median']:7.1f} MB/s  best {figures['best']:7.1f} MB/s")
        image = work / "image.iso"
        digest = hashlib.sha256()
        with open(image, "wb") as fh:
            for block in blocks():
                fh.write(block)
                digest.update(block)
        server, url = serve_file(image)
        try:
            figures = repeated(lambda: product_path(cfg, url, digest.hexdigest()))
        finally:
            server.shutdown()
        results["http_to_sftp_verified_MBps"] = figures
        results["load_average"] = os.getloadavg()
        name = "http_to_sftp_verified"
        print(f"{name:28s} median {figures['median']:7.1f} MB/s  best {figures['best']:7.1f} MB/s")
    finally:
        sim.stop()
        shutil.rmtree(work, ignore_errors=True)
    out = REPO / "build" / "bench" / "sftp.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
