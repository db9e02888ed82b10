"""/disk (ROSE storage, file-backed disks with NVMe/TCP and iSCSI export) and /file."""

from __future__ import annotations

import re
import time
from typing import Any

from rossim import errors
from rossim.device import Arg, Device
from rossim.hooks import Hooks, next_free_name, pinned, require_unique
from rossim.schema import Field, Flag, Menu, View, disabled_flag

SHRINK = "failure: file-size can not be decreased"  # GUESS
DISK_TYPES = (
    "raid",
    "nvme-tcp",
    "iscsi",
    "nfs",
    "smb",
    "partition",
    "tmpfs",
    "ramdisk",
    "crypted",
    "sshfs",
    "file",
    "hardware",
)
# UNCONFIRMED: the characters RouterOS allows in a slot name; we accept what a file name would.
_SLOT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
IQN_PREFIX = "iqn.2000-02.com.mikrotik:"


def _is_file(v: View) -> bool:
    return v.get("type") == "file"


def _nvme(v: View) -> bool:
    return bool(v.get("nvme-tcp-export"))


def _iscsi(v: View) -> bool:
    return bool(v.get("iscsi-export"))


def _mounted(v: View) -> bool:
    return bool(v.get("mount-point"))


def _of_type(kind: str) -> Any:
    return lambda v: v.get("type") == kind


DISK_FIELDS = (
    Field("type", "enum", choices=DISK_TYPES, required=True),
    Field("slot", quoted=True),
    Field("slot-default", readonly=True, quoted=True),
    Field("parent"),
    Field("fs", readonly=True),
    Field("model", readonly=True, quoted=True),
    Field("size", "int", readonly=True, cli="grouped", break_before=True),
    Field("free", "int", readonly=True, cli="grouped", visible=_mounted),
    Field("use", readonly=True, visible=_mounted),
    Field("mount-point", readonly=True, visible=_mounted),
    Field("state", readonly=True, detail=False),
    Field("mounted", "bool", readonly=True, detail=False),
    Field("block-device", "bool", readonly=True, detail=False),
    Field("mount-point-template"),
    Field("mount-filesystem", "bool", default=True),
    Field("mount-read-only", "bool", default=False),
    Field("compress", "bool", default=False),
    Field("sector-size", "int", readonly=True),
    Field("raid-master", default="none"),
    Field("tmpfs-max-size", "size", cli="human", visible=_of_type("tmpfs")),
    Field("iscsi-address", "ip", visible=_of_type("iscsi")),
    Field("iscsi-port", "int", lo=1, hi=65535, visible=_of_type("iscsi")),
    Field("iscsi-iqn", quoted=True, visible=_of_type("iscsi")),
    Field("nvme-tcp-address", "ip", visible=_of_type("nvme-tcp")),
    Field("nvme-tcp-port", "int", lo=1, hi=65535, visible=_of_type("nvme-tcp")),
    Field("nvme-tcp-nqn", quoted=True, visible=_of_type("nvme-tcp")),
    Field("nvme-tcp-host-name", quoted=True, visible=_of_type("nvme-tcp")),
    Field("nvme-tcp-export", "bool", default=False),
    Field("nvme-tcp-server-port", "int", default=4420, lo=1, hi=65535, visible=_nvme),
    Field("nvme-tcp-server-nqn", quoted=True, visible=_nvme),
    Field("nvme-tcp-server-allow-host-name", quoted=True, default="", visible=_nvme),
    Field("nvme-tcp-server-password", write_only=True),
    Field("iscsi-export", "bool", default=False),
    Field("iscsi-server-port", "int", default=3260, lo=1, hi=65535, visible=_iscsi),
    Field("iscsi-server-iqn", quoted=True, visible=_iscsi),
    Field("nfs-sharing", "bool", default=False),
    Field("smb-sharing", "bool", default=False),
    Field("media-sharing", "bool", default=False),
    Field("media-interface", default="none"),
    Field("swap", "bool", default=False),
    Field("file-path", bare_in_detail=True, visible=_is_file, break_before=True),
    Field("file-size", "size", cli="human", visible=_is_file, break_before=True),
    Field("file-offset", "int", default=0, visible=_is_file),
    Field("copy-from", write_only=True),
    Field("disabled", "bool", default=False, detail=False),
)


