"""The rack: config, network, machines, their BMCs and the control endpoint, in one process.

Config (JSON)::

    {"network": {"netns": "lab", "bridge": "rackbr0", "address": "10.77.0.1/24"},   # optional defaults
     "machines": [{"name": "vm0", "mac": "52:54:00:00:00:01", "firmware": "bios", "memory": 512,
                   "disk_size": "2G", "serial": "SN0", "uuid": "...", "netns": "lab", "bridge": "rackbr0",
                   "oem_strings": ["any=string"], "faults": ["upgrade-rollback"],
                   "bmc": {"protocol": "ipmi", "port": 16230, "username": "admin", "password": "pw"}}]}

``oem_strings`` become SMBIOS type 11 OEM strings (``-smbios type=11,value=...``); ``faults`` add
``trellis-guest.fault=<fault>`` strings for the Talos stand-in (docs/lab.md, "Faults"). A guest
reset restarts the machine with its next boot device; a guest power-off (QMP SHUTDOWN reason
``guest-shutdown``) leaves it off until its BMC powers it on.

A machine without a namespace gets the rack's (one is created when none is named at all); bridges
and taps are created when missing and removed at exit only if this process created them.

Control endpoint (HTTP, JSON):
    GET  /machines                  every machine: power, pid, boot override, boots, exits, BMC counters
    GET  /machines/NAME/block       QMP query-block (CD-ROM media as QEMU sees it)
    POST /machines/NAME             {"unplugged": bool} | {"power": "on"|"off"} | {"guest_reset": true}
                                    | {"kill": true} | {"reset_counters": true}
"""

from __future__ import annotations

import json
import threading
from dataclasses import fields
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from rack.bmc import BmcSpec, MachineBackend, Racked
from rack.ipmi import EmulatedBmc
from rack.machine import Machine, MachineError, MachineSpec, parse_size
from rack.net import Network
from rack.redfish import RedfishServer

DEFAULT_BRIDGE = "rackbr0"


def parse_config(config: dict[str, Any]) -> list[tuple[MachineSpec, BmcSpec, str | None]]:
    """(machine, BMC, bridge address) per machine, with the rack-wide network defaults applied."""
    network = config.get("network") or {}
    known = {f.name for f in fields(MachineSpec)}
    result = []
    for i, entry in enumerate(config.get("machines") or []):
        entry = dict(entry)
        bmc = BmcSpec(**(entry.pop("bmc", None) or {}))
        address = entry.pop("bridge_address", None) or network.get("address")
        entry.setdefault("netns", network.get("netns"))
        entry.setdefault("bridge", network.get("bridge", DEFAULT_BRIDGE))
        if entry.get("bridge") and not entry.get("tap"):
            entry["tap"] = f"rk{i}{entry['name'][:8]}"[:15]
        if "disk_size" in entry:
            entry["disk_size"] = parse_size(entry["disk_size"])
        unknown = set(entry) - known
        if unknown:
            raise ValueError(f"machine {entry.get('name')!r}: unknown keys {sorted(unknown)}")
        result.append((MachineSpec(**entry), bmc, address))
    names = [spec.name for spec, _, _ in result]
    if len(set(names)) != len(names):
        raise ValueError("machine names must be unique")
    return result


class Rack:
    def __init__(self, config: dict[str, Any], state_dir: Path, address: str = "127.0.0.1") -> None:
        self.state_dir = state_dir
        self.address = address
        self.network = Network()
        self.entries = parse_config(config)
        self.machines: dict[str, Racked] = {}
        self.redfish: RedfishServer | None = None
        self.control: ThreadingHTTPServer | None = None

    def start(self, control_port: int | None) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        shared_netns: str | None = None
        for spec, bmc, bridge_address in self.entries:
            netns = spec.netns
            if netns is None and spec.bridge:
                shared_netns = shared_netns or self.network.namespace()
                netns = shared_netns
            elif netns is not None:
                netns = self.network.namespace(netns)
            if spec.bridge and netns:
                self.network.bridge(netns, spec.bridge, bridge_address)
                if spec.tap:
                    self.network.tap(netns, spec.tap, spec.bridge)
            if netns != spec.netns:
                spec = MachineSpec(
                    **{**{f.name: getattr(spec, f.name) for f in fields(MachineSpec)}, "netns": netns}
                )
            machine = Machine(spec, self.state_dir)
            machine.prepare()
            self.machines[spec.name] = Racked(machine, bmc)
        for racked in self.machines.values():
            if racked.bmc.protocol == "ipmi":
                EmulatedBmc(
                    MachineBackend(racked),
                    racked.bmc.username,
                    racked.bmc.password,
                    racked.bmc.port,
                    self.address,
                )
        redfish = [r for r in self.machines.values() if r.bmc.protocol == "redfish"]
        if redfish:
            self.redfish = RedfishServer(redfish, self.address)
            self.redfish.start()
        if control_port is not None:
            ControlHandler.rack = self
            self.control = ThreadingHTTPServer((self.address, control_port), ControlHandler)
            threading.Thread(target=self.control.serve_forever, daemon=True, name="control").start()

    def snapshot(self) -> dict[str, Any]:
        result = {}
        for name, racked in self.machines.items():
            doc = racked.machine.snapshot()
            doc["bmc"] = {
                "protocol": racked.bmc.protocol,
                "address": self.address,
                "port": racked.bmc.port,
                **racked.state.snapshot(),
            }
            result[name] = doc
        return result

    def stop(self) -> list[str]:
        """Power every machine off (no QEMU left) and remove the taps/bridges/namespaces made here."""
        if self.control is not None:
            self.control.shutdown()
        if self.redfish is not None:
            self.redfish.stop()
        threads = [
            threading.Thread(target=r.machine.power_off, args=("rack stopped",))
            for r in self.machines.values()
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return self.network.close()


class ControlHandler(BaseHTTPRequestHandler):
    rack: Rack

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _reply(self, code: int, body: Any) -> None:
        raw = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def _racked(self, name: str) -> Racked | None:
        found = self.rack.machines.get(name)
        if found is None:
            self._reply(404, {"error": f"no machine {name}"})
        return found

    def do_GET(self) -> None:
        parts = self.path.strip("/").split("/")
        if parts == ["machines"]:
            return self._reply(200, self.rack.snapshot())
        if len(parts) == 3 and parts[0] == "machines" and parts[2] == "block":
            racked = self._racked(parts[1])
            if racked is not None:
                self._reply(200, racked.machine.query_block())
            return
        self._reply(404, {"error": "not found"})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        parts = self.path.strip("/").split("/")
        if len(parts) != 2 or parts[0] != "machines":
            return self._reply(404, {"error": "not found"})
        racked = self._racked(parts[1])
        if racked is None:
            return
        machine = racked.machine
        try:
            if "unplugged" in body:
                racked.state.unplugged = bool(body["unplugged"])
            if body.get("reset_counters"):
                with racked.state.lock:
                    racked.state.commands = racked.state.sessions = 0
            if body.get("power") == "off":
                machine.power_off(reason="powered off through the control endpoint")
            elif body.get("power") == "on":
                machine.power_on(cause="power-on (control endpoint)")
            if body.get("guest_reset"):
                machine.guest_reset()
            if body.get("kill"):
                machine.kill()
        except MachineError as exc:
            return self._reply(409, {"error": str(exc)})
        self._reply(200, self.rack.snapshot()[machine.spec.name])
