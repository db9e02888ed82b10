"""HTTP routes of the boot service and the scripts they answer with."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Mapping
from typing import Any

from aiohttp import web
from kubernetes.client.exceptions import ApiException

from trellis.api.common import normalize_mac
from trellis.api.talos import TalosClusterSpec
from trellis.operators.talosdevice import ipxe
from trellis.operators.talosdevice import objects as o
from trellis.operators.talosdevice.bootservice import _MAC, BootService, _observed, log
from trellis.operators.talosdevice.kube import DEVICES, now
from trellis.operators.talosdevice.render import RenderError, config_hash
from trellis.operators.talosdevice.tokens import ROTATION_ANNOTATION, token_matches


def _script(text: str, status: int = 200) -> web.Response:
    return web.Response(text=text, status=status, content_type="text/plain", charset="utf-8")


def _remote(request: web.Request) -> str:
    return request.remote or ""


def make_app(service: BootService) -> web.Application:
    routes = web.RouteTableDef()

    @routes.get("/boot.ipxe")
    async def entry(request: web.Request) -> web.Response:
        return _script(ipxe.entry_script(service.options.public_url))

    @routes.get("/ipxe")
    async def script(request: web.Request) -> web.Response:
        raw = request.query.get("mac", "")
        if not _MAC.match(raw):
            return _script(
                ipxe.exit_script("BadRequest", "the boot request carried no valid MAC address"), 400
            )
        mac = normalize_mac(raw)
        uuid, arch, remote = request.query.get("uuid", ""), request.query.get("arch", ""), _remote(request)
        serial = request.query.get("serial", "")
        devices = service.store.devices_with_mac(mac)
        if not devices:
            if mac not in service.creating or service.creating[mac].done():
                service.creating[mac] = asyncio.create_task(service.discover(mac, remote, uuid, arch, serial))
            cluster = service.default_cluster()
            strict = True if cluster is None else (cluster.get("spec") or {}).get("strictBoot", True)
            return _script(_unknown_script(service, mac, strict))
        if len(devices) > 1:
            names = ", ".join(d["metadata"]["name"] for d in devices)
            return _script(ipxe.exit_script("Conflict", f"{mac} is claimed by several TalosDevices: {names}"))
        device = devices[0]
        stamp = now()
        seen = {"lastSeen": stamp, "observed": _observed(remote, uuid, arch, serial)}
        known = (device.get("status") or {}).get("firstSeen")
        if not known:
            seen["firstSeen"] = stamp
        service.record(device, seen, routine=bool(known))
        cluster = service.cluster_of(device)
        if cluster is None or not service.servable(device):
            approval = (device.get("spec") or {}).get("approval", "Pending")
            strict = cluster is None or (cluster.get("spec") or {}).get("strictBoot", True)
            if approval == "Pending" and not strict:
                return _script(_maintenance_script(service, device, cluster, arch))
            return _script(
                ipxe.exit_script(approval, f"{mac} is {approval.lower()}: no Talos install from the network")
            )
        wipe = False
        if (device.get("spec") or {}).get("wipeOnNextBoot"):
            wipe = await _claim_wipe(service, device)
        return _script(_talos_script(service, device, cluster, arch, wipe))

    @routes.get("/config")
    async def config(request: web.Request) -> web.Response:
        raw = request.query.get("mac", "")
        if not _MAC.match(raw):
            return web.Response(status=400, text="# missing or invalid mac\n")
        mac = normalize_mac(raw)
        devices = service.store.devices_with_mac(mac)
        device = devices[0] if len(devices) == 1 else None
        cluster = service.cluster_of(device) if device else None
        entry = service.bundle_of(cluster) if cluster else None
        if device is None or cluster is None or entry is None:
            return web.Response(status=403, text="# not an approved device\n")
        presented = request.query.get("token")
        if not token_matches(service.token_for(device, entry[1]), presented):
            which = "a wrong token" if presented else "no token"
            service.event(
                device,
                "ConfigDenied",
                f"config request for {mac} from {_remote(request)} had {which}",
                True,
                cause=which,
            )
            return web.Response(status=403, text="# token required\n")
        if not service.servable(device):
            return web.Response(status=403, text="# device is not approved (or not reconciled yet)\n")
        window = service.options.config_window
        if window and time.monotonic() - service.script_served.get(mac, float("-inf")) > window:
            service.event(
                device,
                "ConfigDenied",
                f"config request for {mac} from {_remote(request)}: no network boot of this device through "
                f"this service in the last {window:.0f}s",
                True,
                cause="window",
            )
            return web.Response(status=403, text="# no recent network boot of this device\n")
        wipe = mac in service.wipe_boots
        try:
            text = service.render(device, cluster, wipe)
        except (RenderError, ValueError) as exc:
            service.event(device, "RenderFailed", str(exc).splitlines()[0], True)
            return web.Response(status=503, text="# config cannot be rendered, see the device's events\n")
        # The hash of the config as it stays installed (the wipe flag only matters to this boot).
        served = config_hash(service.render(device, cluster, False) if wipe else text)
        service.wipe_boots.discard(mac)
        stamp = now()
        uuid = request.query.get("uuid", "")
        service.record(
            device,
            {
                "lastConfigFetch": stamp,
                "phase": "ConfigServed",
                "servedConfigHash": served,
                "observed": _observed(_remote(request), uuid, None),
            },
            routine=(device.get("status") or {}).get("phase") == "ConfigServed",
        )
        service.event(device, "ConfigServed", f"machine config served to {_remote(request)}")
        return web.Response(text=text, content_type="application/yaml", charset="utf-8")

    @routes.get("/dnsmasq.conf")
    async def dnsmasq(request: web.Request) -> web.Response:
        q = request.query
        try:
            text = ipxe.dnsmasq_snippet(
                ipxe.DnsmasqSnippet(
                    service.options.public_url,
                    mode=q.get("mode", "proxy"),
                    network=q.get("network", ""),
                    range_start=q.get("rangeStart", ""),
                    range_end=q.get("rangeEnd", ""),
                    netmask=q.get("netmask", ""),
                    interface=q.get("interface", ""),
                    tftp_server=q.get("tftpServer", ""),
                )
            )
        except ValueError as exc:
            return web.Response(status=400, text=f"# {exc}\n")
        return web.Response(text=text, content_type="text/plain")

    @routes.get("/stats")
    async def stats(request: web.Request) -> web.Response:
        st = service.stats
        writes = service.writer.writes if service.writer else 0
        return web.json_response(
            {
                "renders": st.renders,
                "renderSeconds": st.render_seconds,
                "cacheHits": st.cache_hits,
                "hitSeconds": st.hit_seconds,
                "statusWrites": writes,
                "devices": len(service.store.devices),
            }
        )

    @routes.get("/healthz")
    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    @routes.get("/readyz")
    async def readyz(request: web.Request) -> web.Response:
        missing = {"clusters", "devices", "secrets", "configmaps"} - service.store.synced
        if missing:
            return web.Response(status=503, text=f"waiting for {', '.join(sorted(missing))}\n")
        return web.Response(text="ready\n")

    app = web.Application()
    app.add_routes(routes)
    if service.options.assets_dir:
        app.router.add_static("/assets/", service.options.assets_dir, show_index=False, follow_symlinks=False)
    return app


def _assets(service: BootService, spec: TalosClusterSpec) -> ipxe.AssetLayout:
    """The cluster's own assetsURL holds the files directly; the service-wide base has a layout."""
    if spec.boot is not None and spec.boot.assets_url:
        return ipxe.AssetLayout(spec.boot.assets_url, "flat")
    base = service.options.assets_url or service.options.public_url.rstrip("/") + "/assets"
    return ipxe.AssetLayout(base, service.options.asset_layout)


