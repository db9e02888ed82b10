"""Filesystems on the node: mount table, probing, formatting, mounting, resizing, usage.

Formatting is guarded twice: `probe_filesystem` answers "blank" only when the device can be
read *and* ``blkid -p`` exits 2 ("nothing found") with nothing on stderr — blkid also exits 2
when it cannot open the device, so its exit code alone would turn a read error into an mkfs.
Any other outcome is an error and nothing is written. mkfs is then run without its force
options, so it refuses on its own if a signature appeared in the meantime.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

COMMAND_TIMEOUT = 120.0
BLKID_NOTHING_FOUND = 2  # util-linux blkid(8): "the specified token was not found"
_READ_CHECK_BYTES = 64 * 1024


class CommandFailed(RuntimeError):
    def __init__(self, argv: Sequence[str], returncode: int, stderr: str) -> None:
        super().__init__(f"{' '.join(argv)} exited {returncode}: {stderr.strip()}")
        self.argv = list(argv)
        self.returncode = returncode
        self.stderr = stderr


class DeviceUnreadable(RuntimeError):
    """The device could not be read; it must not be formatted."""


def run(
    argv: Sequence[str], *, timeout: float = COMMAND_TIMEOUT, check: bool = True
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        list(argv), capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, check=False
    )
    if check and proc.returncode != 0:
        raise CommandFailed(argv, proc.returncode, proc.stderr or proc.stdout)
    return proc


# ---------------------------------------------------------------------------------------------
# Mount table


@dataclass(frozen=True)
class Mount:
    mount_point: str
    root: str
    source: str
    fstype: str
    options: tuple[str, ...]


_OCTAL = re.compile(r"\\([0-7]{3})")


def _unescape(field: str) -> str:
    return _OCTAL.sub(lambda m: chr(int(m.group(1), 8)), field)


def parse_mountinfo(text: str) -> list[Mount]:
    """Entries of /proc/self/mountinfo (proc(5)): fields before and after the ``-`` separator."""
    mounts = []
    for line in text.splitlines():
        fields = line.split()
        if "-" not in fields[6:]:
            continue
        sep = fields.index("-", 6)
        mounts.append(
            Mount(
                mount_point=_unescape(fields[4]),
                root=_unescape(fields[3]),
                source=_unescape(fields[sep + 2]) if len(fields) > sep + 2 else "",
                fstype=fields[sep + 1],
                options=tuple(fields[5].split(",")),
            )
        )
    return mounts


def mount_at(path: str | Path, mountinfo: str = "/proc/self/mountinfo") -> Mount | None:
    """The topmost mount whose mount point is exactly ``path``."""
    target = os.path.normpath(str(path))
    found = None
    for entry in parse_mountinfo(Path(mountinfo).read_text()):
        if entry.mount_point == target:
            found = entry
    return found


# ---------------------------------------------------------------------------------------------
# Probing and formatting


def check_readable(device: str) -> None:
    """Read the start and the end of ``device``; raise `DeviceUnreadable` on any failure."""
    try:
        fd = os.open(device, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise DeviceUnreadable(f"cannot open {device}: {exc.strerror}") from exc
    try:
        size = os.lseek(fd, 0, os.SEEK_END)
        for offset in {0, max(0, size - _READ_CHECK_BYTES)}:
            os.lseek(fd, offset, os.SEEK_SET)
            want = min(_READ_CHECK_BYTES, size - offset)
            if want and len(os.read(fd, want)) != want:
                raise DeviceUnreadable(f"short read from {device} at {offset}")
    except OSError as exc:
        raise DeviceUnreadable(f"cannot read {device}: {exc.strerror}") from exc
    finally:
        os.close(fd)


def parse_blkid_export(text: str) -> dict[str, str]:
    values = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip()] = value.strip()
    return values


def probe_filesystem(device: str) -> str:
    """The signature on ``device`` ('' = blank): a filesystem type or ``partition-table:<type>``.

    Raises `DeviceUnreadable` or `CommandFailed` for anything that is not a clear answer.
    """
    check_readable(device)
    proc = run(["blkid", "-p", "-o", "export", device], check=False)
    if proc.returncode == BLKID_NOTHING_FOUND and not proc.stderr.strip():
        return ""
    if proc.returncode != 0:
        raise CommandFailed(["blkid", "-p", device], proc.returncode, proc.stderr or "no output")
    found = parse_blkid_export(proc.stdout)
    if found.get("TYPE"):
        return found["TYPE"]
    if found.get("PTTYPE"):
        return f"partition-table:{found['PTTYPE']}"
    raise CommandFailed(["blkid", "-p", device], proc.returncode, f"unrecognised answer {proc.stdout!r}")


def make_filesystem(device: str, fs_type: str) -> None:
    if fs_type == "ext4":
        run(["mkfs.ext4", "-q", "-E", "nodiscard,lazy_itable_init=1,lazy_journal_init=1", device])
    elif fs_type == "xfs":
        run(["mkfs.xfs", "-q", "-K", device])
    else:
        raise ValueError(f"unsupported filesystem {fs_type!r}")


# ---------------------------------------------------------------------------------------------
# Mounting


def mount_options(fs_type: str, flags: Sequence[str], read_only: bool) -> list[str]:
    options = [f for f in flags if f]
    if fs_type == "xfs" and "nouuid" not in options:
        options.append("nouuid")  # clones share their source's UUID
    if read_only and "ro" not in options:
        options.append("ro")
    return options


def mount(source: str, target: str, fs_type: str, options: Sequence[str]) -> None:
    argv = ["mount", "-t", fs_type]
    if options:
        argv += ["-o", ",".join(options)]
    run([*argv, source, target])


def bind_mount(source: str, target: str, read_only: bool) -> None:
    run(["mount", "--bind", source, target])
    if read_only:
        run(["mount", "-o", "remount,bind,ro", target])


def unmount(target: str) -> None:
    run(["umount", target])


# ---------------------------------------------------------------------------------------------
# Sizes


def device_size(device: str) -> int:
    fd = os.open(device, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return os.lseek(fd, 0, os.SEEK_END)
    finally:
        os.close(fd)


def grow_filesystem(device: str, mount_point: str, fs_type: str) -> None:
    if fs_type in ("ext4", "ext3", "ext2"):
        run(["resize2fs", device])
    elif fs_type == "xfs":
        run(["xfs_growfs", mount_point])
    else:
        raise ValueError(f"cannot grow a {fs_type} filesystem")


@dataclass(frozen=True)
class Usage:
    total: int
    available: int
    used: int
    inodes: int
    inodes_free: int
    inodes_used: int


def usage(path: str) -> Usage:
    st = os.statvfs(path)
    total = st.f_blocks * st.f_frsize
    available = st.f_bavail * st.f_frsize
    used = (st.f_blocks - st.f_bfree) * st.f_frsize
    return Usage(total, available, used, st.f_files, st.f_ffree, st.f_files - st.f_ffree)
