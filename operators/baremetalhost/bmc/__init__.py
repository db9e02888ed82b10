"""BMC drivers behind one interface (``BMCDriver``), chosen by the address scheme."""

from __future__ import annotations

from dataclasses import dataclass

from trellis.operators.baremetalhost.bmc.address import AddressError, BMCAddress, parse_address
from trellis.operators.baremetalhost.bmc.base import (
    AuthenticationError,
    BMCDriver,
    BMCError,
    BootDevice,
    BootOverride,
    CertificateError,
    Credentials,
    Inventory,
    ProtocolError,
    UnreachableError,
    UnsupportedError,
)
from trellis.operators.baremetalhost.bmc.ipmi import IpmitoolDriver
from trellis.operators.baremetalhost.bmc.redfish import RedfishDriver

__all__ = [
    "AddressError",
    "AuthenticationError",
    "BMCAddress",
    "BMCDriver",
    "BMCError",
    "BootDevice",
    "BootOverride",
    "CertificateError",
    "Credentials",
    "DriverOptions",
    "Inventory",
    "ProtocolError",
    "UnreachableError",
    "UnsupportedError",
    "connect",
    "parse_address",
]


@dataclass(frozen=True)
class DriverOptions:
    verify_certificate: bool = True
    ca_file: str | None = None
    redfish_auth: str = "auto"
    ipmi_timeout: float = 2.0
    ipmi_retries: int = 1
    redfish_timeout: float = 15.0


def connect(
    address: str | BMCAddress, credentials: Credentials, options: DriverOptions | None = None
) -> BMCDriver:
    """A driver for the address; raises AddressError for addresses no driver handles."""
    parsed = parse_address(address) if isinstance(address, str) else address
    opts = options or DriverOptions()
    if parsed.driver == "ipmi":
        return IpmitoolDriver(parsed, credentials, timeout=opts.ipmi_timeout, retries=opts.ipmi_retries)
    return RedfishDriver(
        parsed,
        credentials,
        verify_certificate=opts.verify_certificate,
        ca_file=opts.ca_file,
        auth=opts.redfish_auth,
        timeout=opts.redfish_timeout,
    )