def _schematic(spec: TalosClusterSpec) -> str:
    image = spec.installer_image or ""
    match = re.match(r"^factory\.talos\.dev/(?:[a-z-]+-)?installer/([0-9a-f]+):", image)
    return match.group(1) if match else ""


def _kernel_pair(service: BootService, cluster: Mapping[str, Any], arch: str) -> tuple[str, str]:
    spec: TalosClusterSpec = service._parsed("cluster", cluster)
    layout = _assets(service, spec)
    target = ipxe.talos_arch(arch)
    schematic = _schematic(spec)
    return layout.kernel(spec.talos_version, target, schematic), layout.initramfs(
        spec.talos_version, target, schematic
    )


def _talos_script(
    service: BootService, device: Mapping[str, Any], cluster: Mapping[str, Any], arch: str, wipe: bool
) -> str:
    entry = service.bundle_of(cluster)
    assert entry is not None
    mac = normalize_mac(device["spec"]["mac"])
    service.script_served[mac] = time.monotonic()
    arch = arch or (device.get("status") or {}).get("observed", {}).get("arch", "")
    dmeta, cmeta = device["metadata"], cluster["metadata"]
    secret = service.store.secrets.get((cmeta["namespace"], o.secret_name(cmeta["name"]))) or {}
    key = (
        "script",
        dmeta.get("uid"),
        dmeta.get("generation"),
        (dmeta.get("annotations") or {}).get(ROTATION_ANNOTATION),
        cmeta.get("uid"),
        cmeta.get("generation"),
        secret.get("metadata", {}).get("resourceVersion"),
        ipxe.talos_arch(arch),
    )
    cached = None if wipe else service.cache.get(key)
    if cached is not None:
        return cached
    kernel, initramfs = _kernel_pair(service, cluster, arch)
    boot = ipxe.TalosBoot(
        namespace=device["metadata"]["namespace"],
        name=device["metadata"]["name"],
        cluster=cluster["metadata"]["name"],
        role=device["spec"].get("role", "worker"),
        mac=mac,
        kernel_url=kernel,
        initramfs_url=initramfs,
        config_url=ipxe.config_url(service.options.public_url, mac, service.token_for(device, entry[1])),
        wipe=wipe,
        extra_args=_extra_args(service, cluster),
        console_args=service.options.console_args,
    )
    text = ipxe.talos_script(boot)
    if not wipe:
        service.remember(key, text)
    return text


