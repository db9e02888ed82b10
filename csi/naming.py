"""Names on the RDS: volume and snapshot ids (= disk slots), NQNs, file paths and sizes.

RouterOS ``/disk`` items have no comment or label, so everything the driver needs to recognise
its own disks is in the slot and the file name:

* volume ``csi-<28 hex of sha256(request name)>``, file ``<pool>/<dir>/<id>.img``;
* snapshot ``snap-<27 hex>``, file ``<dir of source>/<snap id>--<source id>--<unix time>.img``.

Both ids are 32 characters, the slot length limit reported for RouterOS (unconfirmed on
hardware, hence the one constant below).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

MAX_SLOT_LENGTH = 32  # GUESS: "slot names are limited to 32 characters" (one driver's claim)
VOLUME_PREFIX = "csi-"
SNAPSHOT_PREFIX = "snap-"
VOLUME_ID = re.compile(r"^csi-[0-9a-f]{28}$")
SNAPSHOT_ID = re.compile(r"^snap-[0-9a-f]{27}$")
SNAPSHOT_FILE = re.compile(r"(?:^|/)(snap-[0-9a-f]{27})--(csi-[0-9a-f]{28})--(\d{1,12})\.img$")
MAX_NQN_BYTES = 223  # NVMe base specification

MIB = 1 << 20
GIB = 1 << 30
# Sizes are sent in bytes, rounded up to a whole MiB (GUESS: allocation granularity on the RDS).
SIZE_GRANULARITY = MIB
MIN_VOLUME_BYTES = GIB
DEFAULT_VOLUME_BYTES = GIB


def _digest(name: str, length: int) -> str:
    return hashlib.sha256(name.encode("utf-8")).hexdigest()[:length]


def volume_id(request_name: str) -> str:
    return VOLUME_PREFIX + _digest(request_name, MAX_SLOT_LENGTH - len(VOLUME_PREFIX))


def snapshot_id(request_name: str) -> str:
    return SNAPSHOT_PREFIX + _digest(request_name, MAX_SLOT_LENGTH - len(SNAPSHOT_PREFIX))


def is_volume_id(value: str) -> bool:
    return bool(VOLUME_ID.match(value))


def is_snapshot_id(value: str) -> bool:
    return bool(SNAPSHOT_ID.match(value))


def nqn(prefix: str, slot: str) -> str:
    return f"{prefix}:{slot}"


def volume_file(base_path: str, vol_id: str) -> str:
    """``<pool>/<dir>/<id>.img``; RouterOS file names carry no leading slash."""
    return f"{base_path.strip('/')}/{vol_id}.img"


def volume_file_pattern(vol_id: str) -> str:
    """A RouterOS regex matching exactly this volume's file wherever its base path is."""
    return f"/{vol_id}\\.img$"


def snapshot_file(source_file: str, snap_id: str, source_id: str, created: int) -> str:
    directory = source_file.strip("/").rsplit("/", 1)[0]
    return f"{directory}/{snap_id}--{source_id}--{created}.img"


def snapshot_file_pattern(snap_id: str) -> str:
    return f"/{snap_id}--csi-[0-9a-f]+--[0-9]+\\.img$"


@dataclass(frozen=True)
class SnapshotFile:
    snapshot_id: str
    source_id: str
    created: int


def parse_snapshot_file(path: str) -> SnapshotFile | None:
    match = SNAPSHOT_FILE.search(path)
    if match is None:
        return None
    return SnapshotFile(match.group(1), match.group(2), int(match.group(3)))


class CapacityError(ValueError):
    """The requested range cannot be met (maps to OUT_OF_RANGE)."""


def round_capacity(required: int, limit: int) -> int:
    """The size to allocate for a request: deterministic, ≥ required, ≤ limit when one is set.

    A request with neither bound gets `DEFAULT_VOLUME_BYTES`; anything smaller than
    `MIN_VOLUME_BYTES` is raised to it; sizes are rounded up to `SIZE_GRANULARITY`.
    """
    if required < 0 or limit < 0:
        raise CapacityError("capacity bounds must not be negative")
    if limit and required > limit:
        raise CapacityError(f"required_bytes {required} exceeds limit_bytes {limit}")
    size = max(required or DEFAULT_VOLUME_BYTES, MIN_VOLUME_BYTES)
    size = -(-size // SIZE_GRANULARITY) * SIZE_GRANULARITY
    if limit and size > limit:
        raise CapacityError(
            f"the smallest volume this driver creates for that request is {size} bytes, "
            f"above limit_bytes {limit}"
        )
    return size


def fits(size: int, required: int, limit: int) -> bool:
    """Whether an existing volume of ``size`` satisfies a request's capacity range."""
    return size >= required and (not limit or size <= limit)
