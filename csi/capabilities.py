"""Which volume capabilities (access type + access mode) the driver supports.

RWO, RWOP, ROX for both access types; RWX (MULTI_NODE_MULTI_WRITER) only for raw block
volumes, where a consumer such as KubeVirt live migration coordinates the two writers. A
filesystem mounted read-write on two nodes would corrupt it, so it is refused.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from trellis.csi.params import FS_TYPES
from trellis.csi.stubs import load

pb, _ = load()
Mode = pb.VolumeCapability.AccessMode

SUPPORTED_MODES = {
    Mode.SINGLE_NODE_WRITER: "SINGLE_NODE_WRITER",
    Mode.SINGLE_NODE_READER_ONLY: "SINGLE_NODE_READER_ONLY",
    Mode.MULTI_NODE_READER_ONLY: "MULTI_NODE_READER_ONLY",
    Mode.SINGLE_NODE_SINGLE_WRITER: "SINGLE_NODE_SINGLE_WRITER",
    Mode.SINGLE_NODE_MULTI_WRITER: "SINGLE_NODE_MULTI_WRITER",
    Mode.MULTI_NODE_MULTI_WRITER: "MULTI_NODE_MULTI_WRITER",
}
READ_ONLY_MODES = {Mode.SINGLE_NODE_READER_ONLY, Mode.MULTI_NODE_READER_ONLY}


def is_block(cap: Any) -> bool:
    return bool(cap.HasField("block"))


def problem(cap: Any) -> str | None:
    """Why ``cap`` is unsupported, or None."""
    if not cap.HasField("block") and not cap.HasField("mount"):
        return "a volume capability needs an access type (mount or block)"
    mode = cap.access_mode.mode
    if mode not in SUPPORTED_MODES:
        name = Mode.Mode.Name(mode) if mode in Mode.Mode.values() else str(mode)
        return f"access mode {name} is not supported"
    if mode == Mode.MULTI_NODE_MULTI_WRITER and not is_block(cap):
        return "MULTI_NODE_MULTI_WRITER (RWX) is supported for block volumes only"
    if cap.HasField("mount") and cap.mount.fs_type and cap.mount.fs_type not in FS_TYPES:
        return f"fsType {cap.mount.fs_type!r} is not supported; use one of {', '.join(FS_TYPES)}"
    return None


def first_problem(caps: Iterable[Any]) -> str | None:
    for cap in caps:
        reason = problem(cap)
        if reason:
            return reason
    return None


def wants_block(caps: Iterable[Any]) -> bool:
    return any(is_block(c) for c in caps)
