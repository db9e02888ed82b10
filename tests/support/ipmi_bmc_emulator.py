"""Entry point of the in-memory IPMI BMC emulator; the server itself is hack/rack/ipmi.py.

    python -m tests.support.ipmi_bmc_emulator --config systems.json --control-port 18000

The code moved to ``rack.ipmi`` so the QEMU rack (hack/rack) serves its machines through the same
RMCP+ server; this module keeps the command line that tests, benchmarks and hack/up.d use.
"""

from __future__ import annotations

import sys
from pathlib import Path

# `python -m tests.support...` runs from the repository root without hack/ on the path.
_HACK = str(Path(__file__).resolve().parents[2] / "hack")
if _HACK not in sys.path:
    sys.path.insert(0, _HACK)

from rack.ipmi import (  # noqa: E402
    BOOT_SELECTORS,
    EmulatedBmc,
    MemoryBackend,
    Registry,
    SystemState,
    build_fru,
    load_systems,
    main,
)

__all__ = [
    "BOOT_SELECTORS",
    "EmulatedBmc",
    "MemoryBackend",
    "Registry",
    "SystemState",
    "build_fru",
    "load_systems",
    "main",
]

if __name__ == "__main__":
    sys.exit(main())
