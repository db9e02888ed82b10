"""Console-script entry points: each operator is `kopf run` on its own handler module.

Extra command-line arguments are passed to kopf, so `trellis-network-operator --namespace rack`
or `--liveness http://0.0.0.0:8080/healthz` work as with `kopf run`.
"""

from __future__ import annotations

import sys

from kopf import cli as kopf_cli

_SCOPE_FLAGS = ("-n", "--namespace", "-A", "--all-namespaces")


def run_kopf(handler_module: str, argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if not any(a in _SCOPE_FLAGS or a.startswith("--namespace=") for a in args):
        args.append("--all-namespaces")
    if not any(a in ("--standalone", "--peering") or a.startswith("--peering=") for a in args):
        # One replica per operator (leader election is the Deployment's job); no peering CRD needed.
        args.append("--standalone")
    kopf_cli.main(["run", "-m", handler_module, *args], prog_name="kopf")  # type: ignore[attr-defined]
