"""RouterOS binary API server (asyncio in its own thread): login, tagged concurrent commands, /cancel."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import secrets
import ssl
import threading
from collections.abc import Callable
from pathlib import Path

from rossim import errors, query
from rossim.device import Arg, Device, format_id, parse_id
from rossim.errors import RosError
from rossim.schema import API, Menu, View, api_value, visible_fields
from rossim.wire import FramingError, encode_sentence, read_sentence

LOG = logging.getLogger("rossim.api")
LISTEN_SOURCES = {"interface": ("interface/ethernet", "interface/bridge", "interface/vlan")}
PRINT_FLAGS = frozenset({"detail", "without-paging", "count-only", ".proplist", "proplist", "stats", "terse"})


def row_words(menu: Menu, view: View, proplist: list[str] | None) -> list[str]:
    words = []
    if not menu.singleton and (proplist is None or ".id" in proplist):
        words.append(f"=.id={view['.id']}")
    for f in visible_fields(menu, view):
        if proplist is None or f.name in proplist:
            words.append(f"={f.name}={api_value(view[f.name])}")
    return words


class Connection:
    def __init__(self, server: ApiServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.server = server
        self.device = server.device
        self.reader = reader
        self.writer = writer
        self.user: str | None = None
        self.challenge: bytes | None = None
        self.tasks: dict[str, asyncio.Task[None]] = {}

    # ------------------------------------------------------------------ io

    def send(self, sentences: list[list[str]], tag: str | None) -> None:
        if self.writer.is_closing():
            return
        suffix = [f".tag={tag}"] if tag is not None else []
        self.writer.write(b"".join(encode_sentence(s + suffix) for s in sentences))

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.transport.abort()

    async def run(self) -> None:
        try:
            while True:
                words = await read_sentence(self.reader)
                if not words:
                    continue
                await self.dispatch(words)
                await self.writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, FramingError, OSError):
            pass
        finally:
            for task in list(self.tasks.values()):
                task.cancel()
            self.abort()

    # ------------------------------------------------------------------ commands

    async def dispatch(self, words: list[str]) -> None:
        command = words[0]
        tag = None
        args: list[tuple[str, str]] = []
        queries: list[str] = []
        for word in words[1:]:
            if word.startswith(".tag="):
                tag = word[5:]
            elif word.startswith("="):
                name, _, value = word[1:].partition("=")
                args.append((name, value))
            elif word.startswith("?"):
                queries.append(word)
        if command == "/quit":
            self.writer.write(encode_sentence(["!fatal", errors.SESSION_TERMINATED]))
            await self.writer.drain()
            self.writer.close()
            return
        if command == "/login":
            self.login(dict(args), tag)
            return
        if self.user is None:
            # UNCONFIRMED: RouterOS closes sessions that send commands before logging in.
            self.writer.write(encode_sentence(["!fatal", errors.NOT_LOGGED_IN]))
            await self.writer.drain()
            self.writer.close()
            return
        if command == "/cancel":
            self.cancel(dict(args).get("tag"), tag)
            return
        if tag is None:
            await self.command(command, args, queries, None)
            return
        task = asyncio.ensure_future(self.command(command, args, queries, tag))
        self.tasks[tag] = task
        task.add_done_callback(self._forget(tag))

    def _forget(self, tag: str) -> Callable[[asyncio.Task[None]], None]:
        def done(_task: asyncio.Task[None]) -> None:
            self.tasks.pop(tag, None)

        return done

    def login(self, args: dict[str, str], tag: str | None) -> None:
        name = args.get("name")
        if name is None:
            self.challenge = secrets.token_bytes(16)
            self.send([["!done", f"=ret={self.challenge.hex()}"]], tag)
            return
        user = self.device.users.get(name)
        ok = False
        if user is not None and "password" in args:
            ok = user.get("password") == args["password"]
        elif user is not None and "response" in args and self.challenge is not None:
            digest = hashlib.md5(
                b"\x00" + str(user.get("password", "")).encode() + self.challenge
            ).hexdigest()
            ok = args["response"] == "00" + digest
        if ok:
            self.user = name
            self.send([["!done"]], tag)
        else:
            self.send(
                [["!trap", f"=category={errors.CAT_FAILURE}", f"=message={errors.LOGIN_FAILED}"], ["!done"]],
                tag,
            )

    def cancel(self, target: str | None, tag: str | None) -> None:
        victims = (
            [self.tasks[target]] if target in self.tasks else [] if target else list(self.tasks.values())
        )
        for task in victims:
            task.cancel()
        self.send([["!done"]], tag)

    async def command(
        self, command: str, args: list[tuple[str, str]], queries: list[str], tag: str | None
    ) -> None:
        path, _, verb = command.strip("/").rpartition("/")
        menu = self.device.menus.get(path)
        text = " ".join([command, *(f"={k}={v}" for k, v in args), *queries])
        user = self.user or "?"
        if menu is None or verb not in menu.commands:
            self.device.log.record("api", user, path, verb, text, errors.NO_SUCH_COMMAND)
            self.send(
                [
                    ["!trap", f"=category={errors.CAT_MISSING}", f"=message={errors.NO_SUCH_COMMAND}"],
                    ["!done"],
                ],
                tag,
            )
            return
        faults = self.device.faults
        try:
            delay = faults.latency_for("api", path)
            if delay:
                await asyncio.sleep(delay)
            drop, injected = faults.take("api", path, verb)
            if drop == "before":
                self.device.log.record("api", user, path, verb, text, "dropped")
                self.abort()
                return
            if verb == "listen":
                await self.listen(menu, tag)
                return
            try:
                if injected is not None:
                    raise injected
                replies = await asyncio.to_thread(self.execute, menu, verb, args, queries)
            except RosError as exc:
                self.device.log.record("api", user, path, verb, text, exc.message)
                replies = [["!trap", f"=category={exc.category}", f"=message={exc.message}"], ["!done"]]
            except Exception:
                LOG.exception("simulator bug while running %s", text)
                self.device.log.record("api", user, path, verb, text, "internal simulator error")
                replies = [
                    [
                        "!trap",
                        f"=category={errors.CAT_FAILURE}",
                        "=message=failure: internal simulator error",
                    ],
                    ["!done"],
                ]
            else:
                self.device.log.record("api", user, path, verb, text)
            if drop == "after":
                self.abort()
                return
            self.send(replies, tag)
        except asyncio.CancelledError:
            self.send(
                [
                    ["!trap", f"=category={errors.CAT_INTERRUPTED}", f"=message={errors.INTERRUPTED}"],
                    ["!done"],
                ],
                tag,
            )

    def execute(
        self, menu: Menu, verb: str, args: list[tuple[str, str]], queries: list[str]
    ) -> list[list[str]]:
        device = self.device
        user = self.user or "?"
        if verb in ("print", "getall"):
            return self.print(menu, args, queries)
        ids = [v for k, v in args if k in (".id", "numbers")]
        rest = [Arg(k, v) for k, v in args if k not in (".id", "numbers")]
        if verb == "add":
            return [["!done", f"=ret={format_id(device.add(menu.path, rest, API, user))}"]]
        nums = [1] if menu.singleton else self.resolve(menu, ids)
        if verb == "set":
            device.set(menu.path, nums, rest, API, user)
        elif verb == "remove":
            device.remove(menu.path, nums, user)
        elif verb in ("enable", "disable"):
            device.set_flag(menu.path, nums, verb == "disable", user)
        elif verb == "unset":
            names = [a.value for a in rest if a.name == "value-name"]
            device.unset(menu.path, nums, ",".join(names).split(","), user)
        else:
            result = device.command(menu.path, verb, nums, rest, API, user)
            if isinstance(result, dict):
                return [["!re", *(f"={k}={api_value(v)}" for k, v in result.items())], ["!done"]]
        return [["!done"]]

    def resolve(self, menu: Menu, ids: list[str]) -> list[int]:
        refs = [r for value in ids for r in value.split(",") if r]
        if not refs:
            raise RosError(errors.NO_SUCH_ITEM, errors.CAT_MISSING)
        rows = self.device.rows(menu.path)
        nums = []
        for ref in refs:
            if parse_id(ref) is None and not menu.name_is_id:
                raise RosError(errors.NO_SUCH_ITEM, errors.CAT_MISSING)
            nums.append(self.device.resolve(menu.path, ref, rows))
        return nums

    def print(self, menu: Menu, args: list[tuple[str, str]], queries: list[str]) -> list[list[str]]:
        proplist = None
        count_only = False
        for name, value in args:
            if name in (".proplist", "proplist"):
                proplist = [p for p in value.split(",") if p]
            elif name == "count-only":
                count_only = True
            elif name not in PRINT_FLAGS:
                raise RosError(errors.UNKNOWN_PARAMETER.format(arg=name), errors.CAT_ARGUMENT)
        if queries:
            query.validate(queries)
        rows = [v for _, v in self.device.rows(menu.path)]
        if queries:
            rows = [v for v in rows if query.evaluate(queries, v)]
        if count_only:
            return [["!done", f"=ret={len(rows)}"]]
        out = [["!re", *row_words(menu, v, proplist)] for v in rows]
        if not out and self.device.settings.emit_empty:
            out.append(["!empty"])
        out.append(["!done"])
        return out

    async def listen(self, menu: Menu, tag: str | None) -> None:
        """Stream changes until /cancel; a removed item is reported with `.dead=yes`."""
        sources = LISTEN_SOURCES.get(menu.path, (menu.path,))
        queue: asyncio.Queue[tuple[str, str, int, View | None]] = asyncio.Queue()
        loop = asyncio.get_running_loop()

        def on_change(path: str, what: str, num: int, view: View | None) -> None:
            if path in sources:
                loop.call_soon_threadsafe(queue.put_nowait, (path, what, num, view))

        unsubscribe: Callable[[], None] = self.device.subscribe(on_change)
        try:
            while True:
                path, what, num, view = await queue.get()
                if what == "remove" or view is None:
                    self.send([["!re", f"=.id={format_id(num)}", "=.dead=yes"]], tag)
                else:
                    self.send([["!re", *row_words(self.device.menu(path), view, None)]], tag)
        finally:
            unsubscribe()


class ApiServer:
    def __init__(
        self,
        device: Device,
        host: str,
        port: int | None,
        tls_port: int | None,
        tls: tuple[Path, Path] | None,
    ) -> None:
        self.device = device
        self.host = host
        self._want = (port, tls_port)
        self.tls = tls
        self.port: int | None = None
        self.tls_port: int | None = None
        self.loop = asyncio.new_event_loop()
        self.connections: set[Connection] = set()
        self._servers: list[asyncio.base_events.Server] = []
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True, name="rossim-api")

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(timeout=30)

    async def _start(self) -> None:
        port, tls_port = self._want
        if port is not None:
            srv = await asyncio.start_server(self._serve, self.host, port, backlog=512)
            self._servers.append(srv)
            self.port = int(srv.sockets[0].getsockname()[1])
        if tls_port is not None and self.tls is not None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(str(self.tls[0]), str(self.tls[1]))
            srv = await asyncio.start_server(self._serve, self.host, tls_port, ssl=ctx, backlog=512)
            self._servers.append(srv)
            self.tls_port = int(srv.sockets[0].getsockname()[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.device.faults.is_down():
            writer.transport.abort()
            return
        conn = Connection(self, reader, writer)
        self.connections.add(conn)
        try:
            await conn.run()
        finally:
            self.connections.discard(conn)

    def drop_all(self) -> int:
        async def _drop() -> int:
            victims = list(self.connections)
            for conn in victims:
                conn.abort()
            return len(victims)

        return asyncio.run_coroutine_threadsafe(_drop(), self.loop).result(timeout=10)

    def close(self) -> None:
        async def _close() -> None:
            for srv in self._servers:
                srv.close()
            for conn in list(self.connections):
                conn.abort()

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(_close(), self.loop).result(timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
