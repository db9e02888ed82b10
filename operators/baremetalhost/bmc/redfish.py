"""Redfish driver over HTTP(S) with aiohttp.

Authentication: ``session`` logs in through the SessionService and sends X-Auth-Token (logging
in again once when the token expires); ``basic`` sends HTTP basic auth on every request;
``auto`` uses a session when the service root advertises one and basic auth otherwise.
Certificates are verified unless the host opts out (``bmc.disableCertificateVerification``);
a CA bundle can be given for BMCs with private certificates.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ssl
from collections.abc import Mapping
from typing import Any

import aiohttp

from trellis.operators.baremetalhost.bmc.address import BMCAddress
from trellis.operators.baremetalhost.bmc.base import (
    NIC,
    AuthenticationError,
    BMCDriver,
    BootDevice,
    BootOverride,
    CertificateError,
    Credentials,
    Inventory,
    ProtocolError,
    UnreachableError,
    UnsupportedError,
)

SERVICE_ROOT = "/redfish/v1/"
_TARGETS = {
    BootDevice.PXE: "Pxe",
    BootDevice.DISK: "Hdd",
    BootDevice.CDROM: "Cd",
    BootDevice.UEFI_HTTP: "UefiHttp",
    BootDevice.BIOS: "BiosSetup",
}
_DEVICES = {v: k for k, v in _TARGETS.items()}
_OFF_STATES = ("Off", "PoweringOn")  # PoweringOn is still off; PoweringOff counts as on until done


class RedfishDriver(BMCDriver):
    name = "redfish"
    supports_virtual_media = True

    def __init__(
        self,
        address: BMCAddress,
        credentials: Credentials,
        verify_certificate: bool = True,
        ca_file: str | None = None,
        auth: str = "auto",
        timeout: float = 15.0,
    ) -> None:
        if auth not in ("auto", "session", "basic"):
            raise ValueError(f"unknown Redfish auth mode {auth!r}")
        self._address = address
        self._credentials = credentials
        self._auth_mode = auth
        self._timeout = aiohttp.ClientTimeout(total=timeout, connect=min(timeout, 5.0))
        self._ssl: ssl.SSLContext | bool = True
        if address.transport == "https":
            if not verify_certificate:
                self._ssl = False
            elif ca_file:
                self._ssl = ssl.create_default_context(cafile=ca_file)
        self._http: aiohttp.ClientSession | None = None
        self._token: str | None = None
        self._session_uri: str | None = None
        self._use_session: bool | None = None if auth == "auto" else auth == "session"
        self._system: str | None = address.system_path
        self._resolved: str | None = None  # canonical system URI, known after the first GET
        self._lock = asyncio.Lock()

    # -- transport -------------------------------------------------------------------------------
    def _client(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession(
                base_url=self._address.base_url,
                timeout=self._timeout,
                connector=aiohttp.TCPConnector(ssl=self._ssl, limit=4),
                headers={"Accept": "application/json", "OData-Version": "4.0"},
            )
        return self._http

    async def _request(
        self, method: str, path: str, body: dict[str, Any] | None = None, authenticate: bool = True
    ) -> tuple[int, Any, Mapping[str, str]]:
        if authenticate:
            await self._ensure_auth()
        for attempt in (1, 2):
            headers: dict[str, str] = {}
            if authenticate and self._use_session and self._token:
                headers["X-Auth-Token"] = self._token
            elif authenticate:
                headers["Authorization"] = self._basic_auth()
            try:
                async with self._client().request(method, path, json=body, headers=headers) as resp:
                    payload: Any = None
                    if resp.content_type == "application/json":
                        payload = await resp.json()
                    else:
                        await resp.read()
                    if resp.status == 401 and authenticate and self._use_session and attempt == 1:
                        self._token = None  # expired session: log in again once
                        await self._ensure_auth()
                        continue
                    _raise_for_status(resp.status, payload, method, path)
                    return resp.status, payload, resp.headers
            except aiohttp.ClientConnectorCertificateError as exc:
                raise CertificateError(
                    f"certificate of {self._address.host} not trusted: {exc.certificate_error}"
                ) from exc
            except aiohttp.ClientSSLError as exc:
                raise CertificateError(f"TLS with {self._address.host} failed: {exc}") from exc
            except (aiohttp.ClientConnectionError, TimeoutError) as exc:
                raise UnreachableError(f"no answer from {self._address.host}: {type(exc).__name__}") from exc
        raise AuthenticationError("BMC refused the session token twice")

    def _basic_auth(self) -> str:
        raw = f"{self._credentials.username}:{self._credentials.password}".encode()
        return "Basic " + base64.b64encode(raw).decode()

    async def _get(self, path: str) -> dict[str, Any]:
        _, payload, _ = await self._request("GET", path)
        if not isinstance(payload, dict):
            raise ProtocolError(f"GET {path} did not return a JSON object")
        return payload

    async def _ensure_auth(self) -> None:
        if self._use_session is False or self._token:
            return
        async with self._lock:
            if self._token:
                return
            _, root, _ = await self._request("GET", SERVICE_ROOT, authenticate=False)
            sessions = ((root or {}).get("Links") or {}).get("Sessions", {}).get("@odata.id")
            if self._use_session is None:
                self._use_session = bool(sessions)
            if not self._use_session:
                return
            if not sessions:
                raise UnsupportedError("the Redfish service has no SessionService; use basic auth")
            body = {"UserName": self._credentials.username, "Password": self._credentials.password}
            _, _, headers = await self._request("POST", sessions, body, authenticate=False)
            token = headers.get("X-Auth-Token")
            if not token:
                raise ProtocolError("session login returned no X-Auth-Token")
            self._token = str(token)
            self._session_uri = str(headers.get("Location") or "") or None

    async def system_path(self) -> str:
        """The system's canonical URI; discovered when the address names no system."""
        if self._resolved is None:
            await self._system_doc()
        assert self._resolved is not None
        return self._resolved

    async def _system_doc(self) -> dict[str, Any]:
        """GET the system; the first call also finds it and follows a name -> UUID alias."""
        if self._resolved is not None:
            return await self._get(self._resolved)
        if self._system is None:
            collection = await self._get("/redfish/v1/Systems")
            members = [m["@odata.id"] for m in collection.get("Members", [])]
            if len(members) != 1:
                raise ProtocolError(
                    f"the Redfish service has {len(members)} systems; "
                    "put /redfish/v1/Systems/<id> in the address"
                )
            self._system = members[0]
        system = await self._get(self._system)
        self._resolved = str(system.get("@odata.id") or self._system)
        return system

    async def _reset(self, reset_type: str) -> None:
        system = await self._system_doc()
        action = (system.get("Actions") or {}).get("#ComputerSystem.Reset", {})
        target = action.get("target") or f"{system['@odata.id']}/Actions/ComputerSystem.Reset"
        allowed = action.get("ResetType@Redfish.AllowableValues")
        if allowed and reset_type not in allowed:
            raise UnsupportedError(f"BMC does not offer ResetType {reset_type}")
        await self._request("POST", target, {"ResetType": reset_type})

    # -- BMCDriver -------------------------------------------------------------------------------
    async def power_state(self) -> bool:
        state = (await self._system_doc()).get("PowerState")
        if state is None:
            raise ProtocolError("system has no PowerState")
        return state not in _OFF_STATES

    async def power_on(self) -> None:
        await self._reset("On")

    async def power_off(self, hard: bool) -> None:
        await self._reset("ForceOff" if hard else "GracefulShutdown")

    async def reset(self, hard: bool) -> None:
        await self._reset("ForceRestart" if hard else "GracefulRestart")

    async def set_boot_device(self, device: BootDevice, persistent: bool, uefi: bool = True) -> None:
        boot = {
            "BootSourceOverrideTarget": _TARGETS[device],
            "BootSourceOverrideEnabled": "Continuous" if persistent else "Once",
            "BootSourceOverrideMode": "UEFI" if uefi else "Legacy",
        }
        await self._request("PATCH", await self.system_path(), {"Boot": boot})

    async def boot_override(self) -> BootOverride:
        boot = (await self._system_doc()).get("Boot") or {}
        enabled = boot.get("BootSourceOverrideEnabled", "Disabled")
        target = boot.get("BootSourceOverrideTarget")
        if enabled == "Disabled" or not target or target == "None":
            return BootOverride(None)
        return BootOverride(
            _DEVICES.get(target),
            persistent=enabled == "Continuous",
            uefi=boot.get("BootSourceOverrideMode", "UEFI") == "UEFI",
        )

    async def inventory(self) -> Inventory:
        system = await self._system_doc()
        processors = system.get("ProcessorSummary") or {}
        memory = system.get("MemorySummary") or {}
        nics: list[NIC] = []
        link = (system.get("EthernetInterfaces") or {}).get("@odata.id")
        if link:
            try:
                for member in (await self._get(link)).get("Members", []):
                    nic = await self._get(member["@odata.id"])
                    if nic.get("MACAddress"):
                        nics.append(
                            NIC(str(nic.get("Id") or nic.get("Name")), str(nic["MACAddress"]).lower())
                        )
            except ProtocolError:
                pass  # some BMCs advertise the collection but fail on it; inventory stays partial
        gib = memory.get("TotalSystemMemoryGiB")
        return Inventory(
            manufacturer=system.get("Manufacturer") or None,
            model=system.get("Model") or None,
            serial_number=system.get("SerialNumber") or None,
            system_uuid=system.get("UUID") or None,
            bios_version=system.get("BiosVersion") or None,
            cpu_count=processors.get("Count"),
            cpu_model=processors.get("Model"),
            memory_mib=int(gib * 1024) if isinstance(gib, int | float) else None,
            nics=tuple(nics),
        )

    async def _cd_media(self) -> dict[str, Any]:
        system = await self._system_doc()
        link = (system.get("VirtualMedia") or {}).get("@odata.id")
        candidates: list[str] = [link] if link else []
        for manager in (system.get("Links") or {}).get("ManagedBy", []):
            doc = await self._get(manager["@odata.id"])
            if (doc.get("VirtualMedia") or {}).get("@odata.id"):
                candidates.append(doc["VirtualMedia"]["@odata.id"])
        for collection in candidates:
            for member in (await self._get(collection)).get("Members", []):
                media = await self._get(member["@odata.id"])
                if any(t in ("CD", "DVD") for t in media.get("MediaTypes", [])):
                    return media
        raise UnsupportedError("the BMC offers no CD/DVD virtual media device")

    async def insert_virtual_media(self, url: str) -> None:
        media = await self._cd_media()
        if media.get("Inserted") and media.get("Image") == url:
            return
        if media.get("Inserted"):
            await self._media_action(media, "EjectMedia", {})
        await self._media_action(
            media, "InsertMedia", {"Image": url, "Inserted": True, "WriteProtected": True}
        )

    async def eject_virtual_media(self) -> None:
        media = await self._cd_media()
        if media.get("Inserted"):
            await self._media_action(media, "EjectMedia", {})

    async def _media_action(self, media: dict[str, Any], action: str, body: dict[str, Any]) -> None:
        actions = media.get("Actions") or {}
        target = (actions.get(f"#VirtualMedia.{action}") or {}).get("target")
        await self._request("POST", target or f"{media['@odata.id']}/Actions/VirtualMedia.{action}", body)

    async def close(self) -> None:
        if self._http is None:
            return
        if self._token and self._session_uri:
            # Best-effort logout: the session expires on its own anyway.
            with contextlib.suppress(Exception):
                await self._request("DELETE", self._session_uri)
        self._token = None
        await self._http.close()
        self._http = None


def _redfish_message(payload: Any) -> str:
    if not isinstance(payload, dict):
        return ""
    error = payload.get("error") or {}
    for info in error.get("@Message.ExtendedInfo") or []:
        if isinstance(info, dict) and info.get("Message"):
            return str(info["Message"])
    return str(error.get("message") or "")


def _raise_for_status(status: int, payload: Any, method: str, path: str) -> None:
    if status < 400:
        return
    detail = _redfish_message(payload)
    if status in (401, 403):
        raise AuthenticationError(f"BMC refused the credentials (HTTP {status})")
    if status in (502, 503, 504):
        raise UnreachableError(f"BMC unavailable (HTTP {status}) {detail}".strip())
    raise ProtocolError(f"{method} {path} failed with HTTP {status}: {detail or 'no details'}")
