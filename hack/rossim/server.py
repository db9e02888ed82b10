"""The simulator process: one device, its three front ends, and lifecycle actions (reboot, reset)."""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import fields
from pathlib import Path
from typing import Any

from rossim import keys
from rossim.control import ControlServer
from rossim.device import Device, Settings, format_id
from rossim.persist import write_atomic
from rossim.ssh import SSHServer


class Simulator:
    def __init__(
        self,
        data_dir: Path,
        host: str = "127.0.0.1",
        api_port: int | None = 0,
        ssh_port: int | None = 0,
        api_tls_port: int | None = None,
        control_port: int | None = 0,
        settings: dict[str, Any] | None = None,
        rest_port: int | None = None,
        iscsi_portal: tuple[str, int] | None = None,
        iscsi_control_port: int | None = None,
    ) -> None:
        self.data_dir = data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        self.host = host
        self.device = Device(data_dir)
        if settings:
            self.update_settings(settings, save=False)
        self.host_key = keys.host_key(data_dir)
        self.ssh: SSHServer | None = None
        self.api: Any = None
        self.control: ControlServer | None = None
        self._ports = {
            "api": api_port,
            "ssh": ssh_port,
            "api_tls": api_tls_port,
            "control": control_port,
            "rest": rest_port,
        }
        self.rest: Any = None
        self.tls_cert: Path | None = None
        self._iscsi_portal = iscsi_portal
        self._iscsi_control_port = iscsi_control_port

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        from rossim.api import ApiServer

        # First: tgtd is forked with a pre-exec hook, which must happen before any thread starts.
        if self._iscsi_portal is not None:
            from rossim.iscsi import IscsiExports, Tgtd

            address, port = self._iscsi_portal
            tgtd = Tgtd(address, port, self.data_dir / "tgtd.log", self._iscsi_control_port)
            tgtd.start()
            IscsiExports(tgtd).attach(self.device)
        if self._ports["ssh"] is not None:
            self.ssh = SSHServer(self.device, self.host, int(self._ports["ssh"]), self.host_key)
            self.ssh.start()
        tls = None
        if self._ports["api_tls"] is not None:
            self.tls_cert, tls_key = keys.tls_material(self.data_dir, self.host)
            tls = (self.tls_cert, tls_key)
        if self._ports["api"] is not None or tls is not None:
            self.api = ApiServer(self.device, self.host, self._ports["api"], self._ports["api_tls"], tls)
            self.api.start()
        if self._ports["rest"] is not None:
            from rossim.rest import RestServer

            self.rest = RestServer(self.device, self.host, int(self._ports["rest"]))
            self.rest.start()
        if self._ports["control"] is not None:
            self.control = ControlServer(self, self.host, int(self._ports["control"]))
            self.control.start()
        self.device.start_saver()
        write_atomic(self.data_dir / "ready.json", json.dumps(self.info(), indent=2).encode())

    def stop(self) -> None:
        if self.control:
            self.control.close()
        if self.ssh:
            self.ssh.close()
        if self.api:
            self.api.close()
        if self.rest:
            self.rest.close()
        self.device.stop_saver()
        if self.device.iscsi is not None:
            with self.device.lock:
                self.device.iscsi.close()

    # ------------------------------------------------------------------ info

    def known_hosts_line(self) -> str:
        port = self.ssh.port if self.ssh else 22
        host = self.host if port == 22 else f"[{self.host}]:{port}"
        return f"{host} {self.host_key.get_name()} {self.host_key.get_base64()}"

    def info(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "api_port": self.api.port if self.api else None,
            "api_tls_port": self.api.tls_port if self.api else None,
            "ssh_port": self.ssh.port if self.ssh else None,
            "control_port": self.control.port if self.control else None,
            "rest_port": self.rest.port if self.rest else None,
            "iscsi_portal": self.device.iscsi.tgtd.portal if self.device.iscsi else None,
            "iscsi_control_port": self.device.iscsi.tgtd.control_port if self.device.iscsi else None,
            "data_dir": str(self.data_dir),
            "files_root": str(self.device.storage.root),
            "host_key": f"{self.host_key.get_name()} {self.host_key.get_base64()}",
            "known_hosts": self.known_hosts_line(),
            "tls_cert": str(self.tls_cert) if self.tls_cert else None,
            "tls_cert_pem": self.tls_cert.read_text() if self.tls_cert else None,
        }

    def disks(self) -> list[dict[str, Any]]:
        out = []
        for num, view in self.device.rows("disk"):
            entry: dict[str, Any] = {
                "id": format_id(num),
                "slot": view.get("slot"),
                "type": view.get("type"),
                "size": view.get("size"),
            }
            if view.get("type") == "file":
                rel = "/".join(p for p in str(view.get("file-path")).split("/") if p)
                entry.update(
                    file_path=view.get("file-path"),
                    backing_path=str(self.device.storage.root / rel),
                    nvme_tcp_export=bool(view.get("nvme-tcp-export")),
                    nqn=view.get("nvme-tcp-server-nqn"),
                    nvme_tcp_port=view.get("nvme-tcp-server-port"),
                    iscsi_export=bool(view.get("iscsi-export")),
                    iqn=view.get("iscsi-server-iqn"),
                    iscsi_port=view.get("iscsi-server-port"),
                    disabled=bool(view.get("disabled")),
                )
            out.append(entry)
        return out

    def exports(self) -> list[dict[str, Any]]:
        """Targets a client could connect to right now (none while the device is (re)booting)."""
        faults = self.device.faults
        if faults.is_down() or not faults.exports_ready():
            return []
        out = []
        for disk in self.disks():
            if disk["type"] != "file" or disk["disabled"]:
                continue
            if disk["nvme_tcp_export"]:
                out.append(
                    {
                        "protocol": "nvme-tcp",
                        "slot": disk["slot"],
                        "nqn": disk["nqn"],
                        "port": disk["nvme_tcp_port"],
                        "backing_path": disk["backing_path"],
                    }
                )
            if disk["iscsi_export"]:
                out.append(
                    {
                        "protocol": "iscsi",
                        "slot": disk["slot"],
                        "iqn": disk["iqn"],
                        "port": disk["iscsi_port"],
                        "backing_path": disk["backing_path"],
                        "served": self.device.iscsi is not None,
                    }
                )
        return out

    # ------------------------------------------------------------------ actions

    def drop_connections(self, protocol: str = "any") -> int:
        dropped = 0
        if self.ssh and protocol in ("any", "ssh", "sftp"):
            dropped += self.ssh.drop_all()
        if self.api and protocol in ("any", "api"):
            dropped += self.api.drop_all()
        return dropped

    def reboot(self, down_seconds: float, exports_delay: float, drop_file_disks: bool) -> dict[str, Any]:
        """Connections drop, new ones are refused while down, exports return `exports_delay` later."""
        faults = self.device.faults
        now = time.monotonic()
        faults.down_until = now + down_seconds
        faults.exports_at = now + down_seconds + exports_delay
        dropped = self.drop_connections()
        if self.device.iscsi is not None:
            self.device.iscsi.suspend(self.device, faults.exports_at)
        if drop_file_disks:
            with self.device.lock:
                table = self.device.table("disk")
                for num in [n for n, item in table.items.items() if item.get("type") == "file"]:
                    del table.items[num]
                self.device.invalidate_indexes()
                self.device.mark_dirty()
        self.device.started = time.time() + down_seconds
        return {"dropped": dropped}

    def reset(self) -> None:
        """Factory state: tables re-seeded, the file tree emptied, faults and log cleared."""
        with self.device.lock:
            root = self.device.storage.root
            shutil.rmtree(root, ignore_errors=True)
            root.mkdir(parents=True)
            self.device.storage.changed()
            self.device.reset_tables()
            self.device.faults.clear()
            self.device.faults.down_until = 0.0
            self.device.faults.exports_at = 0.0
            self.device.log.clear()
            if self.device.iscsi is not None:
                self.device.iscsi.sync_all(self.device, strict=False)

    def update_settings(self, changes: dict[str, Any], save: bool = True) -> dict[str, Any]:
        known = {f.name for f in fields(Settings)}
        with self.device.lock:
            for key, value in changes.items():
                if key not in known:
                    raise ValueError(f"unknown setting {key}")
                setattr(self.device.settings, key, type(getattr(self.device.settings, key))(value))
            if "pool_size" in changes:
                for item in self.device.table("disk").items.values():
                    if "pool-size" in item:
                        item["pool-size"] = int(changes["pool_size"])
            if save:
                self.device.mark_dirty()
        return vars(self.device.settings)

    def set_user(
        self,
        name: str,
        password: str | None,
        group: str = "full",
        keys: list[str] | None = None,
        policies: list[str] | None = None,
    ) -> None:
        if group not in ("full", "write", "read"):
            raise ValueError(f"unknown group {group}")
        with self.device.lock:
            user = self.device.users.setdefault(name, {"group": group, "keys": []})
            user["group"] = group
            if password is not None:
                user["password"] = password
            if keys is not None:
                user["keys"] = [k.strip() for k in keys if k.strip()]
            if policies is not None:
                user["policies"] = list(policies)
            self.device.mark_dirty()
