"""The RDS's iSCSI export as a real target: a private `tgtd` (Debian `tgt`) kept in step with /disk.

Off unless `--iscsi-portal` is given. One tgtd per simulator, with its own management socket
(`-C`), so several simulators and a system tgtd can run side by side. tgtd has one portal per
process while RouterOS has `iscsi-server-port` per disk: every exported disk is served on the one
portal, the port field shows the portal's port unless set, and a disk that asks for another port
is refused (see docs/simulator.md).
"""

from __future__ import annotations

import contextlib
import ctypes
import ipaddress
import logging
import shutil
import signal
import socket
import subprocess
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rossim import errors
from rossim.hooks import pinned
from rossim.menus_disk import IQN_PREFIX

if TYPE_CHECKING:
    from rossim.device import Device
    from rossim.schema import View

log = logging.getLogger(__name__)

EXPORT_FAILED = "failure: could not export disk over iscsi: {reason}"  # GUESS: wording unconfirmed
# Not a RouterOS message: a limit of the simulator (one tgtd portal), worded like one.
PORT_UNAVAILABLE = "failure: iscsi-server-port must be {port} on this device"
IPC_DIR = Path("/var/run/tgtd")
LUN = 1
_PR_SET_PDEATHSIG = 1


class TgtError(Exception):
    pass


def parse_portal(text: str) -> tuple[str, int]:
    """`ADDR[:PORT]` (IPv4, port 3260 by default, 0 = a free port); the wildcard address is refused."""
    host, sep, port_text = text.rpartition(":")
    if not sep:
        host, port_text = text, "3260"
    try:
        addr = ipaddress.IPv4Address(host)
        port = int(port_text)
    except ValueError:
        raise ValueError(f"--iscsi-portal {text!r}: expected IPv4ADDR[:PORT]") from None
    if addr.is_unspecified or not 0 <= port <= 65535:
        raise ValueError(f"--iscsi-portal {text!r}: give one address (not 0.0.0.0) and a port")
    if port == 0:
        with socket.socket() as probe:
            probe.bind((str(addr), 0))
            port = int(probe.getsockname()[1])
    return str(addr), port


def _die_with_parent() -> None:
    # A simulator killed with SIGKILL must not leave its tgtd (and the portal) behind.
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class Tgtd:
    """One tgtd child in the foreground; `admin()` runs tgtadm against its management socket."""

    START_TIMEOUT = 10.0

    def __init__(self, address: str, port: int, log_path: Path, control_port: int | None = None) -> None:
        self.address = address
        self.port = port
        self.log_path = log_path
        self.control_port = control_port
        self.proc: subprocess.Popen[bytes] | None = None
        self.tgtd = shutil.which("tgtd") or shutil.which("tgtd", path="/usr/sbin:/sbin")
        self.tgtadm = shutil.which("tgtadm") or shutil.which("tgtadm", path="/usr/sbin:/sbin")

    @property
    def portal(self) -> str:
        return f"{self.address}:{self.port}"

    def start(self) -> None:
        if not self.tgtd or not self.tgtadm:
            raise TgtError("tgtd/tgtadm not found: install the Debian package tgt (hack/install-deps.sh)")
        if self.control_port is not None:
            candidates = [self.control_port]
        else:
            # Stable per portal, so a restarted simulator finds the same socket name; on a clash
            # with another tgtd (its lock is held) the next number is tried.
            base = 1000 + zlib.crc32(self.portal.encode()) % 31000  # tgtd accepts up to 32767
            candidates = list(range(base, base + 16))
        for candidate in candidates:
            if self._try_start(candidate):
                self.control_port = candidate
                return
        raise TgtError(f"no free tgtd control port among {candidates[0]}..{candidates[-1]}")

    def _try_start(self, control_port: int) -> bool:
        argv = [str(self.tgtd), "-f", "-C", str(control_port), "--iscsi", f"portal={self.portal}"]
        with open(self.log_path, "ab") as out:
            offset = out.tell()
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,  # safe: the simulator starts tgtd before any thread
            )
        self.control_port = control_port
        deadline = time.monotonic() + self.START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.proc = None
                with open(self.log_path, "rb") as fh:
                    fh.seek(offset)
                    said = fh.read().decode(errors="replace").strip()
                if "another tgtd is using" in said:
                    return False
                raise TgtError(f"tgtd exited: {said[-300:]}")
            try:
                portals = self.admin("--mode", "portal", "--op", "show", lld=True)
            except TgtError:
                time.sleep(0.05)
                continue
            # tgtd keeps running when it cannot bind its portal, so check that it did.
            if f"Portal: {self.portal}," not in portals:
                self.stop()
                raise TgtError(f"tgtd could not listen on {self.portal} (address in use or not local?)")
            return True
        self.stop()
        raise TgtError(f"tgtd did not answer on control port {control_port}")

    def admin(self, *args: str, lld: bool = True) -> str:
        argv = [str(self.tgtadm), "-C", str(self.control_port)]
        if lld:
            argv += ["--lld", "iscsi"]
        done = subprocess.run(argv + list(args), capture_output=True, timeout=30, check=False)
        if done.returncode != 0:
            text = (done.stderr or done.stdout).decode(errors="replace").strip().splitlines()
            reason = text[0].removeprefix("tgtadm: ") if text else f"tgtadm exit status {done.returncode}"
            raise TgtError(reason)
        return done.stdout.decode(errors="replace")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            # SIGTERM is ignored by tgtd; "delete system" is its clean exit (targets must be gone).
            with contextlib.suppress(TgtError, subprocess.TimeoutExpired):
                self.admin("--op", "delete", "--mode", "system", lld=False)
            try:
                proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        for suffix in ("", ".lock"):
            with contextlib.suppress(OSError):
                (IPC_DIR / f"socket.{self.control_port}{suffix}").unlink()


