"""Managed dnsmasq: the configuration file (Jinja2) and the Kubernetes objects that run it."""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2

from trellis.api.network import NetworkSpec, PXEOptions
from trellis.operators.network.desired import Host, fqdn

TEMPLATES = Path(__file__).parent / "templates"
CONFIG_KEY = "dnsmasq.conf"
# Files shipped by Debian's ipxe package (/usr/lib/ipxe).
DEFAULT_TFTP_ROOT = "/usr/lib/ipxe"
DEFAULT_BIOS_FILE = "undionly.kpxe"
DEFAULT_EFI_FILE = "ipxe.efi"

# Anything that reaches the file must not be able to start a new line, a comment or another
# comma-separated field of the line it sits in.
_UNSAFE = re.compile(r"[\s,#'\"\\`$;]")


class RenderError(ValueError):
    """A value cannot be written into a dnsmasq configuration safely."""


def _safe(value: object) -> str:
    text = str(value)
    if not text or _UNSAFE.search(text):
        raise RenderError(f"value {text!r} cannot be used in a dnsmasq configuration")
    return text


_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(str(TEMPLATES)),
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
    autoescape=False,  # a config file, not HTML; values are checked by _safe instead
)


@dataclass(frozen=True)
class Settings:
    """Where the rendered file runs: paths inside the container (or the test's netns)."""

    tftp_root: str | None = DEFAULT_TFTP_ROOT
    lease_file: str = "/var/lib/trellis-dnsmasq/dnsmasq.leases"
    interface_conf: str | None = "/run/trellis/interface.conf"
    interfaces: tuple[str, ...] = ()
    dns_port: int = 53
    run_as_user: str = "nobody"
    run_as_group: str = "nogroup"


@dataclass
class BootRule:
    tags: list[str]
    file: str
    server: str | None = None
    csa: str | None = None
    label: str = "Network boot"


@dataclass
class PxeSection:
    rules: list[BootRule] = field(default_factory=list)
    options: list[dict[str, Any]] = field(default_factory=list)


def host_tag(mac: str) -> str:
    return "h-" + mac.replace(":", "").lower()


def _merge(base: PXEOptions | None, over: PXEOptions | None) -> PXEOptions:
    merged = (base or PXEOptions()).model_dump()
    if over is not None:
        merged.update({k: v for k, v in over.model_dump().items() if v is not None})
    return PXEOptions.model_validate(merged)


def _scope_rules(scope: list[str], opts: PXEOptions, tftp: bool) -> PxeSection:
    bios = opts.boot_file or (DEFAULT_BIOS_FILE if tftp else None)
    efi = opts.efi_boot_file or (DEFAULT_EFI_FILE if tftp else None)
    server = _safe(opts.next_server) if opts.next_server else None
    out = PxeSection()
    if opts.ipxe_script_url:
        out.rules.append(
            BootRule([*scope, "ipxe"], _safe(opts.ipxe_script_url), csa="x86PC", label="iPXE script")
        )
    chain = [*scope, "!ipxe"]
    if opts.http_boot_url:
        out.rules.append(BootRule([*chain, "arch-http"], _safe(opts.http_boot_url)))
    if efi:
        out.rules.append(BootRule([*chain, "arch-efi64"], _safe(efi), server, "x86-64_EFI"))
    if opts.arm64_efi_boot_file:
        out.rules.append(
            BootRule([*chain, "arch-arm64"], _safe(opts.arm64_efi_boot_file), server, "ARM64_EFI")
        )
    if bios:
        # Clients that send no architecture at all are treated as legacy BIOS.
        not_efi = ["!arch-efi64", "!arch-arm64", "!arch-http"]
        out.rules.append(BootRule([*chain, *not_efi], _safe(bios), server, "x86PC"))
    if opts.root_path:
        out.options.append({"tags": scope, "name": "option:root-path", "value": _safe(opts.root_path)})
    return out


