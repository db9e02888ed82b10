"""Trellis: Kubernetes operators and a CSI driver for a MikroTik RouterOS / RDS / Talos rack."""

__version__ = "0.1.0"
GROUP = "trellis.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
