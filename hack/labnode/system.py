"""Host plumbing for the test node: commands, network namespace, mounts, cgroups, processes.

Every function here acts only on things whose names or paths the caller passes in, so teardown
of one node never touches another node, a system containerd or the host's own mounts.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

CGROUP_V1 = Path("/sys/fs/cgroup")


def run(argv: Sequence[str], check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}"
        )
    return proc


def in_netns(netns: str, argv: Sequence[str]) -> list[str]:
    """argv run in the node's network namespace but the host's mount namespace."""
    return ["nsenter", f"--net=/run/netns/{netns}", "--", *argv]


def netns_exists(netns: str) -> bool:
    return Path("/run/netns", netns).exists()


def link_exists(ifname: str) -> bool:
    return Path("/sys/class/net", ifname).exists()


def setup_network(
    netns: str, host_if: str, host_ip: str, node_ip: str, prefix: int, guard: Iterable[str]
) -> None:
    """Namespace, veth pair (host end ``host_if``, node end eth0) and the node's egress guard."""
    run(["ip", "netns", "add", netns])
    peer = f"{host_if}p"
    run(["ip", "link", "add", host_if, "type", "veth", "peer", "name", peer])
    run(["ip", "link", "set", peer, "netns", netns])
    run(["ip", "addr", "add", f"{host_ip}/{prefix}", "dev", host_if])
    run(["ip", "link", "set", host_if, "up"])
    ns = ["ip", "-n", netns]
    run([*ns, "link", "set", peer, "name", "eth0"])
    run([*ns, "addr", "add", f"{node_ip}/{prefix}", "dev", "eth0"])
    run([*ns, "link", "set", "eth0", "up"])
    run([*ns, "link", "set", "lo", "up"])
    for rule in guard:
        run(in_netns(netns, ["iptables", *rule.split()]))


def teardown_network(netns: str, host_if: str) -> None:
    if netns_exists(netns):
        run(["ip", "netns", "delete", netns], check=False)
    # Deleting the namespace destroys the node end, which takes the host end with it; be sure.
    if link_exists(host_if):
        run(["ip", "link", "delete", host_if], check=False)


def _unescape(field: str) -> str:
    return field.encode().decode("unicode_escape")


def mounts_under(roots: Iterable[Path]) -> list[str]:
    """Mount points at or below any of ``roots``, deepest first (unmount order)."""
    prefixes = [str(r.resolve()) for r in roots]
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        target = _unescape(line.split()[4])
        if any(target == p or target.startswith(p + "/") for p in prefixes):
            found.append(target)
    return sorted(set(found), key=lambda t: (-t.count("/"), t))


def unmount_all(roots: Iterable[Path]) -> list[str]:
    """Unmount everything below ``roots``; lazily only when a mount stays busy. Returns failures."""
    roots = list(roots)
    for _ in range(3):
        targets = mounts_under(roots)
        if not targets:
            return []
        for target in targets:
            if run(["umount", target], check=False).returncode != 0:
                run(["umount", "-l", target], check=False)
    return mounts_under(roots)


def cgroup_dirs(name: str) -> list[Path]:
    """``name`` in every v1 hierarchy where it exists."""
    if not CGROUP_V1.is_dir():
        return []
    return [h / name for h in sorted(CGROUP_V1.iterdir()) if (h / name).is_dir()]


def make_cgroup(name: str) -> None:
    for hierarchy in sorted(CGROUP_V1.iterdir()):
        if not (hierarchy / "cgroup.procs").exists() or hierarchy.name == "unified":
            continue
        path = hierarchy / name
        path.mkdir(exist_ok=True)
        # A fresh v1 cpuset is empty, and tasks cannot join an empty cpuset.
        for knob in ("cpuset.cpus", "cpuset.mems"):
            if (hierarchy / knob).exists() and not (path / knob).read_text().strip():
                (path / knob).write_text((hierarchy / knob).read_text())


def cgroup_pids(name: str) -> set[int]:
    pids: set[int] = set()
    for top in cgroup_dirs(name):
        for procs in top.rglob("cgroup.procs"):
            with contextlib.suppress(OSError):
                pids.update(int(p) for p in procs.read_text().split())
    return pids


def remove_cgroup(name: str) -> list[str]:
    """rmdir the whole subtree, deepest first. Returns what could not be removed."""
    left = []
    for top in cgroup_dirs(name):
        for path in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
            with contextlib.suppress(OSError):
                path.rmdir()
        try:
            top.rmdir()
        except OSError as exc:
            left.append(f"{top}: {exc}")
    return left


def pids_with_arg(needle: str) -> set[int]:
    """Processes whose command line contains ``needle`` (e.g. our containerd socket path)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if needle in (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                found.add(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):
        # A zombie child of ours is gone for every purpose but the process table.
        if Path(f"/proc/{pid}/stat").read_text().split(") ")[-1].startswith("Z"):
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            return False
    return True


def stop(pids: Iterable[int], grace: float = 10) -> None:
    """SIGTERM, then SIGKILL whatever is left after ``grace`` seconds."""
    pids = [p for p in pids if alive(p)]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.1)
    for pid in pids:
        if alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.05)
