"""iPXE scripts and dnsmasq snippets, rendered from Jinja2 templates.

Everything placed into a script is checked first: a value with whitespace, quotes or iPXE's
`${`/`||`/`&&` syntax could otherwise add commands to the script a machine executes.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import quote, urlencode

import jinja2

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("trellis.operators.talosdevice", "templates"),
    autoescape=False,  # iPXE and dnsmasq text, not HTML: values are checked instead
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)

# Kernel parameters Talos needs on metal (kernel reference), plus the recommended hardening.
REQUIRED_KERNEL_ARGS = ("talos.platform=metal", "slab_nomerge", "pti=on")
RECOMMENDED_KERNEL_ARGS = ("init_on_alloc=1", "init_on_free=1")
WIPE_KERNEL_ARG = "talos.experimental.wipe=system"

_SAFE_ARG = re.compile(r"^[A-Za-z0-9_.,:/=+@%-]+$")
_SAFE_URL = re.compile(r"^https?://[A-Za-z0-9._~:/?#\[\]@!*+,;=%&-]+$")
_SAFE_TEXT = re.compile(r"^[A-Za-z0-9 _.,:/()=+@%'-]*$")
_IPXE_ARCH = {"x86_64": "amd64", "i386": "amd64", "x86": "amd64", "amd64": "amd64", "arm64": "arm64"}


class UnsafeValue(ValueError):
    pass


def checked_arg(value: str) -> str:
    if not _SAFE_ARG.match(value):
        raise UnsafeValue(f"kernel argument {value!r} contains characters that are not allowed")
    return value


def checked_url(value: str) -> str:
    # A single & separates query parameters; && and || are iPXE operators.
    if not _SAFE_URL.match(value) or "${" in value or "&&" in value:
        raise UnsafeValue(f"URL {value!r} contains characters that are not allowed in a boot script")
    return value


def _checked_text(value: str) -> str:
    cleaned = value.replace("\n", " ")
    return cleaned if _SAFE_TEXT.match(cleaned) else re.sub(r"[^A-Za-z0-9 _.,:/()=+@%'-]", "?", cleaned)


def talos_arch(ipxe_arch: str | None, default: str = "amd64") -> str:
    """Talos' name for the architecture iPXE reports in ${buildarch} (i386 iPXE runs on x86-64)."""
    if not ipxe_arch:
        return default
    return _IPXE_ARCH.get(ipxe_arch.lower(), default)


@dataclass(frozen=True)
class AssetLayout:
    """Where kernel and initramfs live below the asset base URL.

    `trellis` is the layout of a PVC or HTTP mirror filled by hand (docs/talos.md): `<version>/`
    directories; `flat` has the files of one version directly below the URL (a cluster's own
    boot.assetsURL); `factory` is Image Factory's (`/image/<schematic>/<version>/kernel-<arch>`).
    """

    base_url: str
    layout: str = "trellis"

    def kernel(self, version: str, arch: str, schematic: str = "") -> str:
        return checked_url(self._path(version, arch, schematic, "kernel"))

    def initramfs(self, version: str, arch: str, schematic: str = "") -> str:
        return checked_url(self._path(version, arch, schematic, "initramfs"))

    def _path(self, version: str, arch: str, schematic: str, what: str) -> str:
        base = self.base_url.rstrip("/")
        version, arch = quote(checked_arg(version)), quote(checked_arg(arch))
        if self.layout == "factory":
            if not schematic:
                raise UnsafeValue("the factory asset layout needs an Image Factory schematic id")
            name = f"kernel-{arch}" if what == "kernel" else f"initramfs-{arch}.xz"
            return f"{base}/image/{quote(checked_arg(schematic))}/{version}/{name}"
        name = f"vmlinuz-{arch}" if what == "kernel" else f"initramfs-{arch}.xz"
        if self.layout == "flat":
            return f"{base}/{name}"
        return f"{base}/{version}/{name}"


@dataclass(frozen=True)
class TalosBoot:
    namespace: str
    name: str
    cluster: str
    role: str
    mac: str
    kernel_url: str
    initramfs_url: str
    config_url: str
    wipe: bool = False
    extra_args: tuple[str, ...] = ()
    console_args: tuple[str, ...] = ()


