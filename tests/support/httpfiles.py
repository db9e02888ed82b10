"""A loopback HTTP file server with single-range support (what image downloads resume against),
and small ISO images built with the real xorriso."""

from __future__ import annotations

import hashlib
import http.server
import os
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_RANGE = re.compile(r"^bytes=(\d+)-$")


@dataclass
class FileServer:
    root: Path
    base_url: str
    ranged_requests: list[int]
    # False: Range headers are ignored (answers are always 200 with the whole file).
    honour_ranges: bool = True

    def url(self, name: str) -> str:
        return f"{self.base_url}/{name}"


@contextmanager
def serving(root: Path, host: str = "127.0.0.1") -> Iterator[FileServer]:
    ranged: list[int] = []
    state: list[FileServer] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            path = root / self.path.lstrip("/")
            if not path.is_file():
                self.send_error(404)
                return
            size = path.stat().st_size
            start = 0
            match = _RANGE.match(self.headers.get("Range", ""))
            if match and state[0].honour_ranges and int(match.group(1)) < size:
                start = int(match.group(1))
                ranged.append(start)
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
            else:
                self.send_response(200)
            self.send_header("Content-Length", str(size - start))
            self.send_header("Accept-Ranges", "bytes")
            self.end_headers()
            with open(path, "rb") as fh:
                fh.seek(start)
                with suppress(BrokenPipeError, ConnectionResetError):
                    shutil.copyfileobj(fh, self.wfile, 1024 * 1024)

    server = http.server.ThreadingHTTPServer((host, 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.append(FileServer(root, f"http://{host}:{server.server_address[1]}", ranged))
    try:
        yield state[0]
    finally:
        server.shutdown()
        server.server_close()


def make_iso(path: Path, label: str = "TRELLIS", payload_bytes: int = 64 * 1024) -> str:
    """Build a real ISO 9660 image with xorriso; returns its sha256."""
    content = path.parent / f"{path.stem}-content"
    content.mkdir(parents=True, exist_ok=True)
    (content / "README.TXT").write_text(f"{label} test image\n")
    (content / "PAYLOAD.BIN").write_bytes(os.urandom(payload_bytes))
    subprocess.run(
        ["xorriso", "-as", "mkisofs", "-quiet", "-V", label, "-o", str(path), str(content)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return hashlib.sha256(path.read_bytes()).hexdigest()
