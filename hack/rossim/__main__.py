"""python -m rossim --data-dir DIR --api-port N --ssh-port N [--api-tls-port N] [--control-port N]"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from pathlib import Path

from rossim.server import Simulator
from rossim.units import parse_size


def _port(text: str) -> int | None:
    return None if text in ("", "off", "none") else int(text)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="rossim", description="MikroTik RouterOS / RDS simulator")
    p.add_argument("--data-dir", type=Path, required=True, help="state file, host key and the /file tree")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--api-port", type=_port, default=8728, help="RouterOS API (0 = any free port, off)")
    p.add_argument("--api-tls-port", type=_port, default=None, help="api-ssl with a generated certificate")
    p.add_argument("--ssh-port", type=_port, default=2222)
    p.add_argument("--control-port", type=_port, default=None, help="loopback HTTP control API")
    p.add_argument("--rest-port", type=_port, default=None, help="RouterOS REST API subset (plain HTTP)")
    p.add_argument(
        "--user",
        action="append",
        default=[],
        metavar="NAME:PASSWORD[:GROUP]",
        help="add or update a user (group full|write|read); repeatable",
    )
    p.add_argument(
        "--authorized-key",
        action="append",
        default=[],
        metavar="NAME:PUBKEY_FILE",
        help="authorise an OpenSSH public key for a user; repeatable",
    )
    p.add_argument("--pool-size", help="capacity of the storage-pool disk, e.g. 1T (default 1T)")
    p.add_argument("--slot-max-length", type=int, help="longest /disk slot name accepted (default 32)")
    p.add_argument("--error-exit-status", type=int, choices=(0, 1), help="SSH exit status after an error")
    p.add_argument("--crlf", action="store_true", help="end CLI output lines with CRLF")
    p.add_argument("--no-empty", action="store_true", help="do not send !empty (RouterOS < 7.18)")
    p.add_argument(
        "--iscsi-portal",
        metavar="ADDR[:PORT]",
        help="serve iscsi-export disks as real iSCSI targets (a private tgtd) on this IPv4 address "
        "(port 3260 by default, 0 = a free port); off by default",
    )
    p.add_argument("--iscsi-control-port", type=int, help="tgtd management port (tgtd -C); default derived")
    p.add_argument("--log-level", default="WARNING")
    args = p.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    # clients hanging up is normal; paramiko would log every reset as an error
    logging.getLogger("paramiko").setLevel(logging.CRITICAL)

    settings: dict[str, object] = {}
    if args.pool_size:
        settings["pool_size"] = parse_size(args.pool_size)
    if args.slot_max_length:
        settings["slot_max_length"] = args.slot_max_length
    if args.error_exit_status is not None:
        settings["error_exit_status"] = args.error_exit_status
    if args.crlf:
        settings["crlf"] = True
    if args.no_empty:
        settings["emit_empty"] = False
    portal = None
    if args.iscsi_portal:
        from rossim.iscsi import parse_portal

        try:
            portal = parse_portal(args.iscsi_portal)
        except ValueError as exc:
            p.error(str(exc))
    sim = Simulator(
        args.data_dir,
        host=args.host,
        api_port=args.api_port,
        ssh_port=args.ssh_port,
        api_tls_port=args.api_tls_port,
        control_port=args.control_port,
        settings=settings,
        rest_port=args.rest_port,
        iscsi_portal=portal,
        iscsi_control_port=args.iscsi_control_port,
    )
    for spec in args.user:
        name, _, rest = spec.partition(":")
        password, _, group = rest.partition(":")
        sim.set_user(name, password, group or "full")
    for spec in args.authorized_key:
        name, _, path = spec.partition(":")
        user = sim.device.users.get(name)
        if user is None:
            p.error(f"--authorized-key for unknown user {name}")
        existing = list(user.get("keys", []))
        for line in Path(path).read_text().splitlines():
            if line.strip() and line.strip() not in existing:
                existing.append(line.strip())
        sim.set_user(name, None, user.get("group", "full"), existing)
    if not sim.device.users:
        sim.set_user("admin", "", "full")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        sim.start()
    except Exception as exc:
        from rossim.iscsi import TgtError

        if not isinstance(exc, TgtError):
            raise
        sim.stop()
        raise SystemExit(f"rossim: iSCSI target: {exc}") from None
    stop.wait()
    sim.stop()


if __name__ == "__main__":
    main()
