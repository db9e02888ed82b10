"""Redfish session authentication against a minimal in-process service.

sushy-tools has no SessionService, so the login / token / expiry / logout protocol is checked
here against a small aiohttp application that implements just that part of Redfish.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import pytest
from aiohttp import web

from trellis.operators.baremetalhost.bmc import (
    AuthenticationError,
    Credentials,
    DriverOptions,
    UnsupportedError,
    connect,
)

SYSTEM = "/redfish/v1/Systems/1"


class SessionService:
    def __init__(self, sessions: bool = True) -> None:
        self.sessions = sessions
        self.tokens: dict[str, str] = {}
        self.logins = 0
        self.logouts = 0
        self.basic_requests = 0
        self.app = web.Application()
        self.app.router.add_get("/redfish/v1/", self.root)
        self.app.router.add_post("/redfish/v1/SessionService/Sessions", self.login)
        self.app.router.add_delete("/redfish/v1/SessionService/Sessions/{id}", self.logout)
        self.app.router.add_get(SYSTEM, self.system)

    async def root(self, request: web.Request) -> web.Response:
        links: dict[str, Any] = {}
        if self.sessions:
            links["Sessions"] = {"@odata.id": "/redfish/v1/SessionService/Sessions"}
        return web.json_response({"@odata.id": "/redfish/v1/", "Links": links})

    async def login(self, request: web.Request) -> web.Response:
        body = await request.json()
        if (body.get("UserName"), body.get("Password")) != ("admin", "secret"):
            return web.json_response({"error": {"message": "bad credentials"}}, status=401)
        self.logins += 1
        token, sid = secrets.token_hex(8), str(self.logins)
        self.tokens[token] = sid
        location = f"/redfish/v1/SessionService/Sessions/{sid}"
        return web.json_response({}, status=201, headers={"X-Auth-Token": token, "Location": location})

    async def logout(self, request: web.Request) -> web.Response:
        if request.headers.get("X-Auth-Token") not in self.tokens:
            return web.json_response({}, status=401)
        self.logouts += 1
        return web.Response(status=204)

    async def system(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization"):
            self.basic_requests += 1
            return web.json_response({}, status=401)
        if request.headers.get("X-Auth-Token") not in self.tokens:
            return web.json_response({"error": {"message": "expired"}}, status=401)
        return web.json_response({"@odata.id": SYSTEM, "PowerState": "On"})


async def serve(service: SessionService) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(service.app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, port


def test_session_login_token_reuse_expiry_and_logout() -> None:
    async def scenario() -> SessionService:
        service = SessionService()
        runner, port = await serve(service)
        try:
            bmc = connect(f"redfish+http://127.0.0.1:{port}{SYSTEM}", Credentials("admin", "secret"))
            assert await bmc.power_state() is True
            assert await bmc.power_state() is True
            assert service.logins == 1  # token reused
            service.tokens.clear()  # the BMC expires every session
            assert await bmc.power_state() is True
            assert service.logins == 2  # logged in again once
            await bmc.close()
            assert service.logouts == 1
            assert service.basic_requests == 0
        finally:
            await runner.cleanup()
        return service

    asyncio.run(scenario())


def test_session_login_refused_is_an_authentication_error() -> None:
    async def scenario() -> None:
        service = SessionService()
        runner, port = await serve(service)
        try:
            bmc = connect(f"redfish+http://127.0.0.1:{port}{SYSTEM}", Credentials("admin", "nope"))
            with pytest.raises(AuthenticationError):
                await bmc.power_state()
            await bmc.close()
        finally:
            await runner.cleanup()

    asyncio.run(scenario())


def test_forced_session_mode_without_session_service_is_unsupported() -> None:
    async def scenario() -> None:
        service = SessionService(sessions=False)
        runner, port = await serve(service)
        try:
            options = DriverOptions(redfish_auth="session")
            bmc = connect(f"redfish+http://127.0.0.1:{port}{SYSTEM}", Credentials("admin", "secret"), options)
            with pytest.raises(UnsupportedError):
                await bmc.power_state()
            await bmc.close()
        finally:
            await runner.cleanup()

    asyncio.run(scenario())
