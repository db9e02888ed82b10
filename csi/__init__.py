"""Trellis CSI driver for MikroTik ROSE Data Server (RDS): volumes are file-backed RDS disks
exported over NVMe/TCP, managed over SSH with the RouterOS CLI."""

from __future__ import annotations

from importlib import metadata

DRIVER_NAME = "rds.csi.trellis.dev"
TOPOLOGY_KEY = "topology.rds.csi.trellis.dev/rds"


def version() -> str:
    try:
        return metadata.version("trellis")
    except metadata.PackageNotFoundError:
        return "0.0.0+unknown"
