"""Registry operator: a managed CNCF distribution registry, or an existing one, for the rack."""

from __future__ import annotations


def main() -> None:
    """Console script ``trellis-registry-operator``: ``kopf run`` on this operator's handlers."""
    from trellis.opkit.entrypoint import run_kopf

    run_kopf("trellis.operators.registry.handlers")
