"""SSH server (paramiko): password and public-key auth, RouterOS CLI over exec, SFTP subsystem."""

from __future__ import annotations

import contextlib
import logging
import re
import socket
import threading
from typing import Any

import paramiko
from paramiko.common import (
    AUTH_FAILED,
    AUTH_SUCCESSFUL,
    MSG_CHANNEL_FAILURE,
    MSG_CHANNEL_SUCCESS,
    OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED,
    OPEN_SUCCEEDED,
)

from rossim.cli.interp import Session
from rossim.device import Device
from rossim.faults import DropConnection
from rossim.sftp import RosSFTP

LOG = logging.getLogger("rossim.ssh")
WINDOW = 64 << 20
_WIDTH_OPT = re.compile(r"(\d+)w")


def split_login(username: str) -> tuple[str, int | None]:
    """RouterOS login options: `admin+ct80w` is user admin with an 80-column terminal."""
    user, _, opts = username.partition("+")
    m = _WIDTH_OPT.search(opts)
    return user, int(m.group(1)) if m else None


class RosServer(paramiko.ServerInterface):
    def __init__(self, device: Device, transport: paramiko.Transport) -> None:
        self.device = device
        self.transport = transport
        self.username: str | None = None
        self.width: int | None = None
        self._replied: dict[int, threading.Event] = {}
        self._watch_replies()

    def _watch_replies(self) -> None:
        """Know when paramiko has answered a channel request.

        paramiko sends the exec request's success reply after check_channel_exec_request returns;
        a fast command that closes its channel before that makes the client fail with "Channel
        closed". The worker therefore waits for the reply before it sends anything.
        """
        send = self.transport._send_user_message  # type: ignore[attr-defined]

        def watched(message: paramiko.Message) -> None:
            send(message)
            raw = message.asbytes()
            if raw and raw[0] in (MSG_CHANNEL_SUCCESS, MSG_CHANNEL_FAILURE):
                event = self._replied.pop(int.from_bytes(raw[1:5], "big"), None)
                if event is not None:
                    event.set()

        self.transport._send_user_message = watched  # type: ignore[attr-defined]

    def _reply_event(self, channel: paramiko.Channel) -> threading.Event:
        event = threading.Event()
        self._replied[channel.remote_chanid] = event
        return event

    def close_transport(self) -> None:
        self.transport.close()

    def get_allowed_auths(self, username: str) -> str:
        return "password,publickey"

    def _user(self, username: str) -> dict[str, Any] | None:
        name, width = split_login(username)
        user = self.device.users.get(name)
        if user is not None:
            self.username, self.width = name, width
        return user

    def check_auth_password(self, username: str, password: str) -> int:
        user = self._user(username)
        if user is not None and user.get("password") == password:
            return AUTH_SUCCESSFUL
        return AUTH_FAILED

    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        user = self._user(username)
        if user is None:
            return AUTH_FAILED
        wanted = f"{key.get_name()} {key.get_base64()}"
        for line in user.get("keys", []):
            if " ".join(line.split()[:2]) == wanted:
                return AUTH_SUCCESSFUL
        return AUTH_FAILED

    def check_channel_request(self, kind: str, chanid: int) -> int:
        if kind == "session":
            return OPEN_SUCCEEDED
        return OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

    def check_channel_pty_request(self, *args: Any) -> bool:
        return True

    def check_channel_env_request(self, channel: paramiko.Channel, name: bytes, value: bytes) -> bool:
        return True

    def check_channel_shell_request(self, channel: paramiko.Channel) -> bool:
        replied = self._reply_event(channel)
        threading.Thread(
            target=self._shell, args=(channel, replied), daemon=True, name="rossim-shell"
        ).start()
        return True

    def check_channel_exec_request(self, channel: paramiko.Channel, command: bytes) -> bool:
        text = command.decode("utf-8", errors="replace")
        replied = self._reply_event(channel)
        threading.Thread(
            target=self._exec, args=(channel, text, replied), daemon=True, name="rossim-exec"
        ).start()
        return True

    def _session(self) -> Session:
        return Session(self.device, self.username or "?", width=self.width)

    def _emit(self, lines: list[str]) -> bytes:
        if not lines:
            return b""
        eol = "\r\n" if self.device.settings.crlf else "\n"
        return (eol.join(lines) + eol).encode()

    def _exec(self, channel: paramiko.Channel, text: str, replied: threading.Event) -> None:
        try:
            out, failed = self._session().run(text)
            replied.wait(10)
            channel.sendall(self._emit(out))
            channel.send_exit_status(self.device.settings.error_exit_status if failed else 0)
        except DropConnection:
            replied.wait(10)  # the client saw its command accepted; then the connection dies
            self.transport.close()
            return
        except Exception:
            LOG.exception("exec failed: %s", text)
            with contextlib.suppress(Exception):
                channel.sendall(b"failure: internal simulator error\n")
                channel.send_exit_status(1)
        with contextlib.suppress(Exception):
            channel.shutdown_write()
            channel.close()

    def _shell(self, channel: paramiko.Channel, replied: threading.Event) -> None:
        """A minimal interactive console: one command per line."""
        session = self._session()
        replied.wait(10)
        prompt = f"[{self.username}@{self.device.identity()}] > ".encode()
        buf = b""
        try:
            channel.sendall(prompt)
            while True:
                data = channel.recv(4096)
                if not data:
                    break
                buf += data
                while b"\n" in buf or b"\r" in buf:
                    line, _, buf = buf.replace(b"\r\n", b"\n").replace(b"\r", b"\n").partition(b"\n")
                    text = line.decode(errors="replace").strip()
                    if text in ("/quit", "quit"):
                        channel.close()
                        return
                    out, _failed = session.run(text) if text else ([], False)
                    channel.sendall(b"\r\n" + b"".join(x.encode() + b"\r\n" for x in out) + prompt)
        except DropConnection:
            self.transport.close()
        except (OSError, EOFError):
            pass
        with contextlib.suppress(Exception):
            channel.close()


