from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from rossim.cli.interp import Session
from rossim.device import Device


@pytest.fixture
def device(tmp_path: Path) -> Device:
    dev = Device(tmp_path / "rds")
    dev.users["admin"] = {"password": "", "group": "full", "keys": []}
    return dev


@pytest.fixture
def cli(device: Device) -> Callable[[str], str]:
    """Run a script in a fresh console session; returns stdout as the SSH client would see it."""

    def run(text: str) -> str:
        out, _ = Session(device, "admin").run(text)
        return "".join(line + "\n" for line in out)

    return run
