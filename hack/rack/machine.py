"""One QEMU virtual server: argv building (pure), process supervision, power, boot order, media.

QEMU runs with ``-no-reboot``, so any reset (the guest's own or QMP ``system_reset``) ends the
process; the supervisor then starts it again with power kept on and the *next* boot order. That is
what makes a one-time boot override apply to exactly one boot, as on a real BMC.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import threading
import time
import urllib.parse
import urllib.request
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rack.qmp import QMP, QMPError

QEMU = "qemu-system-x86_64"
OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")
FIRMWARES = ("bios", "uefi")
BOOT_DEVICES = ("pxe", "disk", "cdrom")
# QEMU SHUTDOWN event reasons that mean "the machine reset" rather than "it turned off".
RESET_REASONS = ("guest-reset", "host-qmp-system-reset", "host-ui")
_SIZE = re.compile(r"^(\d+)\s*([KMGT]?)(i?B)?$", re.IGNORECASE)


def parse_size(value: int | str) -> int:
    """Bytes from 2147483648, "2G", "2GiB" or "512M" (binary units)."""
    if isinstance(value, int):
        return value
    match = _SIZE.match(value.strip())
    if not match:
        raise ValueError(f"not a size: {value!r}")
    return int(match.group(1)) * 1024 ** " KMGT".index(match.group(2).upper() or " ")


@dataclass(frozen=True)
class MachineSpec:
    name: str
    mac: str
    firmware: str = "bios"
    memory: int = 512  # MiB
    disk_size: int = 2 * 1024**3
    disk_format: str = "raw"  # qcow2 needs qemu-img
    serial: str = ""
    uuid: str = ""
    netns: str | None = None
    bridge: str | None = None
    tap: str | None = None
    manufacturer: str = "Trellis Labs"
    product: str = "Virtual Server"
    reboot_timeout_ms: int | None = None  # SeaBIOS reboots itself this long after "No bootable device"
    # SMBIOS type 11 OEM strings, one ``-smbios type=11,value=...`` each; ``faults`` adds
    # ``trellis-guest.fault=<fault>`` strings, which the Talos stand-in (hack/guest) reads at boot
    # (e.g. "upgrade-rollback": an upgrade comes back with the old version).
    oem_strings: tuple[str, ...] = ()
    faults: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # JSON configs give lists; keep the spec hashable.
        object.__setattr__(self, "oem_strings", tuple(self.oem_strings))
        object.__setattr__(self, "faults", tuple(self.faults))
        if self.firmware not in FIRMWARES:
            raise ValueError(f"{self.name}: firmware must be one of {FIRMWARES}")
        if self.disk_format not in ("raw", "qcow2"):
            raise ValueError(f"{self.name}: disk_format must be raw or qcow2")
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", self.name):
            raise ValueError(f"machine name {self.name!r} must be a plain file name")


@dataclass(frozen=True)
class MachinePaths:
    disk: Path
    serial_log: Path
    qmp: Path
    pidfile: Path
    qemu_log: Path
    vars: Path
    media_dir: Path

    @classmethod
    def under(cls, state_dir: Path, spec: MachineSpec) -> MachinePaths:
        n = spec.name
        return cls(
            disk=state_dir / f"{n}.{spec.disk_format}",
            serial_log=state_dir / f"{n}.serial",
            qmp=state_dir / f"{n}.qmp",
            pidfile=state_dir / f"{n}.pid",
            qemu_log=state_dir / f"{n}.qemu.log",
            vars=state_dir / f"{n}.OVMF_VARS.fd",
            media_dir=state_dir / f"{n}.media",
        )


def boot_order(device: str | None) -> list[str]:
    """Devices in boot order: disk, then NIC, then CD-ROM unless an override puts one first."""
    order = ["disk", "pxe", "cdrom"]
    if device in order:
        order.remove(device)
        order.insert(0, device)
    return order


def _opt(value: str) -> str:
    # QEMU option values escape a comma by doubling it.
    return value.replace(",", ",,")


def build_argv(
    spec: MachineSpec,
    paths: MachinePaths,
    boot_device: str | None = None,
    cdrom: str | None = None,
    accel: str = "tcg",
    qemu: str = QEMU,
) -> list[str]:
    """The full command line for one boot (``ip netns exec`` prefix included when in a namespace)."""
    if accel not in ("tcg", "kvm"):
        raise ValueError(f"accel must be tcg or kvm, not {accel!r}")
    index = {dev: i + 1 for i, dev in enumerate(boot_order(boot_device))}
    system_uuid = spec.uuid or str(uuid.uuid5(uuid.NAMESPACE_URL, f"trellis-rack:{spec.name}"))
    smbios = f"type=1,manufacturer={_opt(spec.manufacturer)},product={_opt(spec.product)},uuid={system_uuid}"
    if spec.serial:
        smbios += f",serial={_opt(spec.serial)}"
    oem = [*spec.oem_strings, *(f"trellis-guest.fault={fault}" for fault in spec.faults)]
    argv = [
        qemu, "-name", f"{spec.name},process=rack-{spec.name}",
        "-accel", accel, "-machine", "pc,graphics=off",
        "-smp", "1", "-m", str(spec.memory),
        "-nodefaults", "-display", "none", "-vga", "none", "-no-user-config",
        "-no-reboot",
        "-uuid", system_uuid, "-smbios", smbios,
        *(arg for value in oem for arg in ("-smbios", f"type=11,value={_opt(value)}")),
        "-chardev", f"file,id=serial0,path={_opt(str(paths.serial_log))},append=on",
        "-serial", "chardev:serial0",
        "-qmp", f"unix:{_opt(str(paths.qmp))},server=on,wait=off",
        "-pidfile", str(paths.pidfile),
    ]  # fmt: skip
    if spec.firmware == "uefi":
        argv += [
            "-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={_opt(str(OVMF_CODE))}",
            "-drive", f"if=pflash,format=raw,unit=1,file={_opt(str(paths.vars))}",
        ]  # fmt: skip
    if spec.reboot_timeout_ms is not None:
        argv += ["-boot", f"reboot-timeout={spec.reboot_timeout_ms}"]
    argv += [
        "-drive", f"if=none,id=disk0,file={_opt(str(paths.disk))},format={spec.disk_format},discard=unmap",
        "-device", f"virtio-blk-pci,drive=disk0,id=virtio-disk0,bootindex={index['disk']}",
    ]  # fmt: skip
    # The CD-ROM drive always exists (empty when no media) so media can be changed while running.
    cd = "if=none,id=cd0,media=cdrom,readonly=on"
    if cdrom:
        cd += f",file={_opt(cdrom)},format=raw"
    argv += ["-drive", cd, "-device", f"ide-cd,drive=cd0,id=cdrom0,bootindex={index['cdrom']}"]
    if spec.tap:
        argv += [
            "-netdev", f"tap,id=net0,ifname={spec.tap},script=no,downscript=no",
            "-device", f"virtio-net-pci,netdev=net0,id=nic0,mac={spec.mac},bootindex={index['pxe']}",
        ]  # fmt: skip
    else:
        argv += ["-nic", "none"]
    if spec.netns:
        # `ip netns exec` execs QEMU in place, so the PID we hold is QEMU's own.
        argv = ["ip", "netns", "exec", spec.netns, *argv]
    return argv


def accel_from_env() -> str:
    return "kvm" if os.environ.get("RACK_ACCEL", "tcg") == "kvm" else "tcg"


@dataclass
class BootOverride:
    device: str | None = None  # pxe, disk, cdrom (other IPMI selectors boot the default order)
    persistent: bool = False
    uefi: bool = False


@dataclass
class _Instance:
    proc: subprocess.Popen[bytes]
    qmp: QMP
    started: float
    exited: threading.Event = field(default_factory=threading.Event)
    shutdown_reason: str | None = None


class MachineError(Exception):
    pass


class Machine:
    """A QEMU process under supervision. Every public method is thread-safe."""

    def __init__(
        self, spec: MachineSpec, state_dir: Path, accel: str | None = None, soft_off_timeout: float = 30.0
    ) -> None:
        self.spec = spec
        self.paths = MachinePaths.under(state_dir, spec)
        self.accel = accel or accel_from_env()
        self.soft_off_timeout = soft_off_timeout
        self.lock = threading.RLock()
        self.power = "off"
        self.override = BootOverride()
        self.boots: list[dict[str, Any]] = []
        self.exits: list[dict[str, Any]] = []
        self.media: str | None = None  # what QEMU opens: a local file or an iscsi:// URL
        self.media_source: str | None = None  # what the BMC was given
        self._inst: _Instance | None = None

    @property
    def system_uuid(self) -> str:
        return self.spec.uuid or str(uuid.uuid5(uuid.NAMESPACE_URL, f"trellis-rack:{self.spec.name}"))

    # -- files ------------------------------------------------------------------------------
    def prepare(self) -> None:
        """Create the disk and UEFI variable store once; kill a QEMU a crashed server left behind."""
        self.paths.disk.parent.mkdir(parents=True, exist_ok=True)
        self._kill_stale()
        if not self.paths.disk.exists():
            if self.spec.disk_format == "qcow2":
                qemu_img = shutil.which("qemu-img")
                if qemu_img is None:
                    raise MachineError("disk_format qcow2 needs qemu-img, which is not installed")
                subprocess.run(
                    [qemu_img, "create", "-q", "-f", "qcow2", str(self.paths.disk), str(self.spec.disk_size)],
                    check=True,
                )
            else:
                with open(self.paths.disk, "wb") as disk:
                    disk.truncate(self.spec.disk_size)
        if self.spec.firmware == "uefi" and not self.paths.vars.exists():
            shutil.copyfile(OVMF_VARS, self.paths.vars)

    def _kill_stale(self) -> None:
        try:
            pid = int(self.paths.pidfile.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return
        if b"qemu" in cmdline and str(self.paths.pidfile).encode() in cmdline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    # -- process ------------------------------------------------------------------------------
    def _on_event(self, inst_box: list[_Instance], event: dict[str, Any]) -> None:
        if event.get("event") == "SHUTDOWN" and inst_box:
            inst_box[0].shutdown_reason = str((event.get("data") or {}).get("reason") or "unknown")

    def _start_locked(self, cause: str) -> None:
        device = self.override.device if self.override.device in BOOT_DEVICES else None
        argv = build_argv(self.spec, self.paths, device, self.media, self.accel)
        with contextlib.suppress(FileNotFoundError):
            self.paths.qmp.unlink()
        offset = self.paths.serial_log.stat().st_size if self.paths.serial_log.exists() else 0
        with open(self.paths.qemu_log, "ab") as log:
            log.write(f"--- {time.strftime('%H:%M:%S')} {cause}: {' '.join(argv)}\n".encode())
            log.flush()
            proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
            )
        box: list[_Instance] = []
        qmp = QMP(self.paths.qmp, on_event=lambda e: self._on_event(box, e))
        inst = _Instance(proc, qmp, time.time())
        box.append(inst)
        try:
            qmp.connect(alive=lambda: proc.poll() is None)
        except QMPError as exc:
            self._kill(inst)
            tail = self.paths.qemu_log.read_text(errors="replace")[-1500:]
            self.power = "off"
            self.exits.append({"at": time.time(), "reason": f"start failed: {exc}"})
            raise MachineError(f"{self.spec.name}: QEMU did not start: {exc}\n{tail}") from exc
        self._inst = inst
        self.power = "on"
        self.boots.append(
            {
                "device": boot_order(device)[0],
                "override": self.override.device,
                "order": boot_order(device),
                "persistent": self.override.persistent,
                "uefi": self.override.uefi,
                "cause": cause,
                "at": inst.started,
                "pid": proc.pid,
                "serial_offset": offset,
            }
        )
        if self.override.device is not None and not self.override.persistent:
            self.override = BootOverride()
        threading.Thread(
            target=self._watch, args=(inst,), daemon=True, name=f"watch-{self.spec.name}"
        ).start()

    def _watch(self, inst: _Instance) -> None:
        rc = inst.proc.wait()
        inst.exited.set()
        inst.qmp.close()
        with self.lock:
            if self._inst is not inst:
                return  # a stop() we asked for; it has recorded the exit itself
            self._inst = None
            reason = inst.shutdown_reason
            if reason in RESET_REASONS:
                self.exits.append({"at": time.time(), "reason": reason, "status": rc, "restarted": True})
                # A failed start is recorded in exits and leaves the power off.
                with contextlib.suppress(MachineError):
                    self._start_locked(cause=reason or "reset")
                return
            self.power = "off"
            detail = reason or (f"killed by signal {-rc}" if rc < 0 else f"exited with status {rc}")
            self.exits.append({"at": time.time(), "reason": detail, "status": rc, "restarted": False})

    def _kill(self, inst: _Instance, graceful: bool = True) -> None:
        """End the process for sure: QMP quit, then SIGTERM, then SIGKILL."""
        if graceful and inst.proc.poll() is None:
            with contextlib.suppress(QMPError):
                inst.qmp.command("quit", timeout=2)
        for sig, wait in ((None, 5.0), (signal.SIGTERM, 5.0), (signal.SIGKILL, 10.0)):
            if sig is not None:
                with contextlib.suppress(ProcessLookupError):
                    inst.proc.send_signal(sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                inst.proc.wait(timeout=wait)
                break
        inst.qmp.close()

    def pid(self) -> int | None:
        with self.lock:
            return self._inst.proc.pid if self._inst else None

    # -- power ------------------------------------------------------------------------------
    def power_on(self, cause: str = "power-on") -> None:
        with self.lock:
            if self._inst is None:
                self._start_locked(cause)

    def power_off(self, reason: str = "power-off") -> None:
        with self.lock:
            inst, self._inst = self._inst, None
            self.power = "off"
            if inst is None:
                return
            self._kill(inst)
            self.exits.append({"at": time.time(), "reason": reason, "status": inst.proc.returncode})

    def soft_off(self, timeout: float | None = None) -> None:
        """ACPI power button now; hard off if the guest has not gone after ``timeout`` seconds."""
        with self.lock:
            inst = self._inst
            if inst is None:
                return
            with contextlib.suppress(QMPError):
                inst.qmp.command("system_powerdown")
        limit = self.soft_off_timeout if timeout is None else timeout

        def enforce() -> None:
            if not inst.exited.wait(limit):
                with self.lock:
                    if self._inst is inst:
                        self.power_off(reason=f"no ACPI shutdown within {limit:.0f}s: forced off")

        threading.Thread(target=enforce, daemon=True, name=f"softoff-{self.spec.name}").start()

    def reset(self, cause: str = "reset") -> bool:
        """Hard reset (stop, then start with the next boot order); False when powered off."""
        with self.lock:
            if self._inst is None:
                return False
            self.power_off(reason=cause)
            self._start_locked(cause)
            return True

    def guest_reset(self) -> None:
        """A reset as the guest would do it: QEMU exits (-no-reboot) and the supervisor restarts it."""
        with self.lock:
            if self._inst is None:
                raise MachineError(f"{self.spec.name} is off")
            self._inst.qmp.command("system_reset")

    def kill(self) -> None:
        """SIGKILL QEMU behind everyone's back (a crash): the machine ends up off."""
        with self.lock:
            if self._inst is not None:
                with contextlib.suppress(ProcessLookupError):
                    self._inst.proc.kill()

    # -- boot and media ------------------------------------------------------------------------
    def set_boot_override(self, device: str | None, persistent: bool = False, uefi: bool = False) -> None:
        with self.lock:
            self.override = BootOverride(device if device not in (None, "none") else None, persistent, uefi)

    def boot_override(self) -> BootOverride:
        with self.lock:
            return BootOverride(**asdict(self.override))

    def insert_media(self, source: str) -> None:
        """Attach an image as the CD-ROM: http(s) is downloaded first, iscsi:// goes to QEMU's libiscsi."""
        scheme = urllib.parse.urlsplit(source).scheme
        if scheme in ("http", "https"):
            self.paths.media_dir.mkdir(parents=True, exist_ok=True)
            name = Path(urllib.parse.urlsplit(source).path).name or "media.iso"
            target = self.paths.media_dir / name
            tmp = target.with_suffix(target.suffix + ".part")
            with urllib.request.urlopen(source, timeout=60) as resp, open(tmp, "wb") as out:
                shutil.copyfileobj(resp, out, 1 << 20)
            os.replace(tmp, target)
            local = str(target)
        elif scheme == "iscsi":
            local = source
        elif scheme in ("", "file"):
            local = urllib.parse.urlsplit(source).path if scheme else source
            if not Path(local).is_file():
                raise MachineError(f"no such image {local}")
        else:
            raise MachineError(f"unsupported media URL scheme {scheme!r}")
        with self.lock:
            if self._inst is not None:
                try:
                    self._inst.qmp.command(
                        "blockdev-change-medium",
                        timeout=30,
                        id="cdrom0",
                        filename=local,
                        format="raw",
                        **{"read-only-mode": "read-only"},
                    )
                except QMPError as exc:
                    raise MachineError(str(exc)) from exc
            self.media, self.media_source = local, source

    def eject_media(self) -> None:
        with self.lock:
            if self._inst is not None:
                with contextlib.suppress(QMPError):
                    self._inst.qmp.command("eject", id="cdrom0", force=True)
            self.media = self.media_source = None

    def query_block(self) -> list[dict[str, Any]]:
        with self.lock:
            if self._inst is None:
                return []
            result: list[dict[str, Any]] = self._inst.qmp.command("query-block")
            return result

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            pid = self._inst.proc.pid if self._inst else None
            return {
                "name": self.spec.name,
                "power": self.power,
                "pid": pid,
                "mac": self.spec.mac,
                "firmware": self.spec.firmware,
                "uuid": self.system_uuid,
                "serial": self.spec.serial,
                "accel": self.accel,
                "boot_override": asdict(self.override),
                "boots": [dict(b) for b in self.boots],
                "exits": [dict(e) for e in self.exits],
                "last_exit": self.exits[-1]["reason"] if self.exits else None,
                "media": self.media_source,
                "serial_log": str(self.paths.serial_log),
                "qemu_log": str(self.paths.qemu_log),
                "netns": self.spec.netns,
                "tap": self.spec.tap,
            }
