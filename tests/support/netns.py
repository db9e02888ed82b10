"""Throw-away network namespaces joined by veth pairs (pyroute2), for real DHCP/TFTP/DNS tests.

Every namespace and process made here is removed by ``close()``; addresses are only ever set
inside these namespaces, never on the host.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from pyroute2 import IPRoute, NetNS, netns


def can_use_netns() -> str | None:
    """None if namespaces can be made here, else the reason they cannot."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    name = f"trprobe{secrets.token_hex(3)}"
    try:
        netns.create(name)
    except OSError as exc:
        return f"cannot create a network namespace: {exc}"
    netns.remove(name)
    return None


class NetLab:
    def __init__(self) -> None:
        self.tag = secrets.token_hex(3)
        self.namespaces: list[str] = []
        self.procs: list[subprocess.Popen[bytes]] = []

    def namespace(self, role: str) -> str:
        name = f"tr{role}{self.tag}"
        netns.create(name)
        self.namespaces.append(name)
        with NetNS(name) as ns:
            ns.link("set", index=ns.link_lookup(ifname="lo")[0], state="up")
        return name

    def veth(self, ns_a: str, if_a: str, ns_b: str, if_b: str, mac_b: str | None = None) -> None:
        """A veth pair with one end in each namespace, both up."""
        tmp_a, tmp_b = f"va{self.tag}", f"vb{self.tag}"
        with IPRoute() as ipr:
            ipr.link("add", ifname=tmp_a, kind="veth", peer=tmp_b)
            ipr.link("set", index=ipr.link_lookup(ifname=tmp_a)[0], net_ns_fd=ns_a, ifname=if_a)
            ipr.link("set", index=ipr.link_lookup(ifname=tmp_b)[0], net_ns_fd=ns_b, ifname=if_b)
        for ns_name, ifname, mac in ((ns_a, if_a, None), (ns_b, if_b, mac_b)):
            with NetNS(ns_name) as ns:
                idx = ns.link_lookup(ifname=ifname)[0]
                if mac:
                    ns.link("set", index=idx, address=mac)
                ns.link("set", index=idx, state="up")

    def set_mac(self, ns_name: str, ifname: str, mac: str) -> None:
        with NetNS(ns_name) as ns:
            idx = ns.link_lookup(ifname=ifname)[0]
            ns.link("set", index=idx, state="down")
            ns.link("set", index=idx, address=mac)
            ns.link("set", index=idx, state="up")

    def flush_addresses(self, ns_name: str, ifname: str) -> None:
        with NetNS(ns_name) as ns:
            ns.flush_addr(index=ns.link_lookup(ifname=ifname)[0])

    def vlan(self, ns_name: str, parent: str, vlan_id: int, name: str) -> None:
        with NetNS(ns_name) as ns:
            ns.link("add", ifname=name, kind="vlan", link=ns.link_lookup(ifname=parent)[0], vlan_id=vlan_id)
            ns.link("set", index=ns.link_lookup(ifname=name)[0], state="up")

    def run(self, ns_name: str, argv: Sequence[str], timeout: float = 60, check: bool = False,
            ) -> subprocess.CompletedProcess[str]:  # fmt: skip
        return subprocess.run(
            ["ip", "netns", "exec", ns_name, *argv],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=check,
        )

    def start(self, ns_name: str, argv: Sequence[str], log: Path) -> subprocess.Popen[bytes]:
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                ["ip", "netns", "exec", ns_name, *argv],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)

    def close(self) -> None:
        for proc in self.procs:
            self.stop(proc)
        for name in self.namespaces:
            # Killing leftovers inside the namespace first lets its veth ends go with it.
            for pid in netns.ns_pids().get(name, []):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(OSError):
                netns.remove(name)
        self.namespaces.clear()


@contextmanager
def netlab() -> Iterator[NetLab]:
    lab = NetLab()
    try:
        yield lab
    finally:
        lab.close()
