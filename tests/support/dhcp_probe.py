"""Send one DHCPDISCOVER and print every reply as JSON (run inside a test network namespace).

udhcpc keeps only the first offer and hides some options; this probe collects every offer
(a proxy-DHCP server's included) with its raw options, for assertions udhcpc cannot make.

    ip netns exec NS python -m tests.support.dhcp_probe --ifname eth0 --mac 52:54:00:00:00:01 \
        --option 60=PXEClient --option 93=0007 --wait 3
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import struct
import time

MAGIC = b"\x63\x82\x53\x63"


def discover(mac: str, options: dict[int, bytes]) -> tuple[bytes, int]:
    xid = int.from_bytes(os.urandom(4), "big")
    chaddr = bytes.fromhex(mac.replace(":", "")).ljust(16, b"\0")
    header = struct.pack("!BBBBIHH4s4s4s4s16s64s128s", 1, 1, 6, 0, xid, 0, 0x8000, b"\0" * 4, b"\0" * 4,
                         b"\0" * 4, b"\0" * 4, chaddr, b"", b"")  # fmt: skip
    opts = bytearray(MAGIC + bytes([53, 1, 1]))
    for code, value in options.items():
        opts += bytes([code, len(value)]) + value
    opts += bytes([55, 6, 1, 3, 6, 15, 66, 67, 255])
    return header + bytes(opts), xid


def parse(packet: bytes) -> dict[str, object]:
    yiaddr = socket.inet_ntoa(packet[16:20])
    siaddr = socket.inet_ntoa(packet[20:24])
    boot_file = packet[108:236].split(b"\0", 1)[0].decode(errors="replace")
    options: dict[str, str] = {}
    i = 240
    while i < len(packet) and packet[i] != 255:
        if packet[i] == 0:
            i += 1
            continue
        code, length = packet[i], packet[i + 1]
        options[str(code)] = packet[i + 2 : i + 2 + length].hex()
        i += 2 + length
    return {"yiaddr": yiaddr, "siaddr": siaddr, "file": boot_file, "options": options}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ifname", required=True)
    ap.add_argument("--mac", required=True)
    ap.add_argument("--option", action="append", default=[], help="CODE=HEX or CODE=text")
    ap.add_argument("--wait", type=float, default=3.0)
    args = ap.parse_args()
    options: dict[int, bytes] = {}
    for item in args.option:
        code, _, value = item.partition("=")
        try:
            options[int(code)] = bytes.fromhex(value)
        except ValueError:
            options[int(code)] = value.encode()
    packet, xid = discover(args.mac, options)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, args.ifname.encode())
    sock.bind(("0.0.0.0", 68))
    sock.sendto(packet, ("255.255.255.255", 67))
    deadline = time.monotonic() + args.wait
    replies = []
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            data, _ = sock.recvfrom(4096)
        except TimeoutError:
            break
        if len(data) > 240 and int.from_bytes(data[4:8], "big") == xid and data[236:240] == MAGIC:
            replies.append(parse(data))
    print(json.dumps(replies))


if __name__ == "__main__":
    main()
