"""An IPMI 2.0 (RMCP+) BMC built on pyghmi's ``Bmc`` server class, one UDP port per system.

What a system *is* sits behind ``SystemBackend``: ``MemoryBackend`` keeps power and boot flags in
memory (the emulator tests and ``make up`` use, run as ``python -m tests.support.ipmi_bmc_emulator``),
``rack.backend.MachineBackend`` drives a QEMU machine. The BMC protocol side is the same for both.

Where pyghmi's server is more lenient than real BMCs it is tightened here: an RMCP+ open
session proposing algorithms other than cipher suite 3 is refused (so clients negotiate down
as they would with an older BMC) and an unknown user gets RAKP 2 "unauthorized name" instead
of silence.

Emulator mode (no QEMU)::

    python -m tests.support.ipmi_bmc_emulator --config systems.json --control-port 18000

The config lists systems (name, port, username, password and optional inventory). Each system
keeps power state, boot override (device, persistent, EFI) and a boot history: a one-time
override is consumed by the next boot, as on real BMCs. A small HTTP control endpoint lets
tests read that state and the request counters (``GET /systems``), pull a BMC off the network
(``POST /systems/<name>`` with ``{"unplugged": true}``) or change power behind the operator's
back (``{"power": "off"}``).
"""

from __future__ import annotations

import abc
import argparse
import json
import os
import sys
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pyghmi.ipmi.bmc as pyghmi_bmc
import pyghmi.ipmi.private.constants as ipmi_constants
import pyghmi.ipmi.private.serversession as serversession

# IPMI boot device selector (boot flags parameter 5, data 2 bits 5:2) <-> names used in our state.
BOOT_SELECTORS = {0: "none", 1: "pxe", 2: "disk", 3: "safe", 4: "diag", 5: "cdrom", 6: "bios", 15: "floppy"}
RMCP_STATUS_NO_CIPHER_MATCH = 0x11
RMCP_STATUS_UNAUTHORIZED_NAME = 0x0D
HMAC_SHA1 = 1
NOT_IN_PRESENT_STATE = 0xD5


@dataclass
class BootFlags:
    """IPMI boot flags (parameter 5): ``valid`` false means no override."""

    device: str = "none"
    persistent: bool = False
    efi: bool = False
    valid: bool = False


@dataclass(frozen=True)
class Identity:
    name: str
    serial: str
    uuid: str
    manufacturer: str = "Trellis Labs"
    product: str = "Emulated Server"


class SystemBackend(abc.ABC):
    """The server a BMC controls. Methods are called from pyghmi's I/O thread: never block long."""

    @abc.abstractmethod
    def identity(self) -> Identity: ...

    @abc.abstractmethod
    def unplugged(self) -> bool:
        """True while the BMC is "off the network": requests are dropped unanswered."""

    @abc.abstractmethod
    def count(self, what: str) -> None:
        """Request accounting: ``what`` is "commands" or "sessions"."""

    @abc.abstractmethod
    def power(self) -> str:
        """ "on" or "off"."""

    @abc.abstractmethod
    def power_on(self) -> None: ...

    @abc.abstractmethod
    def power_off(self) -> None:
        """Hard off."""

    @abc.abstractmethod
    def power_soft(self) -> None:
        """ACPI shutdown request; completes (or is forced) later."""

    @abc.abstractmethod
    def power_reset(self) -> bool:
        """Reset line; False when the server is off (IPMI: not supported in present state)."""

    @abc.abstractmethod
    def power_cycle(self) -> bool: ...

    @abc.abstractmethod
    def boot_flags(self) -> BootFlags: ...

    @abc.abstractmethod
    def set_boot_flags(self, flags: BootFlags) -> None: ...


@dataclass
class SystemState:
    name: str
    port: int
    username: str
    password: str
    power: str = "off"
    boot_device: str = "none"
    boot_persistent: bool = False
    boot_efi: bool = False
    boot_valid: bool = False
    boots: list[dict[str, Any]] = field(default_factory=list)
    unplugged: bool = False
    commands: int = 0
    sessions: int = 0
    power_delay: float = 0.0
    manufacturer: str = "Trellis Labs"
    product: str = "Emulated Server"
    serial: str = ""
    uuid: str = ""