class SSHServer:
    def __init__(self, device: Device, host: str, port: int, host_key: paramiko.PKey) -> None:
        self.device = device
        self.host_key = host_key
        self.sock = socket.create_server((host, port), reuse_port=False, backlog=256)
        self.port = int(self.sock.getsockname()[1])
        self.transports: set[paramiko.Transport] = set()
        self._lock = threading.Lock()
        self._closing = False
        self._thread = threading.Thread(target=self._accept_loop, daemon=True, name="rossim-ssh-accept")

    def start(self) -> None:
        self._thread.start()

    def _accept_loop(self) -> None:
        while not self._closing:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            if self.device.faults.is_down():
                client.close()
                continue
            threading.Thread(target=self._serve, args=(client,), daemon=True, name="rossim-ssh").start()

    def _serve(self, client: socket.socket) -> None:
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        transport = paramiko.Transport(client, default_window_size=WINDOW)
        transport.add_server_key(self.host_key)
        server = RosServer(self.device, transport)
        transport.set_subsystem_handler("sftp", paramiko.SFTPServer, RosSFTP)
        with self._lock:
            self.transports.add(transport)
        try:
            transport.start_server(server=server)
            # Channels must stay referenced: paramiko closes a channel when it is garbage collected.
            channels: list[paramiko.Channel] = []
            while transport.is_active():
                chan = transport.accept(timeout=1)
                channels = [c for c in channels if not c.closed]
                if chan is not None:
                    channels.append(chan)
        except (paramiko.SSHException, EOFError, OSError):
            pass
        finally:
            with self._lock:
                self.transports.discard(transport)
            transport.close()

    def drop_all(self) -> int:
        with self._lock:
            victims = list(self.transports)
        for t in victims:
            t.close()
        return len(victims)

    def connections(self) -> int:
        with self._lock:
            return len(self.transports)

    def close(self) -> None:
        self._closing = True
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self.drop_all()