class DiskHooks(Hooks):
    add_only = frozenset({"type", "file-path", "copy-from"})

    def computed(self, device: Device, num: int, view: View) -> dict[str, Any]:
        slot = str(view.get("slot", ""))
        out: dict[str, Any] = {"slot-default": ""}
        if view.get("nvme-tcp-server-nqn") is None:
            out["nvme-tcp-server-nqn"] = slot
        if view.get("iscsi-server-iqn") is None:
            out["iscsi-server-iqn"] = IQN_PREFIX + slot
        if device.iscsi is not None and "iscsi-server-port" not in device.table("disk").items.get(num, {}):
            # the port clients must dial is the simulator's one real portal
            out["iscsi-server-port"] = device.iscsi.port
        if view.get("type") == "file":
            rel = _rel(str(view.get("file-path", "")))
            actual = device.storage.size(rel) if rel else None
            size = actual if actual is not None else int(view.get("file-size") or 0)
            out.update(parent=view.get("parent", ""), fs="-", model=view.get("file-path"), size=size)
            out.update({"file-size": size, "sector-size": 512, "mounted": False, "block-device": True})
        elif "pool-size" in view:
            mount = str(view.get("mount-point"))
            capacity = int(view["pool-size"])
            free = device.storage.free(mount)
            out.update(parent=view.get("parent", "none"), fs="btrfs", model=view.get("model", "RAID1"))
            out.update(size=capacity, free=free, use=f"{round((capacity - free) * 100 / capacity)}%")
            out.update({"sector-size": 4096, "mounted": True, "block-device": True, "state": "clean"})
        else:
            out.update(parent=view.get("parent", "none"), fs="-", model="", size=0, mounted=False)
            out["block-device"] = False
        return out

    def validate(self, device: Device, num: int, item: dict[str, Any], old: dict[str, Any] | None) -> None:
        kind = item.get("type")
        if item.get("slot") is None:
            taken = {str(v.get("slot")) for v in device.table("disk").items.values()}
            item["slot"] = next_free_name(device, str(kind), taken)
        slot = str(item["slot"])
        if not _SLOT.fullmatch(slot) or len(slot) > device.settings.slot_max_length:
            raise pinned(errors.INVALID_VALUE.format(arg="slot"), "slot", errors.CAT_ARGUMENT)
        require_unique(device, "disk", num, item, ("slot",), errors.NAME_EXISTS)
        if item.get("compress") and "pool-size" not in item:
            raise pinned(errors.COMPRESSION_BTRFS, "compress")
        if kind == "tmpfs" and int(item.get("tmpfs-max-size") or 0) > device.settings.total_memory:
            raise pinned(errors.TMPFS_TOO_BIG, "tmpfs-max-size")
        if item.get("nvme-tcp-export"):
            nqn = item.get("nvme-tcp-server-nqn") or slot
            for n, other in device.table("disk").items.items():
                if (
                    n != num
                    and other.get("nvme-tcp-export")
                    and (other.get("nvme-tcp-server-nqn") or other.get("slot")) == nqn
                ):
                    raise pinned(errors.ALREADY_HAVE, "nvme-tcp-server-nqn")
        if kind == "file":
            self._validate_file(device, num, item, old)

    def _validate_file(
        self, device: Device, num: int, item: dict[str, Any], old: dict[str, Any] | None
    ) -> None:
        storage = device.storage
        if not item.get("file-path"):
            raise pinned(errors.INVALID_PARAMETER, "file-path")
        rel = _rel(str(item["file-path"]))
        if storage.pool_of(rel) is None:
            raise pinned(errors.INVALID_PARAMETER, "file-path")
        item["_backing"] = rel
        require_unique(device, "disk", num, item, ("_backing",), errors.ALREADY_HAVE)
        current = storage.size(rel)
        wanted = item.get("file-size")
        if old is None:
            source = item.get("copy-from")
            if source is not None:
                src_num = _resolve_disk(device, str(source))
                src = device.table("disk").items[src_num]
                src_rel = _rel(str(src.get("file-path", "")))
                src_size = storage.size(src_rel) if src.get("type") == "file" else None
                if src_size is None:
                    raise pinned(errors.no_match("copy-from").message, "copy-from", errors.CAT_ARGUMENT)
                if current is not None:
                    raise pinned(errors.FILE_EXISTS, "file-path")
                size = max(src_size, int(wanted or 0))
                storage.reserve(rel, size)
                item["copy-from"] = src_rel
                item["file-size"] = size
                return
            if current is None and wanted is None:
                raise pinned(errors.INVALID_PARAMETER, "file-size")
            size = max(current or 0, int(wanted or 0))
            try:
                storage.reserve(rel, size - (current or 0))
            except errors.RosError as exc:
                raise pinned(exc.message, "file-size") from None
            item["file-size"] = size
            return
        if wanted is not None and wanted != old.get("file-size"):
            have = current or 0
            if wanted < have:
                raise pinned(SHRINK, "file-size")
            try:
                storage.reserve(rel, wanted - have)
            except errors.RosError as exc:
                raise pinned(exc.message, "file-size") from None

    def after_add(self, device: Device, num: int, item: dict[str, Any]) -> None:
        if item.get("type") != "file":
            return
        rel = _rel(str(item["file-path"]))
        source = item.pop("copy-from", None)
        try:
            if source is not None:
                device.storage.copy_sparse(source, rel, int(item["file-size"]))
            else:
                device.storage.create_sparse(rel, int(item["file-size"]))
        except OSError as exc:
            raise errors.failure(f"could not create file: {exc.strerror}") from None  # GUESS wording
        if device.iscsi is not None:
            device.iscsi.sync_item(device, num, item)

    def before_set(self, device: Device, num: int, new: dict[str, Any], old: dict[str, Any]) -> None:
        if new.get("type") == "file" and new.get("file-size") != old.get("file-size"):
            device.storage.create_sparse(_rel(str(new["file-path"])), int(new["file-size"]))
        if device.iscsi is not None:
            device.iscsi.sync_item(device, num, new)

    def before_remove(self, device: Device, num: int, item: dict[str, Any]) -> None:
        if "pool-size" in item:
            mount = str(item.get("mount-point"))
            for other in device.table("disk").items.values():
                if str(other.get("_backing", "")).split("/")[0] == mount:
                    raise errors.RosError(errors.DISK_IN_USE)
        if device.iscsi is not None:
            device.iscsi.sync_item(device, num, None)

    def command(self, device: Device, verb: str, nums: list[int], args: list[Arg], dialect: str) -> Any:
        if verb == "format-drive":
            for num in nums:
                if "pool-size" in device.table("disk").items[num]:
                    raise errors.RosError(errors.DISK_BUSY)
            return None
        if verb == "monitor-traffic":
            return {"read-ops-per-second": 0, "write-ops-per-second": 0, "read-rate": 0, "write-rate": 0}
        return super().command(device, verb, nums, args, dialect)