def _fru_text(value: str) -> bytes:
    raw = value.encode("ascii", "replace")[:63]
    return bytes([0xC0 | len(raw)]) + raw


def _fru_area(header: bytes, fields: list[str]) -> bytes:
    body = header + b"".join(_fru_text(f) for f in fields) + b"\xc1"
    total = (len(body) + 1 + 7) // 8 * 8
    body = body + b"\x00" * (total - len(body) - 1)
    body = body[:1] + bytes([total // 8]) + body[2:]
    return body + bytes([(-sum(body)) & 0xFF])


def build_fru(ident: Identity | SystemState) -> bytes:
    """A FRU image with board and product areas (IPMI Platform Management FRU spec 1.0)."""
    board = _fru_area(
        b"\x01\x00\x00\x00\x00\x00",
        [ident.manufacturer, ident.product + " board", "B" + ident.serial, "BRD-1", ""],
    )
    product = _fru_area(
        b"\x01\x00\x00",
        [ident.manufacturer, ident.product, "MDL-1", "1.0", ident.serial, "", ""],
    )
    board_offset = 1
    product_offset = board_offset + len(board) // 8
    header = bytes([1, 0, 0, board_offset, product_offset, 0, 0])
    header += bytes([(-sum(header)) & 0xFF])
    return header + board + product


class Registry:
    """All in-memory systems, shared between the IPMI loop and the control endpoint."""

    def __init__(self, systems: list[SystemState], state_file: Path | None) -> None:
        self.lock = threading.RLock()
        self.systems = {s.name: s for s in systems}
        self.state_file = state_file

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {name: asdict(s) for name, s in self.systems.items()}

    def save(self) -> None:
        if self.state_file is None:
            return
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.snapshot()))
        os.replace(tmp, self.state_file)


class MemoryBackend(SystemBackend):
    """A server that is only state: power changes land at once (or after ``power_delay``)."""

    def __init__(self, state: SystemState, registry: Registry) -> None:
        if not state.uuid:
            state.uuid = str(uuid.uuid4())
        self.state = state
        self.registry = registry

    def identity(self) -> Identity:
        s = self.state
        return Identity(s.name, s.serial, s.uuid, s.manufacturer, s.product)

    def unplugged(self) -> bool:
        return self.state.unplugged

    def count(self, what: str) -> None:
        with self.registry.lock:
            setattr(self.state, what, getattr(self.state, what) + 1)

    def power(self) -> str:
        return self.state.power

    def _set_power(self, power: str, boot: bool) -> None:
        def apply() -> None:
            with self.registry.lock:
                was_on = self.state.power == "on"
                self.state.power = power
                if boot or (power == "on" and not was_on):
                    self._boot()
            self.registry.save()

        if self.state.power_delay > 0:
            threading.Timer(self.state.power_delay, apply).start()
        else:
            apply()

    def _boot(self) -> None:
        device = self.state.boot_device if self.state.boot_valid else "none"
        self.state.boots.append({"device": device, "efi": self.state.boot_efi, "at": time.time()})
        if self.state.boot_valid and not self.state.boot_persistent:
            self.state.boot_valid = False
            self.state.boot_device = "none"

    def power_on(self) -> None:
        self._set_power("on", boot=False)

    def power_off(self) -> None:
        self._set_power("off", boot=False)

    def power_soft(self) -> None:
        self._set_power("off", boot=False)

    def power_reset(self) -> bool:
        if self.state.power != "on":
            return False
        self._set_power("on", boot=True)
        return True

    def power_cycle(self) -> bool:
        return self.power_reset()

    def boot_flags(self) -> BootFlags:
        with self.registry.lock:
            s = self.state
            return BootFlags(s.boot_device, s.boot_persistent, s.boot_efi, s.boot_valid)

    def set_boot_flags(self, flags: BootFlags) -> None:
        with self.registry.lock:
            self.state.boot_valid = flags.valid
            self.state.boot_persistent = flags.persistent
            self.state.boot_efi = flags.efi
            self.state.boot_device = flags.device
        self.registry.save()


