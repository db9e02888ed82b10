"""The boot service: iPXE scripts and machine configs over HTTP, answered from memory.

GET /boot.ipxe          entry script handed out by DHCP; chains to /ipxe with the machine's MAC
GET /ipxe?mac=&uuid=    the machine's script: Talos for approved devices, `exit` otherwise
GET /config?mac=&token= the machine config, only for an approved device presenting its token
GET /dnsmasq.conf       a dnsmasq network-boot snippet pointing at this service
GET /assets/...         kernel/initramfs from --assets-dir (a PVC), when configured
GET /healthz, /readyz   liveness; readiness once every watch has listed its objects
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import logging
import os
import re
import signal
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from kubernetes.client.exceptions import ApiException

from trellis import API_VERSION
from trellis.api.common import MAC_PATTERN, normalize_mac
from trellis.api.talos import TalosClusterSpec, TalosDeviceSpec
from trellis.operators.talosdevice import ipxe
from trellis.operators.talosdevice import objects as o
from trellis.operators.talosdevice.bootstore import Key, StatusWriter, Store, key_of, start_reflectors
from trellis.operators.talosdevice.bundle import SecretsBundle
from trellis.operators.talosdevice.kube import DEVICES, LABEL_MAC, Kube, mac_label, now
from trellis.operators.talosdevice.render import ClusterInput, RenderError, device_input_of, render_device
from trellis.operators.talosdevice.tokens import ROTATION_ANNOTATION, device_token, token_key

log = logging.getLogger("trellis.bootservice")
COMPONENT = "trellis-boot-service"
_MAC = re.compile(MAC_PATTERN)
_EVENT_EVERY = 300.0


@dataclass
class Options:
    public_url: str
    namespace: str | None = None
    cluster: str | None = None
    assets_url: str = ""
    asset_layout: str = "trellis"
    assets_dir: str = ""
    console_args: tuple[str, ...] = ()
    config_window: float = 3600.0
    cache_size: int = 4096
    status_refresh: float = 60.0


@dataclass
class Stats:
    renders: int = 0
    cache_hits: int = 0
    render_seconds: float = 0.0
    hit_seconds: float = 0.0


@dataclass
class BootService:
    options: Options
    kube: Kube
    store: Store = field(default_factory=Store)
    cache: OrderedDict[tuple[Any, ...], str] = field(default_factory=OrderedDict)
    parsed: dict[tuple[Any, ...], Any] = field(default_factory=dict)
    script_served: dict[str, float] = field(default_factory=dict)
    wipe_boots: set[str] = field(default_factory=set)
    creating: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    last_event: dict[tuple[Key, str, str, str], float] = field(default_factory=dict)
    stats: Stats = field(default_factory=Stats)
    writer: StatusWriter | None = None
    background: set[asyncio.Task[None]] = field(default_factory=set)
    last_write: dict[Key, float] = field(default_factory=dict)

    # --- lookups -----------------------------------------------------------------------------
    def _parsed(self, kind: str, obj: Mapping[str, Any]) -> Any:
        meta = obj["metadata"]
        key = (kind, meta.get("uid"), meta.get("resourceVersion"))
        if key not in self.parsed:
            if len(self.parsed) > 4 * self.options.cache_size:
                self.parsed.clear()
            if kind == "cluster":
                self.parsed[key] = TalosClusterSpec.model_validate(obj.get("spec") or {})
            elif kind == "device":
                self.parsed[key] = TalosDeviceSpec.model_validate(obj.get("spec") or {})
            elif kind == "bundle":
                data = obj.get("data") or {}
                bundle = SecretsBundle.from_yaml(base64.b64decode(data[o.KEY_BUNDLE]).decode())
                self.parsed[key] = (bundle, token_key(bundle.secretbox_secret))
            else:
                self.parsed[key] = o.parse_registry_configmap(obj.get("data"))
        return self.parsed[key]

    def cluster_of(self, device: Mapping[str, Any]) -> dict[str, Any] | None:
        ref = (device.get("spec") or {}).get("clusterRef")
        return self.store.clusters.get((device["metadata"]["namespace"], ref)) if ref else None

    def bundle_of(self, cluster: Mapping[str, Any]) -> tuple[SecretsBundle, bytes] | None:
        meta = cluster["metadata"]
        secret = self.store.secrets.get((meta["namespace"], o.secret_name(meta["name"])))
        if secret is None or o.KEY_BUNDLE not in (secret.get("data") or {}):
            return None
        return self._parsed("bundle", secret)  # type: ignore[no-any-return]

    def token_for(self, device: Mapping[str, Any], key: bytes) -> str:
        meta = device["metadata"]
        rotation = (meta.get("annotations") or {}).get(ROTATION_ANNOTATION, "")
        mac = normalize_mac(device["spec"]["mac"])
        return device_token(key, meta["namespace"], meta["name"], meta.get("uid", ""), mac, rotation)

    def servable(self, device: Mapping[str, Any]) -> bool:
        """Approved, and the operator judged this very generation fit to serve."""
        if (device.get("spec") or {}).get("approval") != "Approved":
            return False
        generation = device["metadata"].get("generation")
        for cond in (device.get("status") or {}).get("conditions") or ():
            if cond.get("type") == "Ready":
                return cond.get("status") == "True" and cond.get("observedGeneration") == generation
        return False

    def default_cluster(self) -> dict[str, Any] | None:
        clusters = [
            c
            for k, c in sorted(self.store.clusters.items())
            if not self.options.namespace or k[0] == self.options.namespace
        ]
        if self.options.cluster:
            return next((c for c in clusters if c["metadata"]["name"] == self.options.cluster), None)
        return clusters[0] if len(clusters) == 1 else None

    # --- rendering ---------------------------------------------------------------------------
    def render(self, device: Mapping[str, Any], cluster: Mapping[str, Any], wipe: bool) -> str:
        bundle_entry = self.bundle_of(cluster)
        if bundle_entry is None:
            raise RenderError("the cluster's secrets bundle is not available yet")
        cmeta, dmeta = cluster["metadata"], device["metadata"]
        secret = self.store.secrets[(cmeta["namespace"], o.secret_name(cmeta["name"]))]
        registries = self.store.configmaps.get((cmeta["namespace"], o.registry_configmap_name(cmeta["name"])))
        key = (
            dmeta.get("uid"),
            dmeta.get("generation"),
            cmeta.get("uid"),
            cmeta.get("generation"),
            secret["metadata"].get("resourceVersion"),
            (registries or {}).get("metadata", {}).get("resourceVersion"),
            # Written by the operator into status, so no generation bump announces it.
            repr((device.get("status") or {}).get("hostDisk")),
            wipe,
        )
        started = time.perf_counter()
        cached = self.cache.get(key)
        if cached is not None:
            self.cache.move_to_end(key)
            self.stats.cache_hits += 1
            self.stats.hit_seconds += time.perf_counter() - started
            return cached
        patches, documents = self._parsed("registries", registries) if registries else ([], [])
        cluster_input = ClusterInput(cmeta["name"], self._parsed("cluster", cluster), patches, documents)
        device_input = device_input_of(
            dmeta["name"], self._parsed("device", device), device.get("status"), wipe
        )
        text = render_device(cluster_input, device_input, bundle_entry[0]).to_yaml()
        self.stats.renders += 1
        self.stats.render_seconds += time.perf_counter() - started
        self.remember(key, text)
        return text

    def remember(self, key: tuple[Any, ...], text: str) -> None:
        self.cache[key] = text
        if len(self.cache) > self.options.cache_size:
            self.cache.popitem(last=False)

    # --- Kubernetes writes -------------------------------------------------------------------
    def record(self, device: Mapping[str, Any], status: Mapping[str, Any], routine: bool = False) -> None:
        """Queue a status update; routine ones (timestamps only) at most once per device per refresh period.

        A rack booting at once would otherwise turn every request into an apiserver write.
        """
        key = key_of(device)
        clock = time.monotonic()
        if routine and clock - self.last_write.get(key, float("-inf")) < self.options.status_refresh:
            return
        self.last_write[key] = clock
        if self.writer is not None:
            self.writer.update(key, status)

    def event(
        self, obj: Mapping[str, Any], reason: str, message: str, warning: bool = False, cause: str = ""
    ) -> None:
        """Record an Event in the background: at most one per device (this very object, by UID),
        reason and cause every 5 minutes, since machines retry every few seconds."""
        mark = (key_of(obj), str(obj["metadata"].get("uid", "")), reason, cause)
        if time.monotonic() - self.last_event.get(mark, -_EVENT_EVERY) < _EVENT_EVERY:
            return
        self.last_event[mark] = time.monotonic()
        body = {"apiVersion": API_VERSION, "kind": "TalosDevice", "metadata": obj["metadata"]}
        task = asyncio.create_task(
            asyncio.to_thread(self.kube.event, body, reason, message, warning, COMPONENT)
        )
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    async def discover(self, mac: str, remote: str, uuid: str, arch: str, serial: str = "") -> None:
        """Create a Pending TalosDevice for an unknown MAC (once, even under concurrent requests)."""
        namespace = self.options.namespace
        if not namespace:
            return
        cluster = self.default_cluster()
        name = "mac-" + mac.replace(":", "")
        stamp = now()
        body: dict[str, Any] = {
            "apiVersion": API_VERSION,
            "kind": "TalosDevice",
            "metadata": {
                "name": name,
                "labels": {LABEL_MAC: mac_label(mac)},
                "annotations": {o.DISCOVERED_ANNOTATION: stamp, o.BOOT_IP_ANNOTATION: remote},
            },
            "spec": {"mac": mac, "approval": "Pending"},
        }
        if cluster is not None:
            body["spec"]["clusterRef"] = cluster["metadata"]["name"]
        try:
            created = await asyncio.to_thread(self.kube.create, DEVICES, namespace, body)
        except ApiException as exc:
            if exc.status != 409:
                log.warning("could not create TalosDevice for %s: %s", mac, exc.reason)
            return
        status = {
            "firstSeen": stamp,
            "lastSeen": stamp,
            "phase": "Pending",
            "observed": _observed(remote, uuid, arch, serial),
        }
        self.record(created, status)
        message = f"unknown machine {mac} asked to boot from {remote}; approve it with spec.approval=Approved"
        self.event(created, "Discovered", message)


def _observed(remote: str, uuid: str | None, arch: str | None, serial: str | None = None) -> dict[str, str]:
    """Facts a booting machine reports; empty or all-zero SMBIOS values are left out."""
    out = {"ip": remote}
    if uuid and uuid.strip("-0"):
        out["uuid"] = uuid[:64]
    if serial and serial.strip(" 0"):
        out["serial"] = serial[:64]
    if arch:
        out["arch"] = arch[:16]
    return out


def parse_args(argv: list[str] | None = None) -> tuple[Options, str, int]:
    env = os.environ.get
    p = argparse.ArgumentParser(prog="trellis-boot-service", description=__doc__.splitlines()[0])
    p.add_argument("--listen", default=env("TRELLIS_BOOT_LISTEN", "0.0.0.0"))
    p.add_argument("--port", type=int, default=int(env("TRELLIS_BOOT_PORT", "8080")))
    p.add_argument(
        "--public-url",
        default=env("TRELLIS_BOOT_PUBLIC_URL"),
        required=not env("TRELLIS_BOOT_PUBLIC_URL"),
        help="URL machines use to reach this service, e.g. http://10.0.0.2:8080",
    )
    p.add_argument(
        "--namespace",
        default=env("TRELLIS_BOOT_NAMESPACE"),
        help="watch one namespace; discovered devices are created here",
    )
    p.add_argument(
        "--cluster", default=env("TRELLIS_BOOT_CLUSTER"), help="TalosCluster discovered devices belong to"
    )
    p.add_argument("--assets-url", default=env("TRELLIS_BOOT_ASSETS_URL", ""))
    p.add_argument(
        "--asset-layout", choices=("trellis", "factory"), default=env("TRELLIS_BOOT_ASSET_LAYOUT", "trellis")
    )
    p.add_argument(
        "--assets-dir", default=env("TRELLIS_BOOT_ASSETS_DIR", ""), help="serve /assets/ from this directory"
    )
    p.add_argument(
        "--console", action="append", default=[], help="kernel console argument, e.g. console=ttyS0,115200"
    )
    p.add_argument(
        "--config-window",
        type=float,
        default=float(env("TRELLIS_BOOT_CONFIG_WINDOW", "3600")),
        help="seconds after a device's iPXE boot during which its config may be fetched (0: always)",
    )
    a = p.parse_args(argv)
    options = Options(
        public_url=a.public_url,
        namespace=a.namespace,
        cluster=a.cluster,
        assets_url=a.assets_url,
        asset_layout=a.asset_layout,
        assets_dir=a.assets_dir,
        console_args=tuple(a.console),
        config_window=a.config_window,
    )
    ipxe.checked_url(options.public_url)
    return options, a.listen, a.port


async def serve(options: Options, listen: str, port: int) -> None:
    from trellis.operators.talosdevice.bootroutes import make_app

    service = BootService(options, Kube())
    loop = asyncio.get_running_loop()
    reflectors = start_reflectors(service.kube, service.store, options.namespace, loop)
    service.writer = StatusWriter(service.kube, interval=0.25)
    writer_task = asyncio.create_task(service.writer.run())
    runner = web.AppRunner(make_app(service), access_log=None)
    await runner.setup()
    # A rack booting at once opens hundreds of connections together: keep them in the accept queue.
    await web.TCPSite(runner, listen, port, backlog=2048).start()
    log.info("boot service listening on %s:%d, public URL %s", listen, port, options.public_url)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for r in reflectors:
            r.stopping.set()
        writer_task.cancel()
        await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    options, listen, port = parse_args(argv)
    asyncio.run(serve(options, listen, port))


if __name__ == "__main__":
    main()
