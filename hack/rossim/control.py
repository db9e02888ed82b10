"""Loopback HTTP/JSON control API for tests: state, faults, reboot, command log, reset."""

from __future__ import annotations

import json
import threading
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from rossim import errors
from rossim.faults import DropRule, FailRule
from rossim.schema import api_value

if TYPE_CHECKING:
    from rossim.server import Simulator


class ControlError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _rows(sim: Simulator, path: str) -> list[dict[str, Any]]:
    if path not in sim.device.menus:
        raise ControlError(404, f"no menu /{path}")
    out = []
    for _, view in sim.device.rows(path):
        out.append({k: api_value(v) for k, v in view.items() if not k.startswith("_") and v is not None})
    return out


def handle(sim: Simulator, method: str, path: str, query: dict[str, str], body: dict[str, Any]) -> Any:
    device = sim.device
    parts = [p for p in path.split("/") if p]
    route = (method, parts[0] if parts else "")
    if route == ("GET", "health"):
        return {"ok": True, "down": device.faults.is_down()}
    if route == ("GET", "info"):
        return sim.info()
    if route == ("GET", "state"):
        return device.snapshot()
    if route == ("GET", "menu"):
        return _rows(sim, "/".join(parts[1:]))
    if route == ("GET", "disks"):
        disks = sim.disks()
        if len(parts) > 1:
            match = [d for d in disks if d["slot"] == parts[1]]
            if not match:
                raise ControlError(404, f"no disk {parts[1]}")
            return match[0]
        return disks
    if route == ("GET", "exports"):
        return sim.exports()
    if route == ("GET", "log") and parts[1:] == ["last"]:
        return {"seq": device.log.last_seq()}
    if route == ("GET", "log"):
        entries = device.log.entries(int(query.get("since", 0)))
        for key in ("protocol", "menu", "verb"):
            if key in query:
                entries = [e for e in entries if e[key] == query[key]]
        if "write" in query:
            entries = [e for e in entries if e["write"] == (query["write"] in ("1", "true", "yes"))]
        return entries
    if route == ("DELETE", "log"):
        device.log.clear()
        return {"ok": True}
    if route == ("GET", "faults"):
        return device.faults.describe()
    if route == ("DELETE", "faults"):
        device.faults.clear()
        return {"ok": True}
    if route == ("POST", "faults"):
        return set_faults(sim, body)
    if route == ("POST", "reboot"):
        return sim.reboot(
            float(body.get("down_seconds", 1.0)),
            float(body.get("exports_delay_seconds", 0.0)),
            bool(body.get("drop_file_disks", False)),
        )
    if route == ("POST", "drop"):
        return {"dropped": sim.drop_connections(body.get("protocol", "any"))}
    if route == ("POST", "reset"):
        sim.reset()
        return {"ok": True}
    if route == ("GET", "settings"):
        return vars(device.settings)
    if route == ("POST", "settings"):
        return sim.update_settings(body)
    if route == ("POST", "users"):
        sim.set_user(
            body["name"],
            body.get("password"),
            body.get("group", "full"),
            body.get("keys"),
            body.get("policies"),
        )
        return {"ok": True}
    if route == ("POST", "dhcp-client"):
        from rossim.hooks_net import dhcp_client

        return dhcp_client(
            device, str(body["mac"]), str(body["server"]), body.get("host_name"), body.get("address")
        )
    if route == ("POST", "flush"):
        device.save()
        return {"ok": True}
    raise ControlError(404, f"no route {method} {path}")


def set_faults(sim: Simulator, body: dict[str, Any]) -> dict[str, Any]:
    faults = sim.device.faults
    with faults.lock:
        if "latency_ms" in body:
            faults.latency_ms = float(body["latency_ms"])
            faults.latency_protocol = body.get("latency_protocol", "any")
            menu = body.get("latency_menu")
            faults.latency_menu = str(menu).strip("/") if menu else None
        if "pool_full" in body:
            faults.pool_full = bool(body["pool_full"])
        if body.get("fail"):
            rule = dict(body["fail"])
            rule.setdefault("message", errors.EXECUTION_ERROR)
            if rule.get("menu"):
                rule["menu"] = str(rule["menu"]).strip("/")
            faults.fail.append(FailRule(**rule))
        if body.get("drop"):
            faults.drop = DropRule(**body["drop"])
    return faults.describe()


