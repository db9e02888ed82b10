"""`trellis-network-operator` / `python -m trellis.operators.network`: run the network operator."""

from trellis.opkit.entrypoint import run_kopf


def main() -> None:
    run_kopf("trellis.operators.network.handlers")


if __name__ == "__main__":
    main()
