"""A pool of persistent SSH connections to a RouterOS device, for the CLI in `trellis.routeros.cli`.

* One paramiko `Transport` per pool slot, opened lazily, kept alive (SSH keep-alive), reused for
  every command; a broken one is closed and reopened on next use.
* One command per SSH ``exec`` channel; a slot runs one command at a time, so ``size`` bounds the
  number of commands in flight on the router.
* The host key is pinned: it must match an entry of the configured known_hosts *content*
  (plain or hashed lines); there is no trust-on-first-use.
* Key or password authentication.
* Bounded retries with exponential backoff for **transport** errors only. A command that may
  have reached the router is resent only when the caller says it is idempotent; otherwise
  `TransportError(sent=True)` tells the caller to check the outcome itself. Router errors are
  never retried here (they are text on stdout; see `cli.check_output`).

Usage::

    pool = SSHPool(SSHConfig(host="rds", username="csi", known_hosts=text, password="..."))
    cli = RouterOSCli(pool)
    disks = cli.print("/disk", eq("slot", "pool1"))
"""

from __future__ import annotations

import io
import logging
import queue
import random
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import paramiko

from trellis.routeros.cli import CommandResult

log = logging.getLogger(__name__)


class TransportError(Exception):
    """The command could not be run or its result not read.

    ``sent`` is False when the router cannot have seen the command (connect, auth or channel
    failure), True when it may have run it; ``timeout`` marks a command that exceeded its deadline.
    """

    def __init__(self, message: str, *, sent: bool, timeout: bool = False) -> None:
        super().__init__(message)
        self.sent = sent
        self.timeout = timeout


class HostKeyMismatch(TransportError):
    """The server's host key is not in the pinned known_hosts: never retried."""


class AuthenticationFailed(TransportError):
    """Credentials were refused: never retried."""


@dataclass
class SSHConfig:
    host: str
    username: str
    known_hosts: str
    port: int = 22
    password: str | None = None
    private_key: str | None = None
    private_key_passphrase: str | None = None
    pool_size: int = 4
    connect_timeout: float = 10.0
    command_timeout: float = 30.0
    checkout_timeout: float = 60.0
    keepalive_interval: int = 15
    max_attempts: int = 4
    backoff_initial: float = 0.2
    backoff_max: float = 3.0

    def __post_init__(self) -> None:
        if not self.password and not self.private_key:
            raise ValueError("SSH needs a password or a private key")
        if self.pool_size < 1 or self.max_attempts < 1:
            raise ValueError("pool_size and max_attempts must be at least 1")


@dataclass
class PoolStats:
    size: int
    connected: int
    busy: int
    connects: int
    failed_connects: int
    commands: int
    retries: int


@dataclass
class _Slot:
    transport: paramiko.Transport | None = None


def load_private_key(text: str, passphrase: str | None = None) -> paramiko.PKey:
    """An Ed25519, ECDSA or RSA private key from PEM/OpenSSH text."""
    errors = []
    for cls in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
        try:
            return cls.from_private_key(io.StringIO(text), password=passphrase)
        except (paramiko.SSHException, ValueError) as exc:
            errors.append(f"{cls.__name__}: {exc}")
    raise ValueError("unsupported or invalid private key: " + "; ".join(errors))


