"""``trellis-baremetalhost-operator``: kopf run on the BareMetalHost handlers."""

from __future__ import annotations

from trellis.opkit.entrypoint import run_kopf


def main() -> None:
    run_kopf("trellis.operators.baremetalhost.handlers")


if __name__ == "__main__":
    main()