def _rel(path: str) -> str:
    return "/".join(p for p in path.split("/") if p)


def _resolve_disk(device: Device, ref: str) -> int:
    try:
        return device.resolve("disk", ref.split(";")[0])
    except errors.RosError:
        raise pinned(errors.no_match("copy-from").message, "copy-from", errors.CAT_ARGUMENT) from None


class FileHooks(Hooks):
    """A view of the real tree under <data-dir>/files; ids stay stable per name."""

    virtual = True

    def _id(self, device: Device, name: str) -> int:
        num = device.file_ids.get(name)
        if num is None:
            num = device.file_counter[0]
            device.file_counter[0] += 1
            device.file_ids[name] = num
            device.mark_dirty()
        return num

    def rows(self, device: Device) -> list[tuple[int, View]]:
        mounts = set(device.storage.pools())
        out = []
        for name, st, is_dir in device.storage.listing():
            if is_dir:
                kind = "disk" if name in mounts else "directory"
            else:
                ext = name.rsplit("/", 1)[-1].rpartition(".")[2] if "." in name.rsplit("/", 1)[-1] else ""
                kind = f".{ext} file" if ext else "file"
            num = self._id(device, name)
            view: View = {"name": name, "type": kind}
            if not is_dir:
                view["size"] = st.st_size
            view["last-modified"] = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(st.st_mtime))
            view[".id"] = f"*{num:X}"
            view["__explicit"] = frozenset()
            out.append((num, view))
        return out

    def _name_of(self, device: Device, num: int) -> str:
        for name, n in device.file_ids.items():
            if n == num and (device.storage.root / name).exists():
                return name
        raise errors.RosError(errors.NO_SUCH_ITEM, errors.CAT_MISSING)

    def add(self, device: Device, item: dict[str, Any]) -> int:
        if not item.get("name"):
            raise pinned(errors.INVALID_PARAMETER, "name")
        rel = device.storage.rel(str(item["name"]))
        if item.get("type", "file") == "directory":
            device.storage.mkdir(rel)
        else:
            device.storage.write_file(rel, str(item.get("contents", "")).encode())
        return self._id(device, rel)

    def set(self, device: Device, num: int, parsed: dict[str, tuple[Any, Arg]]) -> None:
        name = self._name_of(device, num)
        if "contents" in parsed:
            (device.storage.root / name).write_bytes(str(parsed["contents"][0] or "").encode())
        if "name" in parsed and parsed["name"][0] != name:
            new = device.storage.rel(str(parsed["name"][0]))
            device.storage.rename(name, new)
            del device.file_ids[name]
            device.file_ids[new] = num
            device.mark_dirty()

    def remove(self, device: Device, num: int) -> None:
        name = self._name_of(device, num)
        if name in device.storage.pools():
            raise errors.RosError(errors.DISK_BUSY)
        device.storage.delete(name)


def disk_menus() -> list[Menu]:
    flags = (
        disabled_flag(),
        Flag("B", "block-device", lambda v: bool(v.get("block-device")) and v.get("type") != "file"),
        Flag("M", "mounted", lambda v: bool(v.get("mounted"))),
        Flag("t", "nvme-tcp-export", _nvme),
        Flag("i", "iscsi-export", _iscsi),
    )
    file_fields = (
        Field("name", required=True),
        Field("type", "enum", choices=("file", "directory"), bare_in_detail=True),
        Field("size", "int", readonly=True, cli="human"),
        Field("last-modified", readonly=True, bare_in_detail=True),
        Field("contents", write_only=True),
    )
    return [
        Menu(
            "disk",
            DISK_FIELDS,
            "slot",
            True,
            flags,
            ("slot", "model", "size", "free", "fs"),
            extra_commands=frozenset({"format-drive", "monitor-traffic", "eject"}),
            hooks=DiskHooks(),
        ),
        Menu(
            "file",
            file_fields,
            "name",
            True,
            (),
            ("name", "type", "size", "last-modified"),
            verbs=frozenset({"add", "set", "remove", "print", "find", "getall"}),
            hooks=FileHooks(),
        ),
    ]
