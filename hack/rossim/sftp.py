"""SFTP subsystem over the /file tree, so images can be uploaded (and counted against the pool)."""

from __future__ import annotations

import os
import posixpath
from typing import Any

import paramiko
from paramiko.sftp import SFTP_FAILURE, SFTP_NO_SUCH_FILE, SFTP_OK, SFTP_PERMISSION_DENIED

from rossim.device import Device


def _errno_code(exc: OSError) -> int:
    return paramiko.SFTPServer.convert_errno(exc.errno or 0)


class FileHandle(paramiko.SFTPHandle):
    def __init__(self, iface: RosSFTP, rel: str, flags: int) -> None:
        super().__init__(flags)
        self.iface = iface
        self.rel = rel

    def write(self, offset: int, data: Any) -> int:
        device = self.iface.device
        drop, err = device.faults.take("sftp", "file", "write")
        if drop is not None:
            self.iface.drop()
            return SFTP_FAILURE
        if err is not None:
            return SFTP_FAILURE
        mount = self.rel.split("/", 1)[0]
        current = os.fstat(self.writefile.fileno()).st_size  # type: ignore[attr-defined]
        if device.storage.has_pool(mount):
            end = offset + len(data)
            if end > current and (device.faults.pool_full or end - current > device.storage.free(mount)):
                return SFTP_FAILURE
        result = int(super().write(offset, data))
        if device.storage.has_pool(mount):
            grown = offset + len(data) - current
            if grown > 0:
                device.storage.grew(self.rel, grown)
        return result

    def stat(self) -> Any:
        try:
            return paramiko.SFTPAttributes.from_stat(os.fstat(self.readfile.fileno()))  # type: ignore[attr-defined]
        except OSError as exc:
            return _errno_code(exc)

    def chattr(self, attr: paramiko.SFTPAttributes) -> int:
        if attr.st_size is not None:
            self.writefile.truncate(attr.st_size)  # type: ignore[attr-defined]
            self.iface.device.storage.changed()
        return SFTP_OK


class RosSFTP(paramiko.SFTPServerInterface):
    """Paths are `/storage-pool/...` (or relative); `/` is the root of the /file tree."""

    def __init__(self, server: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(server, *args, **kwargs)
        self.server = server
        self.device: Device = server.device
        self.user: str = server.username or "?"

    def drop(self) -> None:
        self.server.close_transport()

    def _rel(self, path: str) -> str:
        norm = posixpath.normpath("/" + path)
        return norm.lstrip("/")

    def _real(self, path: str) -> str:
        return (
            str(self.device.storage.root / self._rel(path))
            if self._rel(path)
            else str(self.device.storage.root)
        )

    def _log(self, verb: str, path: str, error: str | None = None) -> None:
        self.device.log.record("sftp", self.user, "file", verb, f"{verb} /{self._rel(path)}", error)

    def canonicalize(self, path: str) -> str:
        return "/" + self._rel(path)

    def list_folder(self, path: str) -> Any:
        real = self._real(path)
        try:
            out = []
            for name in sorted(os.listdir(real)):
                attr = paramiko.SFTPAttributes.from_stat(os.lstat(os.path.join(real, name)))
                attr.filename = name
                out.append(attr)
            return out
        except OSError as exc:
            return _errno_code(exc)

    def stat(self, path: str) -> Any:
        try:
            return paramiko.SFTPAttributes.from_stat(os.stat(self._real(path)))
        except OSError as exc:
            return _errno_code(exc)

    lstat = stat

    def open(self, path: str, flags: int, attr: paramiko.SFTPAttributes) -> Any:
        rel = self._rel(path)
        if not rel:
            return SFTP_PERMISSION_DENIED
        real = self._real(path)
        writing = bool(flags & (os.O_WRONLY | os.O_RDWR))
        if writing:
            drop, err = self.device.faults.take("sftp", "file", "upload")
            if drop is not None:
                self._log("upload", path, "dropped")
                self.drop()
                return SFTP_FAILURE
            if err is not None:
                self._log("upload", path, err.message)
                return SFTP_FAILURE
        try:
            fd = os.open(real, flags | getattr(os, "O_BINARY", 0), 0o644)
        except OSError as exc:
            return _errno_code(exc)
        if writing:
            self._log("upload", path)
        mode = "rb"
        if flags & os.O_WRONLY:
            mode = "ab" if flags & os.O_APPEND else "wb"
        elif flags & os.O_RDWR:
            mode = "a+b" if flags & os.O_APPEND else "r+b"
        fobj = os.fdopen(fd, mode)
        handle = FileHandle(self, rel, flags)
        handle.filename = real  # type: ignore[attr-defined]
        handle.readfile = fobj  # type: ignore[attr-defined]
        handle.writefile = fobj  # type: ignore[attr-defined]
        return handle

    def remove(self, path: str) -> int:
        try:
            os.remove(self._real(path))
        except OSError as exc:
            return _errno_code(exc)
        self.device.storage.changed()
        self._log("remove", path)
        return SFTP_OK

    def rename(self, oldpath: str, newpath: str) -> int:
        if os.path.exists(self._real(newpath)):
            return SFTP_FAILURE
        return self.posix_rename(oldpath, newpath)

    def posix_rename(self, oldpath: str, newpath: str) -> int:
        try:
            os.replace(self._real(oldpath), self._real(newpath))
        except OSError as exc:
            return _errno_code(exc)
        self.device.storage.changed()
        self._log("rename", newpath)
        return SFTP_OK

    def mkdir(self, path: str, attr: paramiko.SFTPAttributes) -> int:
        try:
            os.mkdir(self._real(path))
        except OSError as exc:
            return _errno_code(exc)
        return SFTP_OK

    def rmdir(self, path: str) -> int:
        try:
            os.rmdir(self._real(path))
        except OSError as exc:
            return _errno_code(exc)
        return SFTP_OK

    def chattr(self, path: str, attr: paramiko.SFTPAttributes) -> int:
        try:
            if attr.st_size is not None:
                os.truncate(self._real(path), attr.st_size)
                self.device.storage.changed()
        except OSError as exc:
            return _errno_code(exc)
        return SFTP_OK

    def readlink(self, path: str) -> Any:
        return SFTP_NO_SUCH_FILE
