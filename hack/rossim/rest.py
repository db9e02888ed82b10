"""A small part of the RouterOS 7 REST API (`/rest/<menu>`), with basic auth and the rest-api policy.

Modelled: GET list / GET one / PUT (add) / PATCH (set) / DELETE (remove) on every menu, JSON values as
strings like RouterOS gives them, errors as `{"error", "message", "detail"}`. Plain HTTP only.
"""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from rossim import errors
from rossim.device import Arg, Device, format_id, parse_id
from rossim.schema import API, api_value, visible_fields

REASONS = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found"}


class RestError(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def row(device: Device, path: str, view: dict[str, Any]) -> dict[str, str]:
    menu = device.menu(path)
    out = {} if menu.singleton else {".id": str(view[".id"])}
    for f in visible_fields(menu, view):
        out[f.name] = api_value(view[f.name])
    return out


def handle(device: Device, user: str, method: str, parts: list[str], body: Any) -> tuple[int, Any]:
    menus = device.menus
    path = "/".join(parts)
    ident = None
    if path not in menus and len(parts) > 1 and "/".join(parts[:-1]) in menus:
        path, ident = "/".join(parts[:-1]), parts[-1]
    if path not in menus:
        raise RestError(400, "no such command or directory (" + "/".join(parts) + ")")
    menu = menus[path]
    verb = {"GET": "print", "PUT": "add", "PATCH": "set", "DELETE": "remove"}.get(method, method.lower())
    text = f"{method} /rest/{'/'.join(parts)}"
    try:
        if method == "GET":
            rows = [row(device, path, v) for _, v in device.rows(path)]
            if ident is None:
                result: Any = rows[0] if menu.singleton and rows else rows
            else:
                match = [r for r in rows if r.get(".id") == ident]
                if not match:
                    raise RestError(404, "no such item")
                result = match[0]
            device.log.record("rest", user, path, verb, text)
            return 200, result
        args = [Arg(k, api_value(v)) for k, v in (body or {}).items() if k != ".id"]
        if method == "PUT":
            num = device.add(path, args, API, user)
            result = row(device, path, dict(device.rows(path))[num])
        elif method == "PATCH":
            nums = [1] if menu.singleton else [_resolve(device, path, ident)]
            device.set(path, nums, args, API, user)
            result = row(device, path, dict(device.rows(path))[nums[0]])
        elif method == "DELETE":
            device.remove(path, [_resolve(device, path, ident)], user)
            result = None
        else:
            raise RestError(400, "unsupported method")
    except errors.RosError as exc:
        device.log.record("rest", user, path, verb, text, exc.message)
        raise RestError(404 if exc.message == errors.NO_SUCH_ITEM else 400, exc.message) from None
    device.log.record("rest", user, path, verb, text)
    return (204 if result is None else 201 if method == "PUT" else 200), result


def _resolve(device: Device, path: str, ident: str | None) -> int:
    if ident is None or parse_id(ident) is None:
        raise errors.RosError(errors.NO_SUCH_ITEM, errors.CAT_MISSING)
    return device.resolve(path, format_id(parse_id(ident) or 0))


class _Handler(BaseHTTPRequestHandler):
    device: Device

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _reply(self, status: int, payload: Any) -> None:
        data = b"" if payload is None else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _user(self) -> str:
        header = self.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            raise RestError(401, "")
        name, _, password = base64.b64decode(header[6:]).decode(errors="replace").partition(":")
        user = self.device.users.get(name)
        if user is None or user.get("password") != password:
            raise RestError(401, "")
        if "rest-api" not in user.get("policies", ["rest-api"]):
            raise RestError(403, errors.NOT_ALLOWED_REST)
        return name

    def _handle(self, method: str) -> None:
        try:
            user = self._user()
            parts = [p for p in self.path.split("?")[0].split("/") if p]
            if not parts or parts[0] != "rest":
                raise RestError(404, "")
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            status, payload = handle(self.device, user, method, parts[1:], body)
            self._reply(status, payload)
        except RestError as exc:
            if exc.status == 401:
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="RouterOS"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self._reply(
                exc.status,
                {"error": exc.status, "message": REASONS.get(exc.status, ""), "detail": exc.detail},
            )
        except (ValueError, json.JSONDecodeError) as exc:
            self._reply(400, {"error": 400, "message": "Bad Request", "detail": str(exc)})

    def do_GET(self) -> None:
        self._handle("GET")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def do_DELETE(self) -> None:
        self._handle("DELETE")


class RestServer:
    def __init__(self, device: Device, host: str, port: int) -> None:
        handler = type("RestHandler", (_Handler,), {"device": device})
        self.httpd = ThreadingHTTPServer((host, port), handler)
        self.httpd.daemon_threads = True
        self.port = int(self.httpd.server_address[1])
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True, name="rossim-rest")

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
