"""RouterOS API client (TCP 8728, TLS 8729) on top of librouteros.

librouteros is blocking, so every call runs in a worker thread (``RouterClient.run``) and the
kopf event loop never waits on a socket. Connections are logged in once and kept in a small
per-router pool; a connection that saw a transport error is dropped, never reused.

Values read from the router are normalised to strings (librouteros turns ``yes``/``true`` into
``True`` and digit-only strings into ints), so callers compare like with like.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import socket
import ssl
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any, TypeVar

import librouteros
from librouteros.exceptions import (
    ConnectionClosed,
    FatalError,
    LibRouterosError,
    MultiTrapError,
    TrapError,
)

log = logging.getLogger(__name__)
T = TypeVar("T")
Row = dict[str, str]

API_PORT = 8728
API_TLS_PORT = 8729


class RouterError(Exception):
    """Base class of everything this module raises."""


class RouterUnreachable(RouterError):
    """TCP/TLS connect failed, the connection dropped, or the router sent !fatal."""


class RouterLoginFailed(RouterError):
    """The router answered but refused the credentials."""


class RouterTrap(RouterError):
    """The router refused one command (``!trap``); the connection stays usable."""

    def __init__(self, message: str, category: int | None = None, command: str = "") -> None:
        self.message = message
        self.category = category
        self.command = command
        where = f"{command}: " if command else ""
        super().__init__(f"{where}{message}")


class UnsafeValue(RouterError, ValueError):
    """A value that must never be sent to a router (control characters, non-ASCII)."""


def canonical(value: Any) -> str:
    """One spelling per value, so router output and desired fields compare equal."""
    if value is True:
        return "true"
    if value is False:
        return "false"
    text = str(value)
    lowered = text.lower()
    if lowered in ("yes", "true"):
        return "true"
    if lowered in ("no", "false"):
        return "false"
    return text


def check_value(name: str, value: str) -> str:
    """Refuse values a RouterOS word cannot carry safely (the API is length-framed, but the
    same values end up in exports and CLI scripts that users read and replay)."""
    if not isinstance(value, str):
        raise UnsafeValue(f"{name}: expected a string, got {type(value).__name__}")
    for ch in value:
        if ord(ch) < 0x20 or ord(ch) > 0x7E:
            raise UnsafeValue(f"{name}: character {ch!r} is not allowed in a RouterOS value")
    return value


@dataclass(frozen=True)
class Endpoint:
    """How to reach one router's API service."""

    host: str
    username: str
    password: str = field(repr=False)
    port: int | None = None
    tls: bool = False
    ca_pem: str | None = field(default=None, repr=False)
    server_name: str | None = None
    verify: bool = True
    timeout: float = 10.0

    @property
    def effective_port(self) -> int:
        return self.port or (API_TLS_PORT if self.tls else API_PORT)

    def pool_key(self) -> str:
        """Identity of the pool: a changed password or CA gives a fresh pool."""
        secret = hashlib.sha256(f"{self.password}\0{self.ca_pem or ''}".encode()).hexdigest()[:16]
        tls = f"tls={self.tls}/{self.verify}/{self.server_name or ''}"
        return f"{self.username}@{self.host}:{self.effective_port}/{tls}/{secret}"

    def ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cadata=self.ca_pem) if self.ca_pem else ssl.create_default_context()
        if not self.verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx


@dataclass
class CommandStats:
    """Commands sent through one client, split into reads and writes (bench and tests)."""

    reads: int = 0
    writes: int = 0
    by_command: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, command: str, write: bool) -> None:
        with self._lock:
            if write:
                self.writes += 1
            else:
                self.reads += 1
            self.by_command[command] = self.by_command.get(command, 0) + 1


_READ_VERBS = {"print", "getall", "login"}


class Session:
    """One logged-in connection, used by one thread at a time."""

    def __init__(self, api: librouteros.Api, stats: CommandStats) -> None:
        self._api = api
        self._stats = stats

    def _run(
        self, command: str, fields: Mapping[str, str], query: Mapping[str, str] | None = None
    ) -> list[Row]:
        words = [f"={check_value(k, k)}={check_value(k, v)}" for k, v in fields.items()]
        words += [f"?={check_value(k, k)}={check_value(k, v)}" for k, v in (query or {}).items()]
        verb = command.rsplit("/", 1)[-1]
        self._stats.record(command, write=verb not in _READ_VERBS)
        try:
            rows = self._api.rawCmd(command, *words)
            return [{k: canonical(v) for k, v in row.items()} for row in rows]
        except MultiTrapError as exc:
            first = exc.traps[0]
            raise RouterTrap(str(exc), first.category, command) from exc
        except TrapError as exc:
            raise RouterTrap(exc.message, exc.category, command) from exc

    def print(
        self, menu: str, proplist: Iterable[str] = (), where: Mapping[str, str] | None = None
    ) -> list[Row]:
        """``where``: property equality tests, all of which must hold (API query words)."""
        props = ",".join(proplist)
        return self._run(f"{menu}/print", {".proplist": props} if props else {}, where)

    def add(self, menu: str, fields: Mapping[str, str]) -> str:
        rows = self._run(f"{menu}/add", fields)
        return rows[0].get("ret", "") if rows else ""

    def set(self, menu: str, item_id: str, fields: Mapping[str, str]) -> None:
        self._run(f"{menu}/set", {".id": item_id, **fields})

    def remove(self, menu: str, item_ids: Iterable[str]) -> None:
        ids = ",".join(item_ids)
        if ids:
            self._run(f"{menu}/remove", {".id": ids})

    def command(self, path: str, fields: Mapping[str, str] | None = None) -> list[Row]:
        return self._run(path, fields or {})

    def close(self) -> None:
        with suppress(OSError):
            self._api.close()


