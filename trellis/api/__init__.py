"""Trellis API (trellis.dev/v1alpha1): pydantic models, the single source of truth for the CRDs."""

from __future__ import annotations

from trellis.api.baremetalhost import BareMetalHost, BareMetalHostSpec, BareMetalHostStatus
from trellis.api.common import TrellisResource
from trellis.api.isocdrom import ISOCDROM, ISOCDROMSpec, ISOCDROMStatus
from trellis.api.network import (
    DHCPReservation,
    DHCPReservationSpec,
    DHCPReservationStatus,
    Network,
    NetworkSpec,
    NetworkStatus,
)
from trellis.api.registry import Registry, RegistrySpec, RegistryStatus
from trellis.api.router import Router, RouterSpec, RouterStatus
from trellis.api.talos import (
    TalosCluster,
    TalosClusterSpec,
    TalosClusterStatus,
    TalosDevice,
    TalosDeviceSpec,
    TalosDeviceStatus,
)

KINDS: tuple[type[TrellisResource], ...] = (
    Router,
    Network,
    DHCPReservation,
    BareMetalHost,
    Registry,
    ISOCDROM,
    TalosCluster,
    TalosDevice,
)
BY_KIND: dict[str, type[TrellisResource]] = {k.resource.kind: k for k in KINDS}

__all__ = [
    "BY_KIND",
    "ISOCDROM",
    "KINDS",
    "BareMetalHost",
    "BareMetalHostSpec",
    "BareMetalHostStatus",
    "DHCPReservation",
    "DHCPReservationSpec",
    "DHCPReservationStatus",
    "ISOCDROMSpec",
    "ISOCDROMStatus",
    "Network",
    "NetworkSpec",
    "NetworkStatus",
    "Registry",
    "RegistrySpec",
    "RegistryStatus",
    "Router",
    "RouterSpec",
    "RouterStatus",
    "TalosCluster",
    "TalosClusterSpec",
    "TalosClusterStatus",
    "TalosDevice",
    "TalosDeviceSpec",
    "TalosDeviceStatus",
]