@dataclass(frozen=True)
class Target:
    iqn: str
    path: str
    readonly: bool
    size: int


class IscsiExports:
    """disk item -> tgt target; every change of /disk goes through `sync_item`, idempotently."""

    def __init__(self, tgtd: Tgtd) -> None:
        self.tgtd = tgtd
        self.port = tgtd.port
        self.active: dict[int, tuple[int, Target]] = {}
        self._next_tid = 1
        self._timer: threading.Timer | None = None

    def attach(self, device: Device) -> None:
        device.iscsi = self
        device.subscribe(lambda path, what, num, view: self._on_change(device, path, num, view))
        self.sync_all(device, strict=False)

    def _on_change(self, device: Device, path: str, num: int, view: View | None) -> None:
        # Safety net for writes that bypass the disk hooks (e.g. `unset`); normally a no-op.
        if path != "disk":
            return
        try:
            self.sync_item(device, num, device.table("disk").items.get(num))
        except errors.RosError as exc:
            log.warning("iscsi export of disk %s: %s", num, exc.message)

    def want(self, device: Device, item: dict[str, Any] | None) -> Target | None:
        if item is None or item.get("type") != "file" or not item.get("iscsi-export"):
            return None
        if item.get("disabled"):
            return None
        asked = item.get("iscsi-server-port")
        if asked is not None and int(asked) != self.port:
            raise pinned(PORT_UNAVAILABLE.format(port=self.port), "iscsi-server-port")
        if not device.faults.exports_ready():
            return None
        rel = "/".join(p for p in str(item.get("file-path", "")).split("/") if p)
        # iPXE reads ISO9660 through a 512-byte disk LUN as a CD (sanboot.c, sandev_parse_iso9660),
        # and hybrid ISOs boot from their MBR, so ISOs are plain read-only disks, not --device-type cd.
        return Target(
            iqn=str(item.get("iscsi-server-iqn") or IQN_PREFIX + str(item.get("slot", ""))),
            path=str(device.storage.root / rel),
            readonly=rel.lower().endswith(".iso"),
            size=device.storage.size(rel) or 0,
        )

    def sync_item(self, device: Device, num: int, item: dict[str, Any] | None) -> None:
        want = self.want(device, item)
        have = self.active.get(num)
        if (have[1] if have else None) == want:
            return
        if want is not None and any(t.iqn == want.iqn for n, (_, t) in self.active.items() if n != num):
            raise pinned(errors.ALREADY_HAVE, "iscsi-server-iqn")
        if have is not None:
            self._delete(have[0])
            del self.active[num]
        if want is None:
            return
        try:
            self.active[num] = (self._add(want), want)
        except errors.RosError:
            if have is not None:
                with contextlib.suppress(errors.RosError):
                    self.active[num] = (self._add(have[1]), have[1])
            raise

    def sync_all(self, device: Device, strict: bool = True) -> None:
        with device.lock:
            items = device.table("disk").items
            for num in sorted(set(items) | set(self.active)):
                try:
                    self.sync_item(device, num, items.get(num))
                except errors.RosError as exc:
                    if strict:
                        raise
                    log.warning("iscsi export of disk %s: %s", items.get(num, {}).get("slot"), exc.message)

    def suspend(self, device: Device, until: float) -> None:
        """A simulated reboot: sessions drop now, targets come back when exports are ready again."""
        with device.lock:
            for tid, _ in self.active.values():
                self._delete(tid)
            self.active.clear()
            if self._timer is not None:
                self._timer.cancel()
            self._timer = threading.Timer(
                max(0.0, until - time.monotonic()) + 0.05, self.sync_all, (device, False)
            )
            self._timer.daemon = True
            self._timer.start()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        for tid, _ in self.active.values():
            with contextlib.suppress(errors.RosError):
                self._delete(tid)
        self.active.clear()
        self.tgtd.stop()

    def _add(self, target: Target) -> int:
        if not Path(target.path).is_file():
            raise errors.RosError(EXPORT_FAILED.format(reason="file not found"))
        tid = self._next_tid
        self._next_tid += 1
        t = ["--tid", str(tid)]
        lun = [*t, "--lun", str(LUN)]
        steps = [
            ["--mode", "target", "--op", "new", *t, "--targetname", target.iqn],
            ["--mode", "logicalunit", "--op", "new", *lun, "--backing-store", target.path],
        ]
        if target.readonly:
            # tgtadm takes no readonly flag on `new`; no initiator is bound before this step.
            steps.append(["--mode", "logicalunit", "--op", "update", *lun, "--params", "readonly=1"])
        steps.append(["--mode", "target", "--op", "bind", *t, "--initiator-address", "ALL"])
        try:
            for step in steps:
                self.tgtd.admin(*step)
        except TgtError as exc:
            with contextlib.suppress(TgtError):
                self.tgtd.admin("--mode", "target", "--op", "delete", "--force", "--tid", str(tid))
            raise errors.RosError(EXPORT_FAILED.format(reason=exc)) from None
        return tid

    def _delete(self, tid: int) -> None:
        # --force: the real device drops the sessions of an export that is switched off.
        try:
            self.tgtd.admin("--mode", "target", "--op", "delete", "--force", "--tid", str(tid))
        except TgtError as exc:
            if "can't find the target" not in str(exc):
                raise errors.RosError(EXPORT_FAILED.format(reason=exc)) from None