def _pxe_section(net_pxe: PXEOptions | None, hosts: Sequence[Host], tftp: bool) -> PxeSection | None:
    custom = [h for h in hosts if h.pxe is not None and h.boot]
    # Hosts without boot options carry the pxe-host tag too, so the Network's rules skip them.
    scoped = any(h.pxe is not None or not h.boot for h in hosts)
    if net_pxe is None and not custom:
        return None
    section = PxeSection()
    scope = ["!pxe-host"] if scoped else []
    if net_pxe is not None:
        part = _scope_rules(scope, net_pxe, tftp)
        section.rules += part.rules
        section.options += part.options
    for host in custom:
        part = _scope_rules([host_tag(host.mac)], _merge(net_pxe, host.pxe), tftp)
        section.rules += part.rules
        section.options += part.options
    return section


def _lease_time(duration: str) -> str:
    """API durations (30s, 10m, 1h, 7d, 2w) in dnsmasq's units (s, m, h, d; no weeks)."""
    if duration.endswith("w"):
        return f"{int(duration[:-1]) * 7}d"
    return _safe(duration)


def render(network: str, spec: NetworkSpec, hosts: Iterable[Host], settings: Settings = Settings()) -> str:
    """The dnsmasq configuration for one Network (raises RenderError on unusable values)."""
    net = ipaddress.ip_network(spec.cidr)
    if not isinstance(net, ipaddress.IPv4Network):
        raise RenderError(f"{spec.cidr}: dnsmasq reservations need an IPv4 network")
    dhcp = spec.dhcp
    if dhcp is None:
        raise RenderError("dhcp is not configured")
    sorted_hosts = sorted(hosts, key=lambda h: h.mac)
    domain = _safe(dhcp.domain) if dhcp.domain else None
    tftp_enabled = not (spec.dnsmasq and spec.dnsmasq.tftp and not spec.dnsmasq.tftp.enabled)
    tftp_root = None
    if tftp_enabled:
        custom_root = spec.dnsmasq.tftp.root if spec.dnsmasq and spec.dnsmasq.tftp else None
        tftp_root = _safe(custom_root or settings.tftp_root) if (custom_root or settings.tftp_root) else None
    pxe = _pxe_section(dhcp.pxe, sorted_hosts, tftp_root is not None)
    publish = spec.dns.publish_reservations if spec.dns else True
    host_views = []
    for h in sorted_hosts:
        tags = []
        if h.pxe is not None or not h.boot:
            tags += [host_tag(h.mac), "pxe-host"]
        if not h.default_gateway:
            tags.append("no-gateway")
        host_views.append(
            {
                "mac": _safe(h.mac.lower()),
                "ip": _safe(h.ip),
                "short": _safe(h.short_name()) if h.hostname else None,
                "fqdn": _safe(fqdn(h.hostname, domain)) if (h.hostname and publish) else None,
                "tags": tags,
            }
        )
    upstream = (spec.dns.upstream if spec.dns else None) or []
    context = {
        "network": network,
        "interface_conf": settings.interface_conf,
        "interfaces": [_safe(i) for i in settings.interfaces],
        "run_as_user": _safe(settings.run_as_user),
        "run_as_group": _safe(settings.run_as_group),
        "lease_file": _safe(settings.lease_file),
        "dns_port": int(settings.dns_port),
        "upstream": [_safe(s) for s in upstream],
        "domain": domain,
        "hosts": host_views,
        "proxy": dhcp.mode == "proxy",
        "network_address": str(net.network_address),
        "netmask": str(net.netmask),
        "range": dhcp.range,
        "lease_time": _lease_time(dhcp.lease_time),
        "gateway": _safe(spec.gateway) if spec.gateway else None,
        "dns_servers": [_safe(s) for s in dhcp.dns or []],
        "ntp_servers": [_safe(s) for s in dhcp.ntp or []],
        "pxe": pxe,
        "tftp_root": tftp_root,
    }
    return _env.get_template("dnsmasq.conf.j2").render(**context)


def checksum(config: str) -> str:
    return hashlib.sha256(config.encode()).hexdigest()
