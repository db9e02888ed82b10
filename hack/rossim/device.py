"""The one device model behind every protocol: tables of items per menu, persisted to a state file."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rossim import errors
from rossim.faults import CommandLog, Faults
from rossim.persist import Persistence
from rossim.schema import API, Field, Menu, View, parse_value
from rossim.storage import Storage

if TYPE_CHECKING:
    from rossim.iscsi import IscsiExports

CLI = "cli"
_ID = re.compile(r"\*([0-9A-Fa-f]+)")


@dataclass
class Arg:
    """One `name=value` argument; columns are 1-based positions in the CLI line (None over the API)."""

    name: str
    value: str
    column: int | None = None
    name_column: int | None = None


@dataclass
class Settings:
    slot_max_length: int = 32
    pool_size: int = 1 << 40
    terminal_width: int = 80
    crlf: bool = False
    error_exit_status: int = 0
    emit_empty: bool = True
    total_memory: int = 4 << 30


@dataclass
class Table:
    items: dict[int, dict[str, Any]] = field(default_factory=dict)
    counter: list[int] = field(default_factory=lambda: [1])


def format_id(num: int) -> str:
    return f"*{num:X}"


def parse_id(text: str) -> int | None:
    m = _ID.fullmatch(text)
    return int(m.group(1), 16) if m else None


class Device(Persistence):
    def __init__(self, data_dir: Path, settings: Settings | None = None) -> None:
        from rossim.menus import build_menus, seed

        self.data_dir = data_dir
        self.state_path = data_dir / "state.json"
        self.settings = settings or Settings()
        self.lock = threading.RLock()
        self.faults = Faults()
        self.log = CommandLog()
        self.menus: dict[str, Menu] = build_menus()
        self.tables: dict[str, Table] = {}
        self.users: dict[str, dict[str, Any]] = {}
        self.file_ids: dict[str, int] = {}
        self.file_counter = [1]
        self.started = time.time()
        self.generation = 0
        self._iface_cache: tuple[int, frozenset[str]] = (-1, frozenset())
        self._indexes: dict[tuple[str, tuple[str, ...]], dict[tuple[Any, ...], set[int]]] = {}
        self.storage = Storage(self, data_dir / "files")
        self.iscsi: IscsiExports | None = None  # set when the simulator serves real iSCSI targets
        self._listeners: list[Callable[[str, str, int, View | None], None]] = []
        self._dirty = threading.Event()
        self._stop = threading.Event()
        self._saver: threading.Thread | None = None
        self._seed = seed
        if self.state_path.exists():
            self._load(json.loads(self.state_path.read_text()))
        else:
            self.reset_tables()

    # ------------------------------------------------------------------ tables

    def reset_tables(self) -> None:
        with self.lock:
            self.invalidate_indexes()
            self.tables = {path: Table() for path in self.menus if not is_virtual(self.menus[path])}
            shared = [1]
            for path in ("interface/ethernet", "interface/bridge", "interface/vlan"):
                self.tables[path].counter = shared
            self.file_ids = {}
            self.file_counter = [1]
            self._seed(self)
            self.mark_dirty()

    def identity(self) -> str:
        return str(self.table("system/identity").items.get(1, {}).get("name", "MikroTik"))

    def menu(self, path: str) -> Menu:
        return self.menus[path]

    def table(self, path: str) -> Table:
        return self.tables[path]

    def rows(self, path: str) -> list[tuple[int, View]]:
        """Every item of a menu as a full view: defaults, stored values and read-only values."""
        menu = self.menus[path]
        with self.lock:
            if is_virtual(menu):
                return list(menu.hooks.rows(self))
            return [(num, self.view(path, num, item)) for num, item in self.tables[path].items.items()]

    def view(self, path: str, num: int, item: dict[str, Any]) -> View:
        menu = self.menus[path]
        view: View = {}
        for f in menu.fields:
            if f.default is not None:
                view[f.name] = f.default
        view.update(item)
        if menu.hooks is not None:
            view.update(menu.hooks.computed(self, num, view))
        view[".id"] = format_id(num)
        view["__explicit"] = frozenset(item)
        return view

    def names(self, path: str) -> list[str]:
        if path == "interface":
            return [
                str(v["name"])
                for p in ("interface/ethernet", "interface/bridge", "interface/vlan")
                for _, v in self.rows(p)
            ]
        key = self.menus[path].name_field
        return [str(v[key]) for _, v in self.rows(path) if key and v.get(key) is not None]

    def name_exists(self, path: str, name: str) -> bool:
        if path == "interface":
            return self.interface_exists(name)
        return name in self.names(path)

    def interface_exists(self, name: str) -> bool:
        with self.lock:
            gen, names = self._iface_cache
            if gen != self.generation:
                names = frozenset(self.names("interface"))
                self._iface_cache = (self.generation, names)
            return name in names

    def resolve(self, path: str, ref: str, rows: list[tuple[int, View]] | None = None) -> int:
        """An item reference as a user writes it: `*1F`, a print number, or the item's name."""
        menu = self.menus[path]
        rows = self.rows(path) if rows is None else rows
        num = parse_id(ref)
        if num is not None:
            if any(n == num for n, _ in rows):
                return num
            raise errors.RosError(errors.NO_SUCH_ITEM, errors.CAT_MISSING)
        if ref.isdigit() and menu.name_field != "name":
            index = int(ref)
            if index < len(rows):
                return rows[index][0]
            raise errors.RosError(errors.NO_SUCH_ITEM, errors.CAT_MISSING)
        if menu.name_field:
            for n, v in rows:
                if str(v.get(menu.name_field)) == ref:
                    return n
        if ref.isdigit() and int(ref) < len(rows):
            return rows[int(ref)][0]
        raise errors.RosError(errors.NO_SUCH_ITEM, errors.CAT_MISSING)

    # ------------------------------------------------------------------ unique-key indexes

    def _key(self, path: str, keys: tuple[str, ...], item: dict[str, Any]) -> tuple[Any, ...]:
        fields = self.menus[path].by_name
        return tuple(item.get(k, fields[k].default if k in fields else None) for k in keys)

    def holders(self, path: str, keys: tuple[str, ...], item: dict[str, Any]) -> set[int]:
        """Items of `path` whose `keys` equal those of `item` (kept incrementally, O(1) per lookup)."""
        index = self._indexes.get((path, keys))
        if index is None:
            index = {}
            for num, other in self.tables[path].items.items():
                index.setdefault(self._key(path, keys, other), set()).add(num)
            self._indexes[(path, keys)] = index
        return index.get(self._key(path, keys, item), set())

    def _reindex(self, path: str, num: int, old: dict[str, Any] | None, new: dict[str, Any] | None) -> None:
        for (p, keys), index in self._indexes.items():
            if p != path:
                continue
            if old is not None:
                index.get(self._key(path, keys, old), set()).discard(num)
            if new is not None:
                index.setdefault(self._key(path, keys, new), set()).add(num)

    def invalidate_indexes(self) -> None:
        self._indexes.clear()

    # ------------------------------------------------------------------ writes

    def check_write(self, user: str) -> None:
        group = self.users.get(user, {}).get("group", "full")
        if group == "read":
            raise errors.RosError(errors.NOT_ENOUGH_PERMISSIONS, errors.CAT_FAILURE)

    def parse_args(
        self, menu: Menu, args: Iterable[Arg], dialect: str, verb: str
    ) -> dict[str, tuple[Any, Arg]]:
        parsed: dict[str, tuple[Any, Arg]] = {}
        for arg in args:
            f = menu.by_name.get(arg.name)
            add_only = f is not None and menu.hooks is not None and arg.name in menu.hooks.add_only
            if f is None or f.readonly or (verb != "add" and add_only):
                raise unknown_argument(arg, dialect)
            parsed[arg.name] = (self._parse_one(f, arg, dialect), arg)
        return parsed

    def _parse_one(self, f: Field, arg: Arg, dialect: str) -> Any:
        if arg.value == "" and f.kind not in ("str", "any", "bool", "int", "enum", "size"):
            return None
        try:
            return parse_value(f, arg.value, dialect, self)
        except errors.RosError as exc:
            raise exc.at(arg.column) from None

    def add(self, path: str, args: list[Arg], dialect: str, user: str) -> int:
        menu = self.menus[path]
        with self.lock:
            self.check_write(user)
            parsed = self.parse_args(menu, args, dialect, "add")
            item = {k: v for k, (v, _) in parsed.items() if v is not None}
            if is_virtual(menu):
                return int(_positioned(lambda: menu.hooks.add(self, item), parsed))
            for f in menu.fields:
                if f.required and item.get(f.name) is None:
                    raise errors.failure(f"{f.name} not specified")  # GUESS wording
            table = self.tables[path]
            num = table.counter[0]
            if menu.hooks is not None:
                _positioned(lambda: menu.hooks.validate(self, num, item, None), parsed)
            table.counter[0] += 1
            table.items[num] = item
            if menu.hooks is not None:
                try:
                    _positioned(lambda: menu.hooks.after_add(self, num, item), parsed)
                except errors.RosError:
                    del table.items[num]
                    raise
            self._reindex(path, num, None, item)
            self._changed(path, "add", num)
            return num

    def set(self, path: str, nums: list[int], args: list[Arg], dialect: str, user: str) -> None:
        menu = self.menus[path]
        with self.lock:
            self.check_write(user)
            parsed = self.parse_args(menu, args, dialect, "set")
            if is_virtual(menu):
                for num in nums:
                    _positioned(lambda n=num: menu.hooks.set(self, n, parsed), parsed)  # type: ignore[misc]
                return
            table = self.tables[path]
            updates = []
            for num in nums:
                old = table.items[num]
                new = dict(old)
                for name, (value, _) in parsed.items():
                    if value is None:
                        new.pop(name, None)
                    else:
                        new[name] = value
                if menu.hooks is not None:
                    _positioned(lambda n=num, nw=new, o=old: menu.hooks.validate(self, n, nw, o), parsed)  # type: ignore[misc]
                updates.append((num, old, new))
            for num, old, new in updates:
                if new == old:
                    continue
                if menu.hooks is not None:
                    _positioned(lambda n=num, nw=new, o=old: menu.hooks.before_set(self, n, nw, o), parsed)  # type: ignore[misc]
                table.items[num] = new
                self._reindex(path, num, old, new)
                self._changed(path, "set", num)

    def unset(self, path: str, nums: list[int], names: list[str], user: str) -> None:
        menu = self.menus[path]
        with self.lock:
            self.check_write(user)
            for name in names:
                f = menu.by_name.get(name)
                if f is None or f.readonly or f.required:
                    raise errors.RosError(errors.UNKNOWN_PARAMETER.format(arg=name), errors.CAT_ARGUMENT)
            for num in nums:
                item = self.tables[path].items[num]
                if any(n in item for n in names):
                    old = dict(item)
                    for n in names:
                        item.pop(n, None)
                    self._reindex(path, num, old, item)
                    self._changed(path, "set", num)

    def remove(self, path: str, nums: list[int], user: str) -> None:
        menu = self.menus[path]
        with self.lock:
            self.check_write(user)
            if is_virtual(menu):
                for num in nums:
                    menu.hooks.remove(self, num)
                return
            table = self.tables[path]
            for num in nums:
                if menu.hooks is not None:
                    menu.hooks.before_remove(self, num, table.items[num])
            for num in nums:
                if num in table.items:
                    self._reindex(path, num, table.items.pop(num), None)
                    self._changed(path, "remove", num)

    def set_flag(self, path: str, nums: list[int], disabled: bool, user: str) -> None:
        self.set(path, nums, [Arg("disabled", "yes" if disabled else "no")], CLI, user)

    def command(self, path: str, verb: str, nums: list[int], args: list[Arg], dialect: str, user: str) -> Any:
        menu = self.menus[path]
        with self.lock:
            self.check_write(user)
            return menu.hooks.command(self, verb, nums, args, dialect)

    # ------------------------------------------------------------------ change feed

    def subscribe(self, listener: Callable[[str, str, int, View | None], None]) -> Callable[[], None]:
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def _changed(self, path: str, what: str, num: int) -> None:
        self.mark_dirty()
        if not self._listeners:
            return
        item = self.tables[path].items.get(num)
        view = self.view(path, num, item) if item is not None else None
        for listener in list(self._listeners):
            listener(path, what, num, view)

    # ------------------------------------------------------------------ persistence

    def mark_dirty(self) -> None:
        self.generation += 1
        self._dirty.set()


def unknown_argument(arg: Arg, dialect: str) -> errors.RosError:
    if dialect == API:
        return errors.RosError(errors.UNKNOWN_PARAMETER.format(arg=arg.name), errors.CAT_ARGUMENT)
    return errors.RosError(errors.EXPECTED_END, errors.CAT_SCRIPT, column=arg.name_column)


def is_virtual(menu: Menu) -> bool:
    return menu.hooks is not None and getattr(menu.hooks, "virtual", False)


def _positioned(call: Callable[[], Any], parsed: dict[str, tuple[Any, Arg]]) -> Any:
    """Run a hook; an error it pins on an argument (`exc.arg`) gets that argument's column."""
    try:
        return call()
    except errors.RosError as exc:
        name = getattr(exc, "arg", None)
        if name and name in parsed and exc.category == errors.CAT_ARGUMENT:
            exc.at(parsed[name][1].column)
        raise
