"""TalosDevice operator and boot service: Talos Linux machines provisioned over PXE from Kubernetes."""

from __future__ import annotations


def main() -> None:
    """Console script ``trellis-talosdevice-operator``: ``kopf run`` on this operator's handlers."""
    from trellis.opkit.entrypoint import run_kopf

    run_kopf("trellis.operators.talosdevice.handlers")


def boot_service() -> None:
    """Console script ``trellis-boot-service``."""
    from trellis.operators.talosdevice.bootservice import main as serve

    serve()