def config_url(public_url: str, mac: str, token: str) -> str:
    """The talos.config URL. `${uuid}` is expanded by iPXE (or by Talos when booted otherwise)."""
    query = urlencode({"mac": mac, "token": token}, safe=":")
    return f"{checked_url(public_url.rstrip('/') + '/config')}?{query}&uuid=${{uuid}}"


def kernel_args(boot: TalosBoot) -> list[str]:
    args = [*REQUIRED_KERNEL_ARGS, *RECOMMENDED_KERNEL_ARGS]
    args += [checked_arg(a) for a in boot.console_args]
    args += [checked_arg(a) for a in boot.extra_args]
    if boot.wipe:
        args.append(WIPE_KERNEL_ARG)
    # The config URL is built here from checked parts; only `${uuid}` is meant for expansion.
    url = boot.config_url
    if not _SAFE_URL.match(url.replace("${uuid}", "")) or "&&" in url or "${" in url.replace("${uuid}", ""):
        raise UnsafeValue(f"config URL {url!r} is not safe for a boot script")
    args.append(f"talos.config={url}")
    return args


def talos_script(boot: TalosBoot) -> str:
    return _ENV.get_template("talos.ipxe.j2").render(
        namespace=boot.namespace,
        name=boot.name,
        cluster=boot.cluster,
        role=boot.role,
        mac=boot.mac,
        wipe=boot.wipe,
        kernel_url=checked_url(boot.kernel_url),
        initramfs_url=checked_url(boot.initramfs_url),
        kernel_args=kernel_args(boot),
    )


def exit_script(reason: str, message: str, pause: int = 3) -> str:
    """Leave iPXE so the firmware tries its next boot device (the local disk)."""
    return _ENV.get_template("exit.ipxe.j2").render(
        reason=_checked_text(reason), message=_checked_text(message), pause=int(pause)
    )


def entry_script(public_url: str) -> str:
    return _ENV.get_template("entry.ipxe.j2").render(public_url=checked_url(public_url.rstrip("/")))


@dataclass(frozen=True)
class DnsmasqSnippet:
    public_url: str
    mode: str = "proxy"  # proxy | server
    network: str = ""  # proxy mode: the segment's network address
    range_start: str = ""
    range_end: str = ""
    netmask: str = ""
    lease_time: str = "12h"
    interface: str = ""
    tftp_root: str = "/var/lib/tftpboot"
    tftp_server: str = ""
    bios_file: str = "undionly.kpxe"
    efi_file: str = "ipxe.efi"
    arm64_efi_file: str = "ipxe-arm64.efi"
    prompt_timeout: int = 0
    # UEFI HTTP boot clients (arch 16) load an EFI binary, not a script: point at an ipxe.efi.
    http_boot_url: str = ""


def dnsmasq_snippet(snippet: DnsmasqSnippet) -> str:
    if snippet.mode not in ("proxy", "server"):
        raise UnsafeValue("mode must be proxy or server")
    addresses = [snippet.network] if snippet.mode == "proxy" else [snippet.range_start, snippet.range_end]
    if not all(addresses):
        raise UnsafeValue(f"{snippet.mode} mode needs its addresses")
    for value in [*addresses, snippet.tftp_server, snippet.netmask]:
        if value:
            ipaddress.ip_address(value)
    for value in (
        snippet.interface,
        snippet.tftp_root,
        snippet.bios_file,
        snippet.efi_file,
        snippet.arm64_efi_file,
    ):
        if value:
            checked_arg(value)
    checked_arg(snippet.lease_time)
    entry = checked_url(snippet.public_url.rstrip("/") + "/boot.ipxe")
    return _ENV.get_template("dnsmasq.conf.j2").render(
        mode=snippet.mode,
        network=snippet.network,
        range_start=snippet.range_start,
        range_end=snippet.range_end,
        netmask=snippet.netmask or "255.255.255.0",
        lease_time=snippet.lease_time,
        interface=snippet.interface,
        tftp_root=snippet.tftp_root,
        tftp_server=snippet.tftp_server,
        bios_file=snippet.bios_file,
        efi_file=snippet.efi_file,
        arm64_efi_file=snippet.arm64_efi_file,
        prompt_timeout=int(snippet.prompt_timeout),
        entry_url=entry,
        http_boot_url=checked_url(snippet.http_boot_url) if snippet.http_boot_url else "",
    )
