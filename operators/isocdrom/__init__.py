"""ISOCDROM operator: ISO images streamed to the RDS over SFTP and exported read-only over iSCSI."""

from __future__ import annotations


def main() -> None:
    """Console script ``trellis-isocdrom-operator``: ``kopf run`` on this operator's handlers."""
    from trellis.opkit.entrypoint import run_kopf

    run_kopf("trellis.operators.isocdrom.handlers")
