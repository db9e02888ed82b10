"""Bridges and tap devices for the machines, inside a network namespace; removes only what it made.

Everything goes through ``ip`` (iproute2) with argument lists: the namespace is named on every
command (``ip -n NS``), so nothing here can touch the host's or another namespace's interfaces.
"""

from __future__ import annotations

import secrets
import subprocess
from dataclasses import dataclass, field


class NetError(Exception):
    pass


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise NetError(f"ip {' '.join(args)}: {result.stderr.strip()}")
    return result


def netns_exists(name: str) -> bool:
    return name in {line.split()[0] for line in _ip("netns", "list").stdout.splitlines() if line.strip()}


def link_exists(netns: str, ifname: str) -> bool:
    return _ip("-n", netns, "link", "show", "dev", ifname, check=False).returncode == 0


@dataclass
class Network:
    """What this process created, in creation order, so that ``close`` undoes exactly that."""

    created_netns: list[str] = field(default_factory=list)
    created_links: list[tuple[str, str]] = field(default_factory=list)  # (netns, ifname)

    def namespace(self, name: str | None = None) -> str:
        """The namespace ``name`` (created if missing), or a fresh ``rack-<hex>`` one."""
        name = name or f"rack-{secrets.token_hex(3)}"
        if not netns_exists(name):
            _ip("netns", "add", name)
            self.created_netns.append(name)
            _ip("-n", name, "link", "set", "lo", "up")
        return name

    def bridge(self, netns: str, name: str, address: str | None = None) -> None:
        if not link_exists(netns, name):
            _ip("-n", netns, "link", "add", "name", name, "type", "bridge")
            self.created_links.append((netns, name))
        if address:
            present = _ip("-n", netns, "-o", "addr", "show", "dev", name).stdout
            if f" {address} " not in present:
                _ip("-n", netns, "addr", "add", address, "dev", name)
        _ip("-n", netns, "link", "set", name, "up")

    def tap(self, netns: str, name: str, bridge: str) -> None:
        if len(name) > 15:
            raise NetError(f"interface name {name!r} is longer than 15 characters")
        if not link_exists(netns, name):
            _ip("-n", netns, "tuntap", "add", "dev", name, "mode", "tap")
            self.created_links.append((netns, name))
        _ip("-n", netns, "link", "set", name, "master", bridge, "up")

    def close(self) -> list[str]:
        """Remove what was created (taps, bridges, then namespaces); return what could not be removed."""
        failed = []
        for netns, ifname in reversed(self.created_links):
            if netns_exists(netns) and link_exists(netns, ifname):
                result = _ip("-n", netns, "link", "del", ifname, check=False)
                if result.returncode != 0:
                    failed.append(f"{netns}/{ifname}: {result.stderr.strip()}")
        self.created_links.clear()
        for netns in reversed(self.created_netns):
            result = _ip("netns", "del", netns, check=False)
            if result.returncode != 0:
                failed.append(f"{netns}: {result.stderr.strip()}")
        self.created_netns.clear()
        return failed
