"""Production transport: NVMe/TCP with nvme-cli, namespaces found through sysfs."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from trellis.csi.mounts import CommandFailed, run
from trellis.csi.params import VolumeContext
from trellis.csi.transport import AttachError
from trellis.csi.transport import nvme_sysfs as sysfs

log = logging.getLogger(__name__)


def connect_argv(ctx: VolumeContext, host_nqn: str | None = None) -> list[str]:
    argv = [
        "nvme", "connect",
        "--transport=tcp",
        f"--traddr={ctx.nvme_address}",
        f"--trsvcid={ctx.nvme_port}",
        f"--nqn={ctx.nqn}",
        f"--ctrl-loss-tmo={ctx.ctrl_loss_tmo}",
        f"--reconnect-delay={ctx.reconnect_delay}",
    ]  # fmt: skip
    if ctx.keep_alive_tmo > 0:
        argv.append(f"--keep-alive-tmo={ctx.keep_alive_tmo}")
    if host_nqn:
        argv.append(f"--hostnqn={host_nqn}")
    return argv


class NvmeTransport:
    name = "nvme"

    def __init__(
        self,
        sysfs_root: str | Path = "/sys",
        dev_root: str | Path = "/dev",
        *,
        device_timeout: float = 30.0,
        host_nqn: str | None = None,
    ) -> None:
        self.sysfs = Path(sysfs_root)
        self.dev = Path(dev_root)
        self.device_timeout = device_timeout
        self.host_nqn = host_nqn

    def _load_module(self) -> None:
        if (self.sysfs / "module" / "nvme_tcp").is_dir():
            return
        try:
            run(["modprobe", "nvme_tcp"])
        except (CommandFailed, OSError) as exc:
            log.warning(
                "modprobe nvme_tcp failed; continuing in case it is built in", extra={"error": str(exc)}
            )

    def _device_path(self, name: str) -> str:
        return str(self.dev / name)

    def attach(self, volume_id: str, ctx: VolumeContext) -> str:
        name = sysfs.find_namespace(self.sysfs, ctx.nqn)
        if name and os.path.exists(self._device_path(name)):
            return self._device_path(name)
        if sysfs.find_subsystems(self.sysfs, ctx.nqn) and name is None:
            # Connected but without a namespace (the target went away and came back): start over.
            log.warning("subsystem connected without a namespace; reconnecting", extra={"nqn": ctx.nqn})
            self._disconnect(ctx.nqn)
        self._load_module()
        proc = run(connect_argv(ctx, self.host_nqn), check=False, timeout=60)
        if proc.returncode != 0 and not sysfs.ALREADY_CONNECTED.search(proc.stderr + proc.stdout):
            raise AttachError(
                f"nvme connect to {ctx.nvme_address}:{ctx.nvme_port} failed: {proc.stderr.strip()}"
            )
        deadline = time.monotonic() + self.device_timeout
        while time.monotonic() < deadline:
            name = sysfs.find_namespace(self.sysfs, ctx.nqn)
            if name and os.path.exists(self._device_path(name)):
                log.info("attached", extra={"device": self._device_path(name), "nqn": ctx.nqn})
                return self._device_path(name)
            time.sleep(0.25)
        raise AttachError(f"no block device appeared for {ctx.nqn} within {self.device_timeout:.0f}s")

    def device(self, volume_id: str) -> str | None:
        for nqn in sysfs.nqns_for_volume(self.sysfs, volume_id):
            name = sysfs.find_namespace(self.sysfs, nqn)
            if name:
                return self._device_path(name)
        return None

    def _disconnect(self, nqn: str) -> None:
        proc = run(["nvme", "disconnect", f"--nqn={nqn}"], check=False, timeout=60)
        if proc.returncode != 0 and sysfs.find_subsystems(self.sysfs, nqn):
            raise AttachError(f"nvme disconnect {nqn} failed: {proc.stderr.strip()}")

    def detach(self, volume_id: str) -> None:
        for nqn in sysfs.nqns_for_volume(self.sysfs, volume_id):
            self._disconnect(nqn)
            log.info("detached", extra={"nqn": nqn})

    def refresh(self, volume_id: str, device: str) -> None:
        for nqn in sysfs.nqns_for_volume(self.sysfs, volume_id):
            for subsystem in sysfs.find_subsystems(self.sysfs, nqn):
                for ctrl in sysfs.controllers(self.sysfs, subsystem):
                    run(["nvme", "ns-rescan", self._device_path(ctrl)], check=False)
