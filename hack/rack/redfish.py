"""Redfish BMCs (aiohttp), one HTTP(S) site per machine, in the layout of sushy-tools.

Only what operators/baremetalhost/bmc/redfish.py (and common tooling) uses: the service root,
``Systems/<uuid>`` (power, boot override, inventory, Reset action, EthernetInterfaces),
``Managers/<uuid>/VirtualMedia/Cd`` with InsertMedia/EjectMedia, and basic auth. There is no
SessionService, so clients in "auto" mode use basic auth, as against sushy-tools.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from rack.bmc import Racked
from rack.machine import MachineError

ROOT = "/redfish/v1"
RESET_TYPES = ["On", "ForceOff", "GracefulShutdown", "ForceRestart", "GracefulRestart", "PowerCycle"]
_TARGETS = {"pxe": "Pxe", "disk": "Hdd", "cdrom": "Cd"}
_DEVICES = {v: k for k, v in _TARGETS.items()}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _error(status: int, message: str) -> web.Response:
    body = {
        "error": {
            "code": "Base.1.0.GeneralError",
            "message": message,
            "@Message.ExtendedInfo": [{"MessageId": "Base.1.0.GeneralError", "Message": message}],
        }
    }
    return web.json_response(body, status=status)


class RedfishBmc:
    def __init__(self, racked: Racked) -> None:
        self.racked = racked
        self.machine = racked.machine
        self.id = self.machine.system_uuid
        self.system = f"{ROOT}/Systems/{self.id}"
        self.manager = f"{ROOT}/Managers/{self.id}"

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._gate])
        r = app.router
        r.add_get(f"{ROOT}", self.root)
        r.add_get(f"{ROOT}/", self.root)
        r.add_get(f"{ROOT}/Systems", self.systems)
        r.add_get(f"{ROOT}/Systems/{{id}}", self.get_system)
        r.add_patch(f"{ROOT}/Systems/{{id}}", self.patch_system)
        r.add_post(f"{ROOT}/Systems/{{id}}/Actions/ComputerSystem.Reset", self.reset)
        r.add_get(f"{ROOT}/Systems/{{id}}/EthernetInterfaces", self.nics)
        r.add_get(f"{ROOT}/Systems/{{id}}/EthernetInterfaces/{{nic}}", self.nic)
        r.add_get(f"{ROOT}/Managers", self.managers)
        r.add_get(f"{ROOT}/Managers/{{id}}", self.get_manager)
        r.add_get(f"{ROOT}/Managers/{{id}}/VirtualMedia", self.media_collection)
        r.add_get(f"{ROOT}/Managers/{{id}}/VirtualMedia/Cd", self.get_cd)
        r.add_post(f"{ROOT}/Managers/{{id}}/VirtualMedia/Cd/Actions/VirtualMedia.InsertMedia", self.insert)
        r.add_post(f"{ROOT}/Managers/{{id}}/VirtualMedia/Cd/Actions/VirtualMedia.EjectMedia", self.eject)
        return app

    @web.middleware
    async def _gate(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        state = self.racked.state
        if state.unplugged:
            # Off the network: drop the connection without an answer.
            if request.transport is not None:
                request.transport.close()
            raise web.HTTPServiceUnavailable()
        with state.lock:
            state.commands += 1
        if request.path.rstrip("/") != ROOT and not self._authorized(request):
            response = _error(401, "authentication required")
            response.headers["WWW-Authenticate"] = 'Basic realm="rack"'
            return response
        if "id" in request.match_info and request.match_info["id"] not in (self.id, self.machine.spec.name):
            return _error(404, f"no resource {request.path}")
        try:
            return await handler(request)
        except MachineError as exc:
            return _error(500, str(exc))

    def _authorized(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except ValueError:
            return False
        spec = self.racked.bmc
        return hmac.compare_digest(user, spec.username) and hmac.compare_digest(password, spec.password)

    async def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        # Machine calls block (QEMU start/stop, downloads); keep the event loop free for other BMCs.
        return await asyncio.get_running_loop().run_in_executor(None, fn, *args)

    @staticmethod
    async def _body(request: web.Request) -> dict[str, Any]:
        try:
            body = await request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise web.HTTPBadRequest(text="a JSON object is required")
        return body

    # -- documents ------------------------------------------------------------------------------
    async def root(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "@odata.type": "#ServiceRoot.v1_5_0.ServiceRoot",
                "@odata.id": f"{ROOT}/",
                "Id": "RedfishService",
                "Name": "Trellis rack BMC",
                "RedfishVersion": "1.5.0",
                "UUID": self.id,
                "Systems": {"@odata.id": f"{ROOT}/Systems"},
                "Managers": {"@odata.id": f"{ROOT}/Managers"},
            }
        )

    async def systems(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "@odata.type": "#ComputerSystemCollection.ComputerSystemCollection",
                "@odata.id": f"{ROOT}/Systems",
                "Name": "Computer System Collection",
                "Members@odata.count": 1,
                "Members": [{"@odata.id": self.system}],
            }
        )

    async def get_system(self, request: web.Request) -> web.Response:
        m = self.machine
        override = m.boot_override()
        default_mode = "UEFI" if m.spec.firmware == "uefi" else "Legacy"
        boot = {
            "BootSourceOverrideEnabled": (
                "Disabled" if override.device is None else "Continuous" if override.persistent else "Once"
            ),
            "BootSourceOverrideTarget": _TARGETS.get(override.device or "", "None"),
            "BootSourceOverrideTarget@Redfish.AllowableValues": ["None", "Pxe", "Hdd", "Cd"],
            "BootSourceOverrideMode": (
                ("UEFI" if override.uefi else "Legacy") if override.device else default_mode
            ),
        }
        return web.json_response(
            {
                "@odata.type": "#ComputerSystem.v1_10_0.ComputerSystem",
                "@odata.id": self.system,
                "Id": self.id,
                "Name": m.spec.name,
                "UUID": self.id,
                "SerialNumber": m.spec.serial,
                "Manufacturer": m.spec.manufacturer,
                "Model": m.spec.product,
                "BiosVersion": "OVMF" if m.spec.firmware == "uefi" else "SeaBIOS",
                "PowerState": "On" if m.power == "on" else "Off",
                "Status": {"State": "Enabled", "Health": "OK"},
                "Boot": boot,
                "ProcessorSummary": {"Count": 1, "Model": "QEMU TCG vCPU"},
                "MemorySummary": {"TotalSystemMemoryGiB": round(m.spec.memory / 1024, 3)},
                "EthernetInterfaces": {"@odata.id": f"{self.system}/EthernetInterfaces"},
                "Links": {"ManagedBy": [{"@odata.id": self.manager}]},
                "Actions": {
                    "#ComputerSystem.Reset": {
                        "target": f"{self.system}/Actions/ComputerSystem.Reset",
                        "ResetType@Redfish.AllowableValues": RESET_TYPES,
                    }
                },
            }
        )

    async def patch_system(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        boot = body.get("Boot")
        if not isinstance(boot, dict):
            return _error(400, "only Boot can be changed")
        current = self.machine.boot_override()
        enabled = boot.get("BootSourceOverrideEnabled", "Once" if current.device is None else None)
        if enabled is None:
            enabled = "Continuous" if current.persistent else "Once"
        target = boot.get("BootSourceOverrideTarget", _TARGETS.get(current.device or "", "None"))
        mode = boot.get("BootSourceOverrideMode", "UEFI" if current.uefi else "Legacy")
        if enabled not in ("Once", "Continuous", "Disabled"):
            return _error(400, f"BootSourceOverrideEnabled {enabled!r} is not supported")
        if target != "None" and target not in _DEVICES:
            return _error(400, f"BootSourceOverrideTarget {target!r} is not supported")
        if mode not in ("UEFI", "Legacy"):
            return _error(400, f"BootSourceOverrideMode {mode!r} is not supported")
        device = None if enabled == "Disabled" or target == "None" else _DEVICES[target]
        self.machine.set_boot_override(device, persistent=enabled == "Continuous", uefi=mode == "UEFI")
        return web.Response(status=204)

    async def reset(self, request: web.Request) -> web.Response:
        kind = (await self._body(request)).get("ResetType")
        m = self.machine
        if kind == "On":
            await self._run(m.power_on, "power-on (Redfish)")
        elif kind == "ForceOff":
            await self._run(m.power_off, "ForceOff (Redfish)")
        elif kind == "GracefulShutdown":
            await self._run(m.soft_off)
        elif kind in ("ForceRestart", "GracefulRestart", "PowerCycle"):
            # No OS ever answers ACPI in this rack's guests, so a graceful restart is a reset too.
            if m.power != "on":
                return _error(409, f"{kind} needs the system powered on")
            await self._run(m.reset, f"{kind} (Redfish)")
        else:
            return _error(400, f"ResetType {kind!r} is not supported; one of {RESET_TYPES}")
        return web.Response(status=204)

    async def nics(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "@odata.id": f"{self.system}/EthernetInterfaces",
                "Name": "Ethernet Interface Collection",
                "Members@odata.count": 1,
                "Members": [{"@odata.id": f"{self.system}/EthernetInterfaces/nic0"}],
            }
        )

    async def nic(self, request: web.Request) -> web.Response:
        if request.match_info["nic"] != "nic0":
            return _error(404, "no such interface")
        return web.json_response(
            {
                "@odata.type": "#EthernetInterface.v1_4_0.EthernetInterface",
                "@odata.id": f"{self.system}/EthernetInterfaces/nic0",
                "Id": "nic0",
                "Name": "nic0",
                "MACAddress": self.machine.spec.mac,
                "PermanentMACAddress": self.machine.spec.mac,
            }
        )

    async def managers(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "@odata.id": f"{ROOT}/Managers",
                "Name": "Manager Collection",
                "Members@odata.count": 1,
                "Members": [{"@odata.id": self.manager}],
            }
        )

    async def get_manager(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "@odata.type": "#Manager.v1_3_1.Manager",
                "@odata.id": self.manager,
                "Id": self.id,
                "Name": f"BMC of {self.machine.spec.name}",
                "ManagerType": "BMC",
                "VirtualMedia": {"@odata.id": f"{self.manager}/VirtualMedia"},
                "Links": {"ManagerForServers": [{"@odata.id": self.system}]},
            }
        )

    async def media_collection(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "@odata.id": f"{self.manager}/VirtualMedia",
                "Name": "Virtual Media Services",
                "Members@odata.count": 1,
                "Members": [{"@odata.id": f"{self.manager}/VirtualMedia/Cd"}],
            }
        )

    async def get_cd(self, request: web.Request) -> web.Response:
        source = self.machine.media_source
        cd = f"{self.manager}/VirtualMedia/Cd"
        return web.json_response(
            {
                "@odata.type": "#VirtualMedia.v1_4_0.VirtualMedia",
                "@odata.id": cd,
                "Id": "Cd",
                "Name": "Virtual CD",
                "MediaTypes": ["CD", "DVD"],
                "Image": source or "",
                "ImageName": source.rsplit("/", 1)[-1] if source else "",
                "Inserted": source is not None,
                "WriteProtected": True,
                "ConnectedVia": "URI" if source else "NotConnected",
                "Actions": {
                    "#VirtualMedia.InsertMedia": {"target": f"{cd}/Actions/VirtualMedia.InsertMedia"},
                    "#VirtualMedia.EjectMedia": {"target": f"{cd}/Actions/VirtualMedia.EjectMedia"},
                },
            }
        )

    async def insert(self, request: web.Request) -> web.Response:
        image = (await self._body(request)).get("Image")
        if not isinstance(image, str) or not image:
            return _error(400, "InsertMedia needs an Image URL")
        if self.machine.media_source is not None:
            return _error(409, "media already inserted; eject it first")
        try:
            await self._run(self.machine.insert_media, image)
        except OSError as exc:
            return _error(400, f"cannot fetch {image}: {exc}")
        return web.Response(status=204)

    async def eject(self, request: web.Request) -> web.Response:
        await self._run(self.machine.eject_media)
        return web.Response(status=204)


async def _start_sites(bmcs: list[tuple[RedfishBmc, str]]) -> list[web.AppRunner]:
    runners = []
    for bmc, address in bmcs:
        runner = web.AppRunner(bmc.app(), access_log=None)
        await runner.setup()
        spec = bmc.racked.bmc
        context = None
        if spec.tls_cert and spec.tls_key:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(spec.tls_cert, spec.tls_key)
        await web.TCPSite(runner, address, spec.port, ssl_context=context).start()
        runners.append(runner)
    return runners


class RedfishServer:
    """Every Redfish BMC on one event loop in its own thread."""

    def __init__(self, racks: list[Racked], address: str) -> None:
        self.bmcs = [(RedfishBmc(r), address) for r in racks]
        self.loop = asyncio.new_event_loop()
        self.runners: list[web.AppRunner] = []

    def start(self) -> None:
        import threading

        ready: list[BaseException | None] = []
        event = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            try:
                self.runners = self.loop.run_until_complete(_start_sites(self.bmcs))
                ready.append(None)
            except BaseException as exc:
                ready.append(exc)
                event.set()
                return
            event.set()
            self.loop.run_forever()

        threading.Thread(target=run, daemon=True, name="redfish").start()
        event.wait()
        if ready and ready[0] is not None:
            raise ready[0]

    def stop(self) -> None:
        async def cleanup() -> None:
            for runner in self.runners:
                await runner.cleanup()

        if self.loop.is_running():
            asyncio.run_coroutine_threadsafe(cleanup(), self.loop).result(timeout=10)
            self.loop.call_soon_threadsafe(self.loop.stop)