def pinned_host_keys(known_hosts: str) -> paramiko.HostKeys:
    keys = paramiko.HostKeys()
    for number, line in enumerate(known_hosts.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        entry = paramiko.hostkeys.HostKeyEntry.from_line(line, number)
        if entry is None:
            raise ValueError(f"known_hosts line {number} is not a host key entry")
        for name in entry.hostnames:
            keys.add(name, entry.key.get_name(), entry.key)
    return keys


def known_hosts_name(host: str, port: int) -> str:
    return host if port == 22 else f"[{host}]:{port}"


class SSHPool:
    """Thread-safe; `run` may be called from many threads at once."""

    def __init__(self, config: SSHConfig, *, on_command: Callable[[str, float], None] | None = None) -> None:
        self.config = config
        self._host_keys = pinned_host_keys(config.known_hosts)
        if self._host_keys.lookup(known_hosts_name(config.host, config.port)) is None:
            raise ValueError(f"known_hosts has no key for {known_hosts_name(config.host, config.port)}")
        self._pkey = (
            load_private_key(config.private_key, config.private_key_passphrase)
            if config.private_key
            else None
        )
        self._idle: queue.LifoQueue[_Slot] = queue.LifoQueue()
        for _ in range(config.pool_size):
            self._idle.put(_Slot())
        self._slots_lock = threading.Lock()
        self._all: list[_Slot] = []
        self._counters = {"connects": 0, "failed_connects": 0, "commands": 0, "retries": 0}
        self._on_command = on_command
        self._closed = False

    # -- public ------------------------------------------------------------------------------

    def run(self, command: str, *, idempotent: bool, timeout: float | None = None) -> CommandResult:
        """Run one command line; retries transport failures within the configured bounds."""
        attempt = 0
        timed_out = False
        while True:
            attempt += 1
            started = time.monotonic()
            try:
                result = self._run_once(command, timeout or self.config.command_timeout)
                self._observe("ok", started)
                return result
            except (HostKeyMismatch, AuthenticationFailed):
                self._observe("transport-error", started)
                raise
            except TransportError as exc:
                self._observe("timeout" if exc.timeout else "transport-error", started)
                timed_out = timed_out or exc.timeout
                retryable = not exc.sent or idempotent
                if not retryable or attempt >= self.config.max_attempts or self._closed:
                    if timed_out and not exc.timeout:
                        # A slow router often shows up as a failure on a later attempt; say so.
                        raise TransportError(f"{exc} (after a timeout)", sent=exc.sent, timeout=True) from exc
                    raise
                delay = min(self.config.backoff_max, self.config.backoff_initial * 2 ** (attempt - 1))
                delay *= 0.75 + random.random() / 2  # jitter, not crypto
                log.warning(
                    "routeros transport error, retrying",
                    extra={"attempt": attempt, "delay": round(delay, 2), "error": str(exc)},
                )
                self._count("retries")
                time.sleep(delay)

    def check(self) -> None:
        """Reachability without queueing behind busy connections: a live pooled connection is
        enough, otherwise one connection attempt is made (and closed). Raises `TransportError`."""
        with self._slots_lock:
            live = [s.transport for s in self._all if s.transport is not None and s.transport.is_active()]
        for transport in live[:1]:
            try:  # one round trip on an existing connection: open and close a channel
                transport.open_session(timeout=self.config.connect_timeout).close()
                return
            except (paramiko.SSHException, OSError, EOFError):
                pass
        self._connect().close()

    def stats(self) -> PoolStats:
        with self._slots_lock:
            connected = sum(1 for s in self._all if s.transport is not None and s.transport.is_active())
            counters = dict(self._counters)
        return PoolStats(
            size=self.config.pool_size,
            connected=connected,
            busy=self.config.pool_size - self._idle.qsize(),
            **counters,
        )

    def close(self) -> None:
        self._closed = True
        with self._slots_lock:
            for slot in self._all:
                if slot.transport is not None:
                    slot.transport.close()
                    slot.transport = None

    # -- internals ---------------------------------------------------------------------------

    def _observe(self, outcome: str, started: float) -> None:
        if self._on_command is not None:
            self._on_command(outcome, time.monotonic() - started)

    def _count(self, name: str) -> None:
        with self._slots_lock:
            self._counters[name] += 1

    def _checkout(self) -> _Slot:
        if self._closed:
            raise TransportError("SSH pool is closed", sent=False)
        try:
            return self._idle.get(timeout=self.config.checkout_timeout)
        except queue.Empty:
            raise TransportError("no SSH connection free in time", sent=False, timeout=True) from None

    def _run_once(self, command: str, timeout: float) -> CommandResult:
        slot = self._checkout()
        try:
            transport = self._connected(slot)
            try:
                channel = transport.open_session(timeout=self.config.connect_timeout)
            except (paramiko.SSHException, OSError, EOFError) as exc:
                self._drop(slot)
                raise TransportError(f"cannot open an SSH channel: {exc}", sent=False) from exc
            self._count("commands")
            try:
                return self._exec(channel, command, timeout)
            except TransportError as exc:
                if not exc.timeout:
                    self._drop(slot)
                raise
            finally:
                channel.close()
        finally:
            self._idle.put(slot)

    def _exec(self, channel: paramiko.Channel, command: str, timeout: float) -> CommandResult:
        deadline = time.monotonic() + timeout
        stdout, stderr = bytearray(), bytearray()
        try:
            channel.exec_command(command)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            # A fast server may run the command and close the channel before it acknowledges the
            # exec request; the output and exit status are then already buffered here.
            if not channel.status_event.is_set():
                raise TransportError(f"exec failed: {exc}", sent=True) from exc
        channel.settimeout(0.2)
        try:
            while True:
                if time.monotonic() > deadline:
                    raise TransportError(f"command timed out after {timeout:.0f}s", sent=True, timeout=True)
                while channel.recv_stderr_ready():
                    stderr += channel.recv_stderr(32768)
                try:
                    chunk = channel.recv(32768)
                except TimeoutError:
                    if channel.closed or not channel.get_transport() or not self._alive(channel):
                        raise TransportError("connection lost while reading", sent=True) from None
                    continue
                if chunk:
                    stdout += chunk
                    continue
                # EOF on stdout: drain stderr and collect the exit status.
                while not channel.status_event.wait(0.2):
                    if time.monotonic() > deadline:
                        raise TransportError("no exit status before the deadline", sent=True, timeout=True)
                    if not self._alive(channel):
                        raise TransportError("connection lost before the exit status", sent=True)
                while channel.recv_stderr_ready():
                    stderr += channel.recv_stderr(32768)
                status = channel.recv_exit_status()
                if status == -1:
                    raise TransportError("channel closed without an exit status", sent=True)
                return CommandResult(
                    stdout.decode("utf-8", "replace"), stderr.decode("utf-8", "replace"), status
                )
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise TransportError(f"connection lost: {exc}", sent=True) from exc

    @staticmethod
    def _alive(channel: paramiko.Channel) -> bool:
        transport = channel.get_transport()
        return transport is not None and transport.is_active()

    def _drop(self, slot: _Slot) -> None:
        if slot.transport is not None:
            slot.transport.close()
            slot.transport = None

    def _connected(self, slot: _Slot) -> paramiko.Transport:
        if slot.transport is not None and slot.transport.is_active():
            return slot.transport
        self._drop(slot)
        slot.transport = self._connect()
        with self._slots_lock:
            if slot not in self._all:
                self._all.append(slot)
        return slot.transport

    def _connect(self) -> paramiko.Transport:
        cfg = self.config
        try:
            sock = socket.create_connection((cfg.host, cfg.port), timeout=cfg.connect_timeout)
        except OSError as exc:
            self._count("failed_connects")
            raise TransportError(f"cannot connect to {cfg.host}:{cfg.port}: {exc}", sent=False) from exc
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # small request/response messages
        transport = paramiko.Transport(sock)
        try:
            transport.banner_timeout = cfg.connect_timeout
            transport.start_client(timeout=cfg.connect_timeout)
            self._verify_host_key(transport)
            if self._pkey is not None:
                transport.auth_publickey(cfg.username, self._pkey)
            else:
                transport.auth_password(cfg.username, cfg.password or "")
        except paramiko.AuthenticationException as exc:
            transport.close()
            self._count("failed_connects")
            raise AuthenticationFailed(f"SSH authentication to {cfg.host} failed: {exc}", sent=False) from exc
        except HostKeyMismatch:
            transport.close()
            self._count("failed_connects")
            raise
        except (paramiko.SSHException, OSError, EOFError) as exc:
            transport.close()
            self._count("failed_connects")
            raise TransportError(f"SSH handshake with {cfg.host} failed: {exc}", sent=False) from exc
        transport.set_keepalive(cfg.keepalive_interval)
        self._count("connects")
        return transport

    def _verify_host_key(self, transport: paramiko.Transport) -> None:
        name = known_hosts_name(self.config.host, self.config.port)
        offered = transport.get_remote_server_key()
        if not self._host_keys.check(name, offered):
            raise HostKeyMismatch(
                f"host key of {name} ({offered.get_name()} {offered.fingerprint}) is not the pinned one",
                sent=False,
            )