_TRANSPORT_ERRORS = (OSError, socket.timeout, ConnectionClosed, FatalError, LibRouterosError)


class RouterClient:
    """A pool of up to ``max_connections`` sessions to one router.

    ``run`` executes a function with a session in a worker thread; ``run_parallel`` spreads
    independent operations over several sessions (the router works on them concurrently).
    """

    def __init__(self, endpoint: Endpoint, max_connections: int = 4) -> None:
        self.endpoint = endpoint
        self.max_connections = max(1, max_connections)
        self.stats = CommandStats()
        self._idle: list[Session] = []
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(self.max_connections)
        self._executor = ThreadPoolExecutor(self.max_connections, thread_name_prefix="routeros")
        self._closed = False

    def _connect(self) -> Session:
        ep = self.endpoint
        wrapper: Callable[[socket.socket], socket.socket] | None = None
        if ep.tls:
            server_name = ep.server_name or ep.host
            wrapper = functools.partial(ep.ssl_context().wrap_socket, server_hostname=server_name)
        try:
            api = librouteros.connect(
                ep.host,
                ep.username,
                ep.password,
                port=ep.effective_port,
                timeout=ep.timeout,
                ssl_wrapper=wrapper,
            )
        except TrapError as exc:
            raise RouterLoginFailed(f"{ep.host}: login refused: {exc.message}") from exc
        except (ssl.SSLError, ssl.CertificateError) as exc:
            raise RouterUnreachable(f"{ep.host}:{ep.effective_port}: TLS failed: {exc}") from exc
        except _TRANSPORT_ERRORS as exc:
            raise RouterUnreachable(f"{ep.host}:{ep.effective_port}: {exc or type(exc).__name__}") from exc
        self.stats.record("/login", write=False)
        return Session(api, self.stats)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """Borrow a session (blocking; call from a worker thread)."""
        if self._closed:
            raise RouterUnreachable("client closed")
        self._slots.acquire()
        try:
            with self._lock:
                sess = self._idle.pop() if self._idle else None
            if sess is None:
                sess = self._connect()
            try:
                yield sess
            except (RouterTrap, UnsafeValue):
                self._give_back(sess)
                raise
            except _TRANSPORT_ERRORS as exc:
                sess.close()
                raise RouterUnreachable(f"{self.endpoint.host}: connection lost: {exc!r}") from exc
            except BaseException:
                # Anything unexpected may have left a half-read reply on the wire.
                sess.close()
                raise
            else:
                self._give_back(sess)
        finally:
            self._slots.release()

    def _give_back(self, sess: Session) -> None:
        with self._lock:
            if self._closed:
                sess.close()
            else:
                self._idle.append(sess)

    def call(self, fn: Callable[[Session], T], retries: int = 1) -> T:
        """Run ``fn`` with a session; on a dropped connection retry on a fresh one.

        Only pass read-only or idempotent functions with ``retries`` > 0.
        """
        attempt = 0
        while True:
            try:
                with self.session() as sess:
                    return fn(sess)
            except RouterUnreachable:
                if attempt >= retries or self._closed:
                    raise
                attempt += 1
                log.info("retrying on a fresh connection to %s", self.endpoint.host)

    def run_parallel(self, operations: Sequence[Callable[[Session], T]]) -> list[T | RouterError]:
        """Run independent operations over the pool; results (or errors) in input order."""

        def one(op: Callable[[Session], T]) -> T | RouterError:
            try:
                with self.session() as sess:
                    return op(sess)
            except RouterError as exc:
                return exc

        if len(operations) <= 1 or self.max_connections == 1:
            return [one(op) for op in operations]
        return list(self._executor.map(one, operations))

    async def run(self, fn: Callable[[Session], T], retries: int = 1) -> T:
        """``call`` from async code without blocking the event loop."""
        return await asyncio.to_thread(self.call, fn, retries)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for sess in idle:
            sess.close()
        self._executor.shutdown(wait=False, cancel_futures=True)


class RouterClients:
    """Process-wide registry: one pooled client per router endpoint (credentials included)."""

    def __init__(self, max_connections: int = 4) -> None:
        self.max_connections = max_connections
        self._clients: dict[str, RouterClient] = {}
        self._by_name: dict[str, str] = {}
        self._lock = threading.Lock()

    def get(self, name: str, endpoint: Endpoint) -> RouterClient:
        """The client for router ``name``; a changed endpoint closes the old pool."""
        key = endpoint.pool_key()
        stale: RouterClient | None = None
        with self._lock:
            old_key = self._by_name.get(name)
            if old_key and old_key != key:
                stale = self._clients.pop(old_key, None)
            client = self._clients.get(key)
            if client is None:
                client = RouterClient(endpoint, self.max_connections)
                self._clients[key] = client
            self._by_name[name] = key
        if stale is not None:
            stale.close()
        return client

    def forget(self, name: str) -> None:
        with self._lock:
            key = self._by_name.pop(name, None)
            client = self._clients.pop(key, None) if key else None
        if client is not None:
            client.close()

    def close(self) -> None:
        with self._lock:
            clients = list(self._clients.values())
            self._clients.clear()
            self._by_name.clear()
        for client in clients:
            client.close()