class StrictServerSession(serversession.ServerSession):
    def create_open_session_response(self, request: bytearray) -> bytearray:
        auth_algorithm = request[12] & 0x3F if len(request) > 12 else HMAC_SHA1
        integrity_algorithm = request[20] & 0x3F if len(request) > 20 else HMAC_SHA1
        if auth_algorithm != HMAC_SHA1 or integrity_algorithm != HMAC_SHA1:
            self.clientsessionid = request[4:8]
            self.managedsessionid = os.urandom(4)
            return bytearray([request[0], RMCP_STATUS_NO_CIPHER_MATCH, 0, 0]) + self.clientsessionid
        response: bytearray = super().create_open_session_response(request)
        return response

    def _got_rakp1(self, data: bytearray) -> None:
        name_length = data[27] if len(data) > 27 else 0
        username = bytes(data[28 : 28 + name_length]).decode("utf-8", "replace")
        if name_length and self.authdata.get(username) is None:
            payload = bytearray([data[0], RMCP_STATUS_UNAUTHORIZED_NAME, 0, 0]) + self.clientsessionid
            self.send_payload(payload, ipmi_constants.payload_types["rakp2"], retry=False)
            return
        super()._got_rakp1(data)


class EmulatedBmc(pyghmi_bmc.Bmc):
    def __init__(self, backend: SystemBackend, username: str, password: str, port: int, address: str) -> None:
        self.backend = backend
        ident = backend.identity()
        self.name = ident.name
        super().__init__({username: password}, port=port, bmcuuid=uuid.UUID(ident.uuid), address=address)
        self.mfgid = 32473  # IANA enterprise number reserved for documentation (RFC 5612)
        self.prodid = 0x0301
        self.fru = build_fru(ident)

    # -- session plumbing -------------------------------------------------------------------
    def sessionless_data(self, data: bytes, sockaddr: Any) -> None:
        if self.backend.unplugged():
            return
        raw = bytearray(data)
        if len(raw) >= 22 and raw[0] == 6 and raw[2:4] == b"\xff\x07" and raw[4] == 6 and raw[5] == 16:
            self.backend.count("sessions")
            StrictServerSession(
                self.authdata, self.kg, sockaddr, self.serversocket, raw[16:], self.uuid, bmc=self
            )
            return
        super().sessionless_data(data, sockaddr)

    def handle_raw_request(self, request: dict[str, Any], session: Any) -> None:
        if self.backend.unplugged():
            return
        self.backend.count("commands")
        if os.environ.get("IPMI_EMULATOR_TRACE"):
            print(f"{self.name} netfn={request['netfn']:#x} cmd={request['command']:#x}", flush=True)
        netfn, command = request["netfn"], request["command"]
        if netfn == 0x0A and command == 0x10:
            return self._fru_info(request, session)
        if netfn == 0x0A and command == 0x11:
            return self._fru_read(request, session)
        super().handle_raw_request(request, session)

    def _fru_info(self, request: dict[str, Any], session: Any) -> None:
        if list(request["data"][:1]) != [0]:
            return session.send_ipmi_response(code=0xCB)
        size = len(self.fru)
        session.send_ipmi_response(data=[size & 0xFF, size >> 8, 0])

    def _fru_read(self, request: dict[str, Any], session: Any) -> None:
        data = request["data"]
        if len(data) < 4 or data[0] != 0:
            return session.send_ipmi_response(code=0xCB)
        offset = data[1] | (data[2] << 8)
        chunk = self.fru[offset : offset + data[3]]
        session.send_ipmi_response(data=[len(chunk), *chunk])

    def send_device_id(self, session: Any) -> None:
        # Get Device ID response: manufacturer ID is 3 bytes and product ID 2 (IPMI 2.0 table 20-1).
        data = [0x20, 0x01, 0x01, 0x00, 0x02, 0x00]
        data += [self.mfgid & 0xFF, (self.mfgid >> 8) & 0xFF, (self.mfgid >> 16) & 0x0F]
        data += [self.prodid & 0xFF, self.prodid >> 8]
        session.send_ipmi_response(data=data)

    def get_system_guid(self) -> uuid.UUID:
        return uuid.UUID(self.backend.identity().uuid)

    # -- chassis -----------------------------------------------------------------------------
    def get_power_state(self) -> str:
        return self.backend.power()

    def power_on(self) -> int:
        self.backend.power_on()
        return 0

    def power_off(self) -> int:
        self.backend.power_off()
        return 0

    def power_shutdown(self) -> int:
        self.backend.power_soft()
        return 0

    def power_reset(self) -> int:
        return 0 if self.backend.power_reset() else NOT_IN_PRESENT_STATE

    def power_cycle(self) -> int:
        return 0 if self.backend.power_cycle() else NOT_IN_PRESENT_STATE

    def cold_reset(self) -> int:
        return 0

    def get_boot_device(self) -> str:
        # pyghmi's generic boot-options handler calls this; ours answers parameter 5 itself.
        return self.backend.boot_flags().device

    def get_system_boot_options(self, request: dict[str, Any], session: Any) -> None:
        if request["data"][0] & 0x7F != 5:
            return super().get_system_boot_options(request, session)
        boot = self.backend.boot_flags()
        flags = (0x80 if boot.valid else 0) | (0x40 if boot.persistent else 0) | (0x20 if boot.efi else 0)
        selector = next((k for k, v in BOOT_SELECTORS.items() if v == boot.device), 0)
        session.send_ipmi_response(data=[1, 5, flags, selector << 2, 0, 0, 0])

    def set_system_boot_options(self, request: dict[str, Any], session: Any) -> None:
        data = request["data"]
        if data[0] & 0x7F != 5:
            return super().set_system_boot_options(request, session)
        if len(data) < 3:
            return session.send_ipmi_response(code=0xC7)
        selector = (data[2] >> 2) & 0x0F
        if selector not in BOOT_SELECTORS:
            return session.send_ipmi_response(code=0xCC)
        self.backend.set_boot_flags(
            BootFlags(
                device=BOOT_SELECTORS[selector],
                persistent=bool(data[1] & 0x40),
                efi=bool(data[1] & 0x20),
                valid=bool(data[1] & 0x80),
            )
        )
        session.send_ipmi_response()


