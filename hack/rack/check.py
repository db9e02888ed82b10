"""Can QEMU boot firmware here? A real boot to the firmware's "no bootable device" message."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from rack.machine import OVMF_CODE, OVMF_VARS, QEMU, accel_from_env

# What the firmware prints on the serial console once it has tried every device and found nothing.
MARKERS = {
    "bios": ("No bootable device",),
    "uefi": ("Shell>", "UEFI Interactive Shell", "BdsDxe: No bootable option", "Press ESC in"),
}


def check(firmware: str = "bios", timeout: float = 60.0) -> tuple[bool, str]:
    """(ok, reason): boots an empty machine and waits for the firmware's message on the serial port."""
    qemu = shutil.which(QEMU)
    if qemu is None:
        return False, f"{QEMU} is not installed"
    if firmware == "uefi" and not (OVMF_CODE.exists() and OVMF_VARS.exists()):
        return False, f"OVMF is not installed ({OVMF_CODE})"
    with tempfile.TemporaryDirectory(prefix="rack-check-") as tmp:
        serial = Path(tmp) / "serial.log"
        argv = [
            qemu, "-accel", accel_from_env(), "-machine", "pc,graphics=off", "-m", "128", "-smp", "1",
            "-nodefaults", "-no-user-config", "-display", "none", "-vga", "none", "-nic", "none",
            "-no-reboot", "-chardev", f"file,id=s0,path={serial}", "-serial", "chardev:s0",
        ]  # fmt: skip
        if firmware == "uefi":
            shutil.copyfile(OVMF_VARS, Path(tmp) / "vars.fd")
            argv += [
                "-m", "256",
                "-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}",
                "-drive", f"if=pflash,format=raw,unit=1,file={Path(tmp) / 'vars.fd'}",
            ]  # fmt: skip
        started = time.monotonic()
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        try:
            while time.monotonic() - started < timeout:
                text = serial.read_text(errors="replace") if serial.exists() else ""
                if any(marker in text for marker in MARKERS[firmware]):
                    took = time.monotonic() - started
                    return True, f"{firmware} firmware booted under {accel_from_env()} in {took:.1f}s"
                if proc.poll() is not None:
                    output = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
                    return False, f"QEMU exited with status {proc.returncode}: {output.strip()[-500:]}"
                time.sleep(0.1)
            return False, f"no firmware message on the serial console within {timeout:.0f}s"
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
