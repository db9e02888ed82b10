"""StorageClass parameters and the volume context handed from the controller to the node.

Every parameter is validated here with a message naming the parameter, the value and the rule;
`ParameterError` maps to INVALID_ARGUMENT. Keys under ``csi.storage.k8s.io/`` belong to the
sidecars and are ignored; any other unknown key is refused so typos do not pass silently.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from trellis.csi.naming import MAX_NQN_BYTES, MAX_SLOT_LENGTH

FS_TYPES = ("ext4", "xfs")
_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)
_PATH_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_NQN_PREFIX = re.compile(r"^nqn\.\d{4}-\d{2}\.[A-Za-z0-9][A-Za-z0-9.-]*(:[A-Za-z0-9][A-Za-z0-9._-]*)*$")
SIDECAR_PREFIX = "csi.storage.k8s.io/"


class ParameterError(ValueError):
    """A StorageClass parameter or volume context value is invalid."""


def check_address(value: str, what: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        if _HOSTNAME.match(value):
            return value
    raise ParameterError(f"{what} {value!r} is neither an IP address nor a host name")


def check_base_path(value: str, what: str = "basePath") -> str:
    parts = value.strip("/").split("/")
    if len(parts) < 2 or not all(_PATH_PART.match(p) and p not in (".", "..") for p in parts):
        raise ParameterError(
            f"{what} {value!r} must be <pool>/<directory>[/...] of letters, digits, '.', '_' or '-' "
            "(the first component is the RDS pool's mount point)"
        )
    return "/".join(parts)


def check_nqn_prefix(value: str, what: str = "nqnPrefix") -> str:
    if not _NQN_PREFIX.match(value):
        raise ParameterError(f"{what} {value!r} must look like nqn.YYYY-MM.reverse.domain[:suffix]")
    if len(value) + 1 + MAX_SLOT_LENGTH > MAX_NQN_BYTES:
        raise ParameterError(f"{what} {value!r} is too long: NQNs are limited to {MAX_NQN_BYTES} bytes")
    return value


def _int(low: int, high: int) -> Callable[[str, str], int]:
    def check(value: str, what: str) -> int:
        try:
            number = int(value, 10)
        except ValueError:
            raise ParameterError(f"{what} {value!r} is not an integer") from None
        if not low <= number <= high:
            raise ParameterError(f"{what} {number} is outside {low}..{high}")
        return number

    return check


def _bool(value: str, what: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("true", "yes", "1"):
        return True
    if lowered in ("false", "no", "0"):
        return False
    raise ParameterError(f"{what} {value!r} must be true or false")


def _fs_type(value: str, what: str) -> str:
    if value not in FS_TYPES:
        raise ParameterError(f"{what} {value!r} is not supported; use one of {', '.join(FS_TYPES)}")
    return value


@dataclass(frozen=True)
class VolumeParams:
    """Where and how a volume lives; defaults come from the driver, StorageClasses override."""

    base_path: str
    nqn_prefix: str
    nvme_address: str
    nvme_port: int = 4420
    fs_type: str = "ext4"
    ctrl_loss_tmo: int = -1
    reconnect_delay: int = 5
    keep_alive_tmo: int = 0
    allow_copy: bool = True

    @property
    def pool(self) -> str:
        return self.base_path.split("/", 1)[0]


# StorageClass key -> (field, validator). `volumePath` is accepted as another name for basePath.
_FIELDS: dict[str, tuple[str, Callable[[str, str], Any]]] = {
    "rdsAddress": ("nvme_address", check_address),
    "nvmeAddress": ("nvme_address", check_address),
    "nvmePort": ("nvme_port", _int(1, 65535)),
    "fsType": ("fs_type", _fs_type),
    "basePath": ("base_path", check_base_path),
    "volumePath": ("base_path", check_base_path),
    "nqnPrefix": ("nqn_prefix", check_nqn_prefix),
    "ctrlLossTmo": ("ctrl_loss_tmo", _int(-1, 86400)),
    "reconnectDelay": ("reconnect_delay", _int(1, 3600)),
    "keepAliveTmo": ("keep_alive_tmo", _int(0, 3600)),
    "allowCopy": ("allow_copy", _bool),
}
KNOWN_PARAMETERS = tuple(_FIELDS)


def parse_parameters(parameters: Mapping[str, str], defaults: VolumeParams) -> VolumeParams:
    """``defaults`` overridden by the StorageClass ``parameters``; `ParameterError` if invalid.

    ``nvmeAddress`` wins over ``rdsAddress`` (which is the fallback NVMe address, as in rds-csi).
    """
    unknown = sorted(k for k in parameters if k not in _FIELDS and not k.startswith(SIDECAR_PREFIX))
    if unknown:
        raise ParameterError(
            f"unknown StorageClass parameter(s) {', '.join(unknown)}; known: {', '.join(KNOWN_PARAMETERS)}"
        )
    if "basePath" in parameters and "volumePath" in parameters:
        raise ParameterError("set basePath or volumePath (an alias), not both")
    changes: dict[str, Any] = {}
    for key in sorted(parameters, key=lambda k: k == "nvmeAddress"):
        if key.startswith(SIDECAR_PREFIX):
            continue
        field, check = _FIELDS[key]
        changes[field] = check(parameters[key].strip(), f"StorageClass parameter {key}")
    return replace(defaults, **changes)


# ---------------------------------------------------------------------------------------------
# Volume context: what CreateVolume returns and NodeStageVolume receives.

CTX_NQN = "nqn"
CTX_ADDRESS = "nvmeAddress"
CTX_PORT = "nvmePort"
CTX_FILE = "filePath"
CTX_FS = "fsType"
CTX_CTRL_LOSS = "ctrlLossTmo"
CTX_RECONNECT = "reconnectDelay"
CTX_KEEP_ALIVE = "keepAliveTmo"


@dataclass(frozen=True)
class VolumeContext:
    nqn: str
    nvme_address: str
    nvme_port: int
    file_path: str
    fs_type: str
    ctrl_loss_tmo: int
    reconnect_delay: int
    keep_alive_tmo: int

    def to_map(self) -> dict[str, str]:
        return {
            CTX_NQN: self.nqn,
            CTX_ADDRESS: self.nvme_address,
            CTX_PORT: str(self.nvme_port),
            CTX_FILE: self.file_path,
            CTX_FS: self.fs_type,
            CTX_CTRL_LOSS: str(self.ctrl_loss_tmo),
            CTX_RECONNECT: str(self.reconnect_delay),
            CTX_KEEP_ALIVE: str(self.keep_alive_tmo),
        }


_NQN = re.compile(r"^nqn\.[A-Za-z0-9._:-]{1,219}$")
_FILE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,1023}\.img$")


def parse_context(context: Mapping[str, str]) -> VolumeContext:
    """The node's view of a volume; every value is checked again before it reaches a command."""

    def need(key: str) -> str:
        value = context.get(key, "")
        if not value:
            raise ParameterError(f"volume context lacks {key!r}; was the volume created by this driver?")
        return value

    nqn_value = need(CTX_NQN)
    if not _NQN.match(nqn_value):
        raise ParameterError(f"volume context nqn {nqn_value!r} is not a valid NQN")
    file_path = need(CTX_FILE)
    if not _FILE.match(file_path) or ".." in file_path.split("/"):
        raise ParameterError(f"volume context filePath {file_path!r} is not a volume file path")
    return VolumeContext(
        nqn=nqn_value,
        nvme_address=check_address(need(CTX_ADDRESS), "volume context nvmeAddress"),
        nvme_port=_int(1, 65535)(need(CTX_PORT), "volume context nvmePort"),
        file_path=file_path,
        fs_type=_fs_type(context.get(CTX_FS) or "ext4", "volume context fsType"),
        ctrl_loss_tmo=_int(-1, 86400)(context.get(CTX_CTRL_LOSS) or "-1", "volume context ctrlLossTmo"),
        reconnect_delay=_int(1, 3600)(context.get(CTX_RECONNECT) or "5", "volume context reconnectDelay"),
        keep_alive_tmo=_int(0, 3600)(context.get(CTX_KEEP_ALIVE) or "0", "volume context keepAliveTmo"),
    )
