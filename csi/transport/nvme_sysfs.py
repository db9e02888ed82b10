"""Finding NVMe namespaces by subsystem NQN in sysfs, and reading nvme-cli's JSON output.

sysfs is the primary source (its layout does not drift between nvme-cli versions):

* ``class/nvme-subsystem/nvme-subsysN/subsysnqn`` names the subsystem;
* with native multipath its namespaces are children ``nvmeXnY`` of the subsystem directory;
  without it they sit under each controller (``class/nvme/nvmeK/nvmeKnY`` or ``nvmeKcLnY``);
* ``class/block/<ns>/nsid`` tells the namespace id (an RDS export has exactly one, nsid 1).

``nvme list-subsys -o json`` parsing (both 1.x and 2.x shapes) is the fallback for finding a
subsystem's controllers when sysfs has no subsystem class (very old kernels).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_NAMESPACE = re.compile(r"^nvme\d+n\d+$")
_PATH_NAMESPACE = re.compile(r"^nvme\d+c\d+n\d+$")
_CONTROLLER = re.compile(r"^nvme\d+$")
RDS_NSID = 1


@dataclass(frozen=True)
class Subsystem:
    name: str
    nqn: str
    path: Path


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def subsystems(sysfs: Path) -> list[Subsystem]:
    base = sysfs / "class" / "nvme-subsystem"
    if not base.is_dir():
        return []
    found = []
    for entry in sorted(base.iterdir()):
        nqn = _read(entry / "subsysnqn")
        if nqn:
            found.append(Subsystem(entry.name, nqn, entry))
    return found


def controllers(sysfs: Path, subsystem: Subsystem) -> list[str]:
    return sorted(e.name for e in subsystem.path.iterdir() if _CONTROLLER.match(e.name))


def namespaces(sysfs: Path, subsystem: Subsystem) -> list[str]:
    """Block device names of the subsystem's namespace ``RDS_NSID``, preferred first.

    The multipath head ``nvmeXnY`` comes before per-path ``nvmeXcYnZ`` devices, which must not
    be mounted directly when native multipath is on.
    """
    heads = [e.name for e in subsystem.path.iterdir() if _NAMESPACE.match(e.name)]
    per_controller = []
    for ctrl in controllers(sysfs, subsystem):
        ctrl_dir = sysfs / "class" / "nvme" / ctrl
        if ctrl_dir.is_dir():
            per_controller += [e.name for e in ctrl_dir.iterdir() if _NAMESPACE.match(e.name)]
            per_controller += [e.name for e in ctrl_dir.iterdir() if _PATH_NAMESPACE.match(e.name)]
    ordered = sorted(set(heads)) + [n for n in sorted(set(per_controller)) if n not in heads]
    ordered.sort(key=lambda name: bool(_PATH_NAMESPACE.match(name)))

    def nsid_ok(name: str) -> bool:
        nsid = _read(sysfs / "class" / "block" / name / "nsid")
        return not nsid or nsid == str(RDS_NSID)

    return [n for n in ordered if nsid_ok(n)]


def find_subsystems(sysfs: Path, nqn: str) -> list[Subsystem]:
    return [s for s in subsystems(sysfs) if s.nqn == nqn]


def nqns_for_volume(sysfs: Path, volume_id: str) -> list[str]:
    """NQNs of connected subsystems exporting ``volume_id`` (``<prefix>:<id>`` or the bare slot)."""
    return sorted({s.nqn for s in subsystems(sysfs) if s.nqn == volume_id or s.nqn.endswith(":" + volume_id)})


def find_namespace(sysfs: Path, nqn: str) -> str | None:
    for subsystem in find_subsystems(sysfs, nqn):
        names = namespaces(sysfs, subsystem)
        if names:
            return names[0]
    return None


# ---------------------------------------------------------------------------------------------
# nvme-cli JSON


def parse_list_subsys(text: str) -> dict[str, list[str]]:
    """NQN -> controller names from ``nvme list-subsys -o json`` (nvme-cli 1.x or 2.x)."""
    if not text.strip():
        return {}
    data: Any = json.loads(text)
    hosts = data if isinstance(data, list) else [data]
    result: dict[str, list[str]] = {}
    for host in hosts:
        entries = host.get("Subsystems", []) if isinstance(host, dict) else []
        current: str | None = None
        for entry in entries:
            # 1.x splits one subsystem over two objects: {"Name","NQN"} then {"Paths":[...]}.
            if "NQN" in entry:
                current = entry["NQN"]
                result.setdefault(current, [])
            for path in entry.get("Paths", []):
                if current is not None and path.get("Name"):
                    result[current].append(path["Name"])
    return result


def parse_list(text: str) -> list[dict[str, Any]]:
    """Devices from ``nvme list -o json``: DevicePath, NameSpace, SerialNumber, PhysicalSize, ..."""
    if not text.strip():
        return []
    data = json.loads(text)
    return [d for d in data.get("Devices", []) if isinstance(d, dict) and "DevicePath" in d]


ALREADY_CONNECTED = re.compile(r"already conn+ected", re.IGNORECASE)
