"""Per-menu behaviour: validation, derived read-only values, side effects."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rossim import errors
from rossim.schema import View

if TYPE_CHECKING:
    from rossim.device import Arg, Device


class Hooks:
    virtual = False
    add_only: frozenset[str] = frozenset()

    def computed(self, device: Device, num: int, view: View) -> dict[str, Any]:
        return {}

    def validate(self, device: Device, num: int, item: dict[str, Any], old: dict[str, Any] | None) -> None:
        pass

    def after_add(self, device: Device, num: int, item: dict[str, Any]) -> None:
        pass

    def before_set(self, device: Device, num: int, new: dict[str, Any], old: dict[str, Any]) -> None:
        pass

    def before_remove(self, device: Device, num: int, item: dict[str, Any]) -> None:
        pass

    def command(self, device: Device, verb: str, nums: list[int], args: list[Arg], dialect: str) -> Any:
        raise errors.RosError(errors.NO_SUCH_COMMAND, errors.CAT_MISSING)


def pinned(message: str, arg: str | None = None, category: int = errors.CAT_FAILURE) -> errors.RosError:
    """An error that the CLI reports at the column of argument `arg`."""
    exc = errors.RosError(message, category)
    exc.arg = arg  # type: ignore[attr-defined]
    return exc


def others(device: Device, path: str, num: int) -> list[dict[str, Any]]:
    return [item for n, item in device.table(path).items.items() if n != num]


def require_unique(
    device: Device, path: str, num: int, item: dict[str, Any], keys: tuple[str, ...], message: str
) -> None:
    if any(v is None for v in device._key(path, keys, item)):
        return
    if device.holders(path, keys, item) - {num}:
        raise pinned(message, keys[0])


INTERFACE_TABLES = ("interface/ethernet", "interface/bridge", "interface/vlan")


def interface_name_taken(device: Device, name: str, path: str, num: int) -> bool:
    probe = {"name": name}
    return any(
        device.holders(p, ("name",), probe) - ({num} if p == path else set()) for p in INTERFACE_TABLES
    )


def next_free_name(device: Device, prefix: str, taken: set[str]) -> str:
    i = 1
    while f"{prefix}{i}" in taken:
        i += 1
    return f"{prefix}{i}"