class _Handler(BaseHTTPRequestHandler):
    sim: Simulator

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _handle(self, method: str) -> None:
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        length = int(self.headers.get("Content-Length") or 0)
        try:
            body = json.loads(self.rfile.read(length) or b"{}") if length else {}
            result = handle(self.sim, method, url.path, query, body)
            status, payload = 200, result
        except ControlError as exc:
            status, payload = exc.status, {"error": str(exc)}
        except (KeyError, TypeError, ValueError) as exc:
            status, payload = 400, {"error": f"bad request: {exc!r}"}
        data = json.dumps(payload, default=str).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_DELETE(self) -> None:
        self._handle("DELETE")


class ControlServer:
    def __init__(self, sim: Simulator, host: str, port: int) -> None:
        handler = type("Handler", (_Handler,), {"sim": sim})
        self.httpd = ThreadingHTTPServer((host, port), handler)
        self.httpd.daemon_threads = True
        self.port = int(self.httpd.server_address[1])
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True, name="rossim-control")

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class ControlClient:
    """Tiny client for the control API (stdlib only, so any test can use it)."""

    def __init__(self, base_url: str, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    def call(self, method: str, path: str, body: dict[str, Any] | None = None, **query: Any) -> Any:
        url = self.base_url + path
        if query:
            url += "?" + urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(
            url, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            raise ControlError(exc.code, exc.read().decode(errors="replace")) from None

    def health(self) -> dict[str, Any]:
        return dict(self.call("GET", "/health"))

    def info(self) -> dict[str, Any]:
        return dict(self.call("GET", "/info"))

    def state(self) -> dict[str, Any]:
        return dict(self.call("GET", "/state"))

    def menu(self, path: str) -> list[dict[str, str]]:
        return list(self.call("GET", "/menu/" + path.strip("/")))

    def disks(self) -> list[dict[str, Any]]:
        return list(self.call("GET", "/disks"))

    def disk(self, slot: str) -> dict[str, Any]:
        return dict(self.call("GET", f"/disks/{slot}"))

    def exports(self) -> list[dict[str, Any]]:
        return list(self.call("GET", "/exports"))

    def log(self, since: int = 0, **filters: Any) -> list[dict[str, Any]]:
        return list(self.call("GET", "/log", since=since, **filters))

    def clear_log(self) -> None:
        self.call("DELETE", "/log")

    def last_seq(self) -> int:
        return int(self.call("GET", "/log/last")["seq"])

    def writes(self, since: int = 0, menu: str | None = None) -> list[dict[str, Any]]:
        return self.log(since, write="true", menu=menu)

    def faults(self, **faults: Any) -> dict[str, Any]:
        return dict(self.call("POST", "/faults", faults))

    def clear_faults(self) -> None:
        self.call("DELETE", "/faults")

    def set_latency(self, ms: float, protocol: str = "any", menu: str | None = None) -> None:
        self.faults(latency_ms=ms, latency_protocol=protocol, latency_menu=menu)

    def fail_next(self, message: str = errors.EXECUTION_ERROR, count: int = 1, **match: Any) -> None:
        self.faults(fail={"message": message, "count": count, **match})

    def drop_after(self, commands: int, protocol: str = "any", when: str = "before") -> None:
        self.faults(drop={"after": commands, "protocol": protocol, "when": when})

    def pool_full(self, full: bool = True) -> None:
        self.faults(pool_full=full)

    def reboot(
        self, down_seconds: float = 1.0, exports_delay_seconds: float = 0.0, drop_file_disks: bool = False
    ) -> None:
        self.call(
            "POST",
            "/reboot",
            {
                "down_seconds": down_seconds,
                "exports_delay_seconds": exports_delay_seconds,
                "drop_file_disks": drop_file_disks,
            },
        )

    def drop_connections(self, protocol: str = "any") -> int:
        return int(self.call("POST", "/drop", {"protocol": protocol})["dropped"])

    def dhcp_client(self, mac: str, server: str, host_name: str | None = None) -> dict[str, Any]:
        """A DHCP client with ``mac`` asks ``server``: a dynamic lease unless the MAC has a static one."""
        body: dict[str, Any] = {"mac": mac, "server": server, "host_name": host_name}
        return dict(self.call("POST", "/dhcp-client", body))

    def reset(self) -> None:
        self.call("POST", "/reset", {})

    def settings(self, **changes: Any) -> dict[str, Any]:
        if changes:
            return dict(self.call("POST", "/settings", changes))
        return dict(self.call("GET", "/settings"))

    def add_user(
        self,
        name: str,
        password: str | None = None,
        group: str = "full",
        keys: list[str] | None = None,
        policies: list[str] | None = None,
    ) -> None:
        body = {"name": name, "password": password, "group": group, "keys": keys, "policies": policies}
        self.call("POST", "/users", body)

    def flush(self) -> None:
        self.call("POST", "/flush", {})
