"""``trellis-csi --mode controller|node|all``: the CSI driver's single executable."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import threading
from pathlib import Path

from trellis.csi import DRIVER_NAME, TOPOLOGY_KEY, logs, metrics, version
from trellis.csi.params import ParameterError, VolumeParams, check_address, check_base_path, check_nqn_prefix

log = logging.getLogger("csi")
# kubelet's plugin watcher directory (--root-dir /var/lib/kubelet)
REGISTRATION_DIR = "/var/lib/kubelet/plugins_registry"


def _bool(text: str) -> bool:
    if text.lower() in ("true", "yes", "1"):
        return True
    if text.lower() in ("false", "no", "0"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="trellis-csi", description=__doc__)
    p.add_argument("--mode", choices=("controller", "node", "all"), required=True)
    p.add_argument("--endpoint", default="unix:///csi/csi.sock")
    p.add_argument("--driver-name", default=DRIVER_NAME)
    p.add_argument("--node-id", default=os.environ.get("NODE_NAME") or socket.gethostname())
    p.add_argument("--topology", default="default", help=f"this RDS's value of the {TOPOLOGY_KEY} segment")
    p.add_argument("--workers", type=int, default=64, help="gRPC worker threads")
    p.add_argument(
        "--metrics-address", default=":9810", help="host:port for /metrics and /healthz ('' disables)"
    )
    p.add_argument(
        "--probe-timeout", type=float, default=15.0, help="/healthz: seconds the Probe call may take"
    )
    p.add_argument("--log-format", choices=("json", "text"), default="json")
    p.add_argument("--log-level", default="INFO")

    rds = p.add_argument_group("controller: RDS over SSH")
    rds.add_argument("--rds-address", help="SSH address of the RDS")
    rds.add_argument("--rds-ssh-port", type=int, default=22)
    rds.add_argument("--rds-user", default="trellis-csi")
    rds.add_argument(
        "--ssh-secret-dir",
        help="directory with known_hosts and password or ssh-privatekey (a mounted Secret)",
    )
    rds.add_argument("--ssh-pool-size", type=int, default=8)
    rds.add_argument("--ssh-command-timeout", type=float, default=60.0)
    rds.add_argument("--ssh-connect-timeout", type=float, default=10.0)
    rds.add_argument("--ssh-keepalive", type=int, default=15)
    rds.add_argument("--ssh-max-attempts", type=int, default=4)
    rds.add_argument("--snapshots", type=_bool, default=True, help="snapshots and clones (experimental)")

    vol = p.add_argument_group("volume defaults (StorageClass parameters override them)")
    vol.add_argument("--base-path", default="storage-pool/trellis-csi")
    vol.add_argument("--nqn-prefix", default="nqn.2000-02.com.mikrotik")
    vol.add_argument("--nvme-address", help="NVMe/TCP address of the RDS (default: --rds-address)")
    vol.add_argument("--nvme-port", type=int, default=4420)
    vol.add_argument("--fs-type", default="ext4", choices=("ext4", "xfs"))
    vol.add_argument("--ctrl-loss-tmo", type=int, default=-1)
    vol.add_argument("--reconnect-delay", type=int, default=5)
    vol.add_argument("--keep-alive-tmo", type=int, default=0)

    node = p.add_argument_group("node")
    node.add_argument("--transport", choices=("nvme", "loop"), default="nvme")
    node.add_argument("--loop-root", help="loop transport: the directory holding the RDS files")
    node.add_argument("--sysfs", default="/sys")
    node.add_argument("--host-nqn", help="NVMe host NQN (default: /etc/nvme/hostnqn via nvme-cli)")
    node.add_argument("--device-timeout", type=float, default=30.0)
    node.add_argument(
        "--registration-dir",
        help="kubelet's plugin registration directory, where the plugin serves <driver-name>-reg.sock "
        "for kubelet's plugin watcher (default: /var/lib/kubelet/plugins_registry in node mode, "
        "none in all mode; '' disables registration)",
    )
    node.add_argument(
        "--kubelet-registration-path",
        help="the CSI socket's path on the host, as kubelet dials it (default: the --endpoint path)",
    )
    return p


def _read_secret(directory: Path, name: str) -> str | None:
    path = directory / name
    return path.read_text() if path.is_file() else None


def build_controller(args: argparse.Namespace) -> tuple[object, object]:
    from trellis.csi.controller import ControllerService
    from trellis.csi.rds import Rds
    from trellis.routeros.cli import RouterOSCli
    from trellis.routeros.ssh import SSHConfig, SSHPool

    if not args.rds_address or not args.ssh_secret_dir:
        raise SystemExit("controller mode needs --rds-address and --ssh-secret-dir")
    secret = Path(args.ssh_secret_dir)
    known_hosts = _read_secret(secret, "known_hosts")
    if not known_hosts:
        raise SystemExit(f"{secret}/known_hosts is missing: the RDS host key must be pinned")
    password = _read_secret(secret, "password")
    config = SSHConfig(
        host=args.rds_address,
        port=args.rds_ssh_port,
        username=(_read_secret(secret, "username") or args.rds_user).strip(),
        known_hosts=known_hosts,
        password=password.rstrip("\n") if password else None,
        private_key=_read_secret(secret, "ssh-privatekey"),
        pool_size=args.ssh_pool_size,
        command_timeout=args.ssh_command_timeout,
        connect_timeout=args.ssh_connect_timeout,
        keepalive_interval=args.ssh_keepalive,
        max_attempts=args.ssh_max_attempts,
    )
    pool = SSHPool(config, on_command=metrics.observe_routeros)
    metrics.watch_pool(pool.stats)
    try:
        defaults = VolumeParams(
            base_path=check_base_path(args.base_path, "--base-path"),
            nqn_prefix=check_nqn_prefix(args.nqn_prefix, "--nqn-prefix"),
            nvme_address=check_address(args.nvme_address or args.rds_address, "--nvme-address"),
            nvme_port=args.nvme_port,
            fs_type=args.fs_type,
            ctrl_loss_tmo=args.ctrl_loss_tmo,
            reconnect_delay=args.reconnect_delay,
            keep_alive_tmo=args.keep_alive_tmo,
        )
    except ParameterError as exc:
        raise SystemExit(str(exc)) from None
    rds = Rds(RouterOSCli(pool))
    service = ControllerService(rds, defaults, {TOPOLOGY_KEY: args.topology}, snapshots=args.snapshots)
    return service, pool.check


def build_node(args: argparse.Namespace) -> object:
    from trellis.csi.node import NodeService
    from trellis.csi.transport.loop import LoopTransport
    from trellis.csi.transport.nvme import NvmeTransport

    if args.transport == "loop":
        if not args.loop_root:
            raise SystemExit("the loop transport needs --loop-root")
        transport: object = LoopTransport(args.loop_root)
    else:
        transport = NvmeTransport(args.sysfs, device_timeout=args.device_timeout, host_nqn=args.host_nqn)
    return NodeService(args.node_id, {TOPOLOGY_KEY: args.topology}, transport)  # type: ignore[arg-type]


def registration_dir(args: argparse.Namespace) -> Path | None:
    """Where to register with kubelet; None when this process does not (controller, dev, csi-sanity)."""
    if args.mode == "controller":
        return None
    value = args.registration_dir
    if value is None:
        # `all` runs the whole driver in one process for development and csi-sanity, with no kubelet.
        value = REGISTRATION_DIR if args.mode == "node" else ""
    return Path(value) if value else None


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    logs.configure(args.log_format, args.log_level)
    from trellis.csi.identity import IdentityService, probe_over_socket
    from trellis.csi.server import build_server

    controller, check = build_controller(args) if args.mode in ("controller", "all") else (None, None)
    node = build_node(args) if args.mode in ("node", "all") else None
    reg_dir = registration_dir(args)
    if reg_dir is not None:
        from trellis.csi.registration import Registration, RegistrationError, kubelet_endpoint

        try:
            reg_endpoint = kubelet_endpoint(args.kubelet_registration_path, args.endpoint)
        except RegistrationError as exc:
            raise SystemExit(str(exc)) from None
    identity = IdentityService(controller=controller is not None, check=check, name=args.driver_name)  # type: ignore[arg-type]
    if args.metrics_address:
        metrics.serve(args.metrics_address, healthy=probe_over_socket(args.endpoint, args.probe_timeout))
    server = build_server(
        args.endpoint, identity=identity, controller=controller, node=node, workers=args.workers
    )
    server.start()
    log.info("serving", extra={"endpoint": args.endpoint, "mode": args.mode, "version": version()})
    stop = threading.Event()
    refused: list[str] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    registration = None
    if reg_dir is not None:

        def on_refused(error: str) -> None:
            refused.append(error)
            stop.set()

        # After the CSI server: kubelet calls NodeGetInfo on the endpoint as soon as it registers.
        registration = Registration(reg_dir, args.driver_name, reg_endpoint, on_refused)
        try:
            registration.start()
        except RegistrationError as exc:
            server.stop(grace=0).wait()
            raise SystemExit(str(exc)) from None
    stop.wait()
    log.info("stopping")
    if registration is not None:
        registration.stop()
    server.stop(grace=5).wait()
    if refused:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
