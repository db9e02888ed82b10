"""`trellis-network-operator` / `python -m operators.network`: run the network operator."""

from trellis.opkit.entrypoint import run_kopf


def main() -> None:
    run_kopf("operators.network.handlers")


if __name__ == "__main__":
    main()
