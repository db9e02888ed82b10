"""Streaming an ISO from an HTTP(S) URL to the RDS over SFTP, hashing on the way.

paramiko's defaults (2 MiB window, 32 KiB packets, a round trip per write) cap throughput far
below the link; we open the transport with a large window and packet size, pipeline writes
(no wait for each acknowledgement) and hand paramiko large buffers. The image is written to a
temporary name and only renamed after size and checksum match, so a half-written image is never
exported. After a dropped connection the transfer resumes at the size already on the RDS when the
HTTP server honours Range requests, and restarts from zero otherwise.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import posixpath
import socket
import stat
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Any

import paramiko

from trellis.routeros.ssh import SSHConfig, known_hosts_name, load_private_key, pinned_host_keys

WINDOW_SIZE = 64 * 1024 * 1024
MAX_PACKET_SIZE = 256 * 1024
CHUNK = 1024 * 1024
# Bytes per SFTP write request. 32 KiB is what every SFTP server must accept; OpenSSH takes up to
# 256 KiB, and 128 KiB requests roughly double throughput (hack/bench/sftp_bench.py). Whether
# RouterOS' own SFTP server takes them is unconfirmed (GUESS): a transfer that fails with larger
# requests is retried with SAFE_WRITE_SIZE for that router (see reconcile.Engine.write_size).
SAFE_WRITE_SIZE = 32 * 1024
SFTP_WRITE_SIZE = int(os.environ.get("TRELLIS_SFTP_WRITE_SIZE", str(128 * 1024)))
HTTP_TIMEOUT = 60.0
PREFERRED_CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com")


class TransferError(Exception):
    """The transfer failed; ``retryable`` says whether trying again can help."""

    def __init__(self, message: str, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


class ConnectError(TransferError):
    """The SSH session for SFTP could not be opened (router down, refused, wrong host key)."""


class UploadError(TransferError):
    """Writing to the RDS failed part-way (dropped connection, refused write request)."""


class ChecksumMismatch(TransferError):
    def __init__(self, expected: str, actual: str) -> None:
        super().__init__(f"sha256 mismatch: expected {expected}, got {actual}", retryable=False)
        self.expected = expected
        self.actual = actual


def open_transport(config: SSHConfig) -> paramiko.Transport:
    """An authenticated SSH transport with the host key pinned and SFTP-sized window and packets."""
    try:
        sock = socket.create_connection((config.host, config.port), timeout=config.connect_timeout)
    except OSError as exc:
        raise ConnectError(f"cannot connect to {config.host}:{config.port}: {exc}") from exc
    transport = paramiko.Transport(
        sock, default_window_size=WINDOW_SIZE, default_max_packet_size=MAX_PACKET_SIZE
    )
    options = transport.get_security_options()
    # AEAD ciphers skip the separate HMAC pass: the biggest per-byte cost in pure-Python SSH.
    options.ciphers = PREFERRED_CIPHERS + tuple(c for c in options.ciphers if c not in PREFERRED_CIPHERS)
    try:
        transport.start_client(timeout=config.connect_timeout)
        key = transport.get_remote_server_key()
        pinned = pinned_host_keys(config.known_hosts).lookup(known_hosts_name(config.host, config.port))
        if pinned is None or pinned.get(key.get_name()) != key:
            raise ConnectError(
                f"SSH host key of {config.host}:{config.port} does not match the pinned key", False
            )
        if config.private_key:
            transport.auth_publickey(
                config.username, load_private_key(config.private_key, config.private_key_passphrase)
            )
        else:
            transport.auth_password(config.username, config.password or "")
        transport.set_keepalive(config.keepalive_interval)
    except paramiko.AuthenticationException as exc:
        transport.close()
        raise ConnectError(f"SSH authentication failed: {exc}", retryable=False) from exc
    except (paramiko.SSHException, OSError) as exc:
        transport.close()
        raise ConnectError(f"SSH connection failed: {exc}") from exc
    except TransferError:
        transport.close()
        raise
    return transport


def open_sftp(transport: paramiko.Transport) -> paramiko.SFTPClient:
    sftp = paramiko.SFTPClient.from_transport(
        transport, window_size=WINDOW_SIZE, max_packet_size=MAX_PACKET_SIZE
    )
    if sftp is None:
        raise TransferError("the SSH server refused the SFTP subsystem")
    return sftp


def remote_size(sftp: paramiko.SFTPClient, path: str) -> int | None:
    try:
        attrs = sftp.stat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise TransferError(f"stat {path}: {exc}") from exc
    if attrs.st_mode is not None and not stat.S_ISREG(attrs.st_mode):
        raise TransferError(f"{path} exists and is not a regular file", retryable=False)
    return int(attrs.st_size or 0)


def ensure_directory(sftp: paramiko.SFTPClient, directory: str) -> None:
    parts = directory.strip("/").split("/")
    for i in range(1, len(parts) + 1):
        path = "/" + "/".join(parts[:i])
        try:
            sftp.stat(path)
        except FileNotFoundError:
            sftp.mkdir(path)


@dataclass
class HTTPSource:
    url: str
    expected_size: int | None = None

    def open(self, offset: int) -> tuple[IO[bytes], int | None, bool]:
        """(stream, total size if known, whether the stream starts at ``offset``)."""
        headers = {"User-Agent": "trellis-isocdrom-operator"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        request = urllib.request.Request(self.url, headers=headers)
        try:
            resp: Any = urllib.request.urlopen(request, timeout=HTTP_TIMEOUT)
        except urllib.error.HTTPError as exc:
            raise TransferError(f"GET {self.url}: HTTP {exc.code}", retryable=exc.code >= 500) from exc
        except (urllib.error.URLError, OSError) as exc:
            raise TransferError(f"GET {self.url}: {getattr(exc, 'reason', exc)}") from exc
        resumed = offset > 0 and resp.status == 206
        length = resp.headers.get("Content-Length")
        total = None
        if resp.status == 206:
            content_range = resp.headers.get("Content-Range", "")
            if "/" in content_range and content_range.rsplit("/", 1)[1].isdigit():
                total = int(content_range.rsplit("/", 1)[1])
        elif length and length.isdigit():
            total = int(length)
        return resp, total, resumed


def _chunks(stream: IO[bytes]) -> Iterator[bytes]:
    while True:
        block = stream.read(CHUNK)
        if not block:
            return
        yield block


def _hash_prefix(sftp: paramiko.SFTPClient, path: str, size: int) -> hashlib._Hash:
    """Re-read what is already on the RDS so the final checksum covers the whole file."""
    digest = hashlib.sha256()
    with sftp.open(path, "rb") as fh:
        fh.prefetch(size)
        remaining = size
        while remaining:
            block = fh.read(min(CHUNK, remaining))
            if not block:
                raise TransferError(f"{path} shrank while resuming")
            digest.update(block)
            remaining -= len(block)
    return digest


@dataclass
class Result:
    size: int
    sha256: str
    resumed_from: int


Progress = Callable[[int, int | None], None]


def upload_stream(
    sftp: paramiko.SFTPClient,
    chunks: Iterator[bytes],
    path: str,
    append: bool,
    digest: hashlib._Hash,
    written: int,
    progress: Progress | None = None,
    total: int | None = None,
    write_size: int = SFTP_WRITE_SIZE,
) -> int:
    """Write ``chunks`` to ``path`` (appending or truncating); returns the new size."""
    with sftp.open(path, "ab" if append else "wb", bufsize=CHUNK) as fh:
        fh.set_pipelined(True)
        fh.MAX_REQUEST_SIZE = write_size
        for block in chunks:
            fh.write(block)
            digest.update(block)
            written += len(block)
            if progress:
                progress(written, total)
    return written


def transfer(
    sftp: paramiko.SFTPClient,
    source: HTTPSource,
    temp_path: str,
    progress: Progress | None = None,
    write_size: int = SFTP_WRITE_SIZE,
) -> Result:
    """Fetch ``source`` into ``temp_path`` on the RDS (resuming a previous partial copy if possible)."""
    have = remote_size(sftp, temp_path) or 0
    stream, total, resumed = source.open(have)
    try:
        if have and not resumed:
            have = 0
        if total is not None and have > total:
            stream.close()
            have, resumed = 0, False
            stream, total, _ = source.open(0)
        digest = _hash_prefix(sftp, temp_path, have) if have else hashlib.sha256()
        try:
            size = upload_stream(
                sftp, _chunks(stream), temp_path, bool(have), digest, have, progress, total, write_size
            )
        except (OSError, paramiko.SSHException, EOFError) as exc:
            raise UploadError(f"SFTP write to {temp_path} failed: {exc}") from exc
    finally:
        stream.close()
    if total is not None and size != total:
        raise TransferError(f"short transfer: {size} of {total} bytes")
    return Result(size=size, sha256=digest.hexdigest(), resumed_from=have)


def finalize(
    sftp: paramiko.SFTPClient, temp_path: str, final_path: str, expected_sha256: str, result: Result
) -> None:
    """Rename into place if the checksum matches; otherwise remove the partial file and raise."""
    if result.sha256 != expected_sha256:
        remove_quietly(sftp, temp_path)
        if result.resumed_from:
            # Requests pipelined behind a dropped one may have landed after a hole, so a resumed
            # copy can be wrong where a fresh one would not be: start again before blaming the source.
            raise TransferError(
                f"sha256 mismatch after resuming at byte {result.resumed_from}; restarting from zero"
            )
        raise ChecksumMismatch(expected_sha256, result.sha256)
    size = remote_size(sftp, temp_path)
    if size != result.size:
        raise TransferError(f"{temp_path} holds {size} bytes, {result.size} were written")
    try:
        sftp.posix_rename(temp_path, final_path)
    except (OSError, paramiko.SSHException):
        # Not every server offers the posix-rename extension; plain rename fails if the target exists.
        remove_quietly(sftp, final_path)
        sftp.rename(temp_path, final_path)


def remove_quietly(sftp: paramiko.SFTPClient, path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        sftp.remove(path)


def temp_name(final_path: str) -> str:
    directory, base = posixpath.split(final_path)
    return posixpath.join(directory, f".{base}.partial")
