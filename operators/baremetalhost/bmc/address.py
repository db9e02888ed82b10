"""Parsing of ``spec.bmc.address``: the URL scheme picks the driver, as in metal3.

    ipmi://host[:port]                          IPMI 2.0 LAN+, port 623 by default
    host[:port]                                 no scheme means IPMI
    redfish://host[:port]/redfish/v1/Systems/1  Redfish over HTTPS
    redfish+https://...                         the same, spelled out
    redfish+http://...                          Redfish over plain HTTP

A Redfish address without a system path is accepted when the service has exactly one system.
"""

from __future__ import annotations

import ipaddress
import re
import urllib.parse
from dataclasses import dataclass

IPMI_DEFAULT_PORT = 623
_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)
_REDFISH_SCHEMES = {"redfish": "https", "redfish+https": "https", "redfish+http": "http"}
_PRIVILEGES = ("CALLBACK", "USER", "OPERATOR", "ADMINISTRATOR")


class AddressError(ValueError):
    """The address cannot be used: unknown scheme, bad host or port."""


@dataclass(frozen=True)
class BMCAddress:
    driver: str  # "ipmi" or "redfish"
    host: str
    port: int | None
    transport: str | None = None  # redfish: "http" or "https"
    system_path: str | None = None  # redfish: /redfish/v1/Systems/<id>
    privilege: str = "ADMINISTRATOR"  # ipmi session privilege level

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        port = f":{self.port}" if self.port else ""
        return f"{self.transport}://{host}{port}"


def _check_host(host: str | None, raw: str) -> str:
    if not host:
        raise AddressError(f"BMC address {raw!r} has no host")
    try:
        ipaddress.ip_address(host)
        return host
    except ValueError:
        pass
    if not _HOSTNAME.match(host):
        raise AddressError(f"BMC address {raw!r}: {host!r} is neither an IP address nor a DNS name")
    return host


def parse_address(raw: str) -> BMCAddress:
    text = raw.strip()
    if not text:
        raise AddressError("BMC address is empty")
    if "://" not in text:
        text = "ipmi://" + text
    parsed = urllib.parse.urlsplit(text)
    scheme = parsed.scheme.lower()
    try:
        port = parsed.port
    except ValueError as exc:
        raise AddressError(f"BMC address {raw!r} has an invalid port") from exc
    if port == 0:
        raise AddressError(f"BMC address {raw!r} has an invalid port")
    if parsed.username or parsed.password:
        raise AddressError("BMC address must not carry credentials; use the credentials Secret")
    host = _check_host(parsed.hostname, raw)
    if scheme == "ipmi":
        if parsed.path not in ("", "/"):
            raise AddressError(f"IPMI address {raw!r} must not have a path")
        query = urllib.parse.parse_qs(parsed.query)
        privilege = (query.get("privilegelevel") or ["ADMINISTRATOR"])[0].upper()
        if privilege not in _PRIVILEGES:
            raise AddressError(f"IPMI privilegelevel must be one of {', '.join(_PRIVILEGES)}")
        return BMCAddress("ipmi", host, port or IPMI_DEFAULT_PORT, privilege=privilege)
    if scheme in _REDFISH_SCHEMES:
        path = parsed.path.rstrip("/") or None
        if path is not None and not path.startswith("/redfish/v1/Systems/"):
            raise AddressError(f"Redfish address {raw!r}: the path must be /redfish/v1/Systems/<id>")
        return BMCAddress("redfish", host, port, transport=_REDFISH_SCHEMES[scheme], system_path=path)
    raise AddressError(
        f"unknown BMC address scheme {parsed.scheme!r}: use ipmi://, redfish://, redfish+http:// or redfish+https://"
    )
