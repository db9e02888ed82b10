"""python -m rack serve|check — QEMU virtual servers behind IPMI/Redfish BMCs.

python -m rack serve --config rack.json --state-dir .run/rack [--address 127.0.0.1] [--control-port 16300]
python -m rack check [--firmware bios|uefi] [--timeout 60]
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from rack.check import check
from rack.ipmi import serve_forever
from rack.serve import Rack


class _Stop(Exception):
    pass


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise _Stop(signum)


def serve(args: argparse.Namespace) -> int:
    config = json.loads(args.config.read_text())
    rack = Rack(config, args.state_dir, args.address)
    signal.signal(signal.SIGTERM, _raise_stop)
    signal.signal(signal.SIGINT, _raise_stop)
    try:
        rack.start(args.control_port)
        print(json.dumps({"ready": True, "machines": sorted(rack.machines)}), flush=True)
        if any(r.bmc.protocol == "ipmi" for r in rack.machines.values()):
            serve_forever()
        else:
            threading.Event().wait()
    except _Stop:
        pass
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        failed = rack.stop()
        if failed:
            print(json.dumps({"cleanup_failed": failed}), file=sys.stderr, flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rack")
    sub = parser.add_subparsers(dest="command", required=True)
    srv = sub.add_parser("serve", help="run the machines and their BMCs until SIGTERM")
    srv.add_argument("--config", type=Path, required=True)
    srv.add_argument("--state-dir", type=Path, required=True)
    srv.add_argument("--address", default="127.0.0.1", help="where the BMCs and the control endpoint listen")
    srv.add_argument("--control-port", type=int)
    chk = sub.add_parser("check", help="exit 0 when QEMU can boot firmware here, 1 (with the reason) if not")
    chk.add_argument("--firmware", choices=("bios", "uefi"), default="bios")
    chk.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args(argv)
    if args.command == "serve":
        return serve(args)
    ok, reason = check(args.firmware, args.timeout)
    print(reason)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