def serve_forever() -> None:
    """pyghmi's I/O loop for every ``EmulatedBmc`` made so far; returns only by exception."""
    EmulatedBmc.listen(timeout=30)


# -- emulator mode: in-memory systems with their own control endpoint ------------------------------


class ControlHandler(BaseHTTPRequestHandler):
    registry: Registry

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _reply(self, code: int, body: Any) -> None:
        raw = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def do_GET(self) -> None:
        if self.path == "/systems":
            return self._reply(200, self.registry.snapshot())
        self._reply(404, {"error": "not found"})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        if self.path == "/reset-counters":
            with self.registry.lock:
                for system in self.registry.systems.values():
                    system.commands = system.sessions = 0
            return self._reply(200, {})
        name = self.path.removeprefix("/systems/")
        found = self.registry.systems.get(name)
        if found is None:
            return self._reply(404, {"error": f"no system {name}"})
        system = found
        with self.registry.lock:
            for key in ("unplugged", "power", "power_delay"):
                if key in body:
                    setattr(system, key, body[key])
        self.registry.save()
        self._reply(200, asdict(system))


_PERSISTED = {"power", "boot_device", "boot_persistent", "boot_efi", "boot_valid", "boots", "uuid"}


def load_systems(config: dict[str, Any], state_file: Path | None) -> list[SystemState]:
    saved: dict[str, Any] = {}
    if state_file and state_file.exists():
        saved = json.loads(state_file.read_text())
    systems = []
    for entry in config["systems"]:
        merged = {**entry, **{k: v for k, v in saved.get(entry["name"], {}).items() if k in _PERSISTED}}
        systems.append(SystemState(**merged))
    return systems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="An IPMI 2.0 BMC emulator serving in-memory systems.")
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--control-port", type=int, required=True)
    parser.add_argument("--address", default="127.0.0.1")
    parser.add_argument("--state-file", type=Path)
    args = parser.parse_args(argv)
    config = json.loads(args.config.read_text())
    registry = Registry(load_systems(config, args.state_file), args.state_file)
    for state in registry.systems.values():
        EmulatedBmc(MemoryBackend(state, registry), state.username, state.password, state.port, args.address)
    registry.save()
    ControlHandler.registry = registry
    control = ThreadingHTTPServer((args.address, args.control_port), ControlHandler)
    threading.Thread(target=control.serve_forever, daemon=True).start()
    print(json.dumps({"ready": True, "systems": len(registry.systems)}), flush=True)
    serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