def _extra_args(service: BootService, cluster: Mapping[str, Any]) -> tuple[str, ...]:
    spec: TalosClusterSpec = service._parsed("cluster", cluster)
    return tuple(spec.boot.extra_kernel_args or ()) if spec.boot is not None else ()


def _maintenance_script(
    service: BootService, device: Mapping[str, Any], cluster: Mapping[str, Any] | None, arch: str
) -> str:
    """Strict mode off: boot Talos without a config, so it waits in maintenance mode (no install)."""
    if cluster is None:
        return ipxe.exit_script("Pending", "no cluster to boot for")
    kernel, initramfs = _kernel_pair(service, cluster, arch)
    args = " ".join(
        [
            *ipxe.REQUIRED_KERNEL_ARGS,
            *ipxe.RECOMMENDED_KERNEL_ARGS,
            *map(ipxe.checked_arg, service.options.console_args),
        ]
    )
    return (
        "#!ipxe\n"
        f"# Trellis: {device['metadata']['name']} is pending approval: Talos maintenance mode, "
        "nothing is installed\n"
        f"kernel {kernel} {args}\ninitrd {initramfs}\nboot || exit\n"
    )


def _unknown_script(service: BootService, mac: str, strict: bool) -> str:
    if strict:
        return ipxe.exit_script(
            "Unknown", f"{mac} is not known yet; it is now listed as a Pending TalosDevice"
        )
    return ipxe.exit_script(
        "Unknown", f"{mac} is registered as Pending; approve it, then reboot it", pause=10
    )


async def _claim_wipe(service: BootService, device: Mapping[str, Any]) -> bool:
    """Clear wipeOnNextBoot atomically; only the request that cleared it serves the wipe."""
    meta = device["metadata"]
    ops = [
        {"op": "test", "path": "/spec/wipeOnNextBoot", "value": True},
        {"op": "replace", "path": "/spec/wipeOnNextBoot", "value": False},
    ]
    try:
        await asyncio.to_thread(service.kube.patch, DEVICES, meta["namespace"], meta["name"], ops)
    except ApiException as exc:
        if exc.status not in (409, 422):
            log.warning("could not claim the wipe of %s: %s", meta["name"], exc.reason)
        return False
    mac = normalize_mac(device["spec"]["mac"])
    service.wipe_boots.add(mac)
    service.record(device, {"lastWipe": now()})
    service.event(device, "WipeServed", "one-shot wipe served: the system disk is wiped during this boot")
    return True
