"""Real DHCP/TFTP/DNS clients run inside a test network namespace.

udhcpc (busybox, Debian's udhcpc package) is the DHCP client: it runs an event script that dumps
the variables it received, so tests see exactly what the server handed out.
"""

from __future__ import annotations

import hashlib
import json
import stat
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.netns import NetLab

_SCRIPT = """#!/bin/sh
[ "$1" = bound ] || exit 0
env | grep -E '^(ip|subnet|router|dns|domain|hostname|boot_file|bootfile|siaddr|sname|serverid|lease|rootpath|ntpsrv|opt[0-9]+)=' > "$DHCP_OUT"
"""  # noqa: E501


@dataclass
class Lease:
    values: dict[str, str]

    def __getitem__(self, key: str) -> str:
        return self.values[key]

    def get(self, key: str, default: str | None = None) -> str | None:
        return self.values.get(key, default)


class DhcpClient:
    def __init__(self, lab: NetLab, namespace: str, interface: str, workdir: Path) -> None:
        self.lab, self.ns, self.ifname, self.dir = lab, namespace, interface, workdir
        self.script = workdir / "udhcpc-event.sh"
        self.script.write_text(_SCRIPT)
        self.script.chmod(self.script.stat().st_mode | stat.S_IEXEC)

    def request(
        self,
        mac: str,
        user_class: str | None = None,
        arch: int | None = None,
        vendor: str | None = None,
        extra_options: tuple[int, ...] = (),
        tries: int = 4,
    ) -> Lease | None:
        """One DHCP exchange from ``mac``; the lease's variables, or None if nobody answered."""
        self.lab.set_mac(self.ns, self.ifname, mac)
        out = self.dir / f"lease-{mac.replace(':', '')}.env"
        out.unlink(missing_ok=True)
        argv = ["env", f"DHCP_OUT={out}", "udhcpc", "-i", self.ifname, "-f", "-q", "-n"]
        argv += ["-t", str(tries), "-T", "1", "-s", str(self.script)]
        if user_class:
            argv += ["-x", f"0x4d:{user_class.encode().hex()}"]
        if arch is not None:
            argv += ["-x", f"0x5d:{arch:04x}"]
        if vendor:
            argv += ["-V", vendor]
        for opt in extra_options:
            argv += ["-O", str(opt)]
        proc = self.lab.run(self.ns, argv, timeout=30)
        if proc.returncode != 0 or not out.exists():
            return None
        values = dict(line.split("=", 1) for line in out.read_text().splitlines() if "=" in line)
        return Lease(values)


def tftp_get(lab: NetLab, namespace: str, server: str, name: str, dest: Path) -> str:
    """Download ``name`` in binary mode with tftp-hpa; returns the file's sha256."""
    proc = lab.run(namespace, ["tftp", "-m", "binary", server, "-c", "get", name, str(dest)], timeout=60)
    if proc.returncode != 0 or not dest.exists():
        raise AssertionError(f"tftp get {name} failed: {proc.stdout} {proc.stderr}")
    return hashlib.sha256(dest.read_bytes()).hexdigest()


def dig(lab: NetLab, namespace: str, server: str, name: str, rtype: str = "A") -> list[str]:
    proc = lab.run(namespace, ["dig", "+short", "+time=2", "+tries=2", f"@{server}", name, rtype], timeout=30)
    return [line for line in proc.stdout.split() if line]


def probe(lab: NetLab, namespace: str, ifname: str, mac: str, options: dict[int, str], wait: float = 3.0,
          ) -> list[dict[str, Any]]:  # fmt: skip
    """Every reply to one DHCPDISCOVER (see tests/support/dhcp_probe.py)."""
    argv = [
        sys.executable,
        "-m",
        "tests.support.dhcp_probe",
        "--ifname",
        ifname,
        "--mac",
        mac,
        "--wait",
        str(wait),
    ]
    for code, value in options.items():
        argv += ["--option", f"{code}={value}"]
    proc = lab.run(namespace, argv, timeout=wait + 30)
    if proc.returncode != 0:
        raise AssertionError(f"dhcp probe failed: {proc.stderr}")
    return list(json.loads(proc.stdout))
