"""Run a parsed console script against the device, producing exactly what the console prints."""

from __future__ import annotations

import re
import time
from typing import Any

from rossim import errors
from rossim.cli import printing
from rossim.cli.syntax import Arg, Cond, Parser, Script, Statement, Value
from rossim.device import CLI, Device
from rossim.device import Arg as DeviceArg
from rossim.errors import RosError
from rossim.faults import DropConnection
from rossim.schema import API, Menu, View, api_value
from rossim.units import SizeSyntaxError, parse_size

MISSING_NUMBERS = "missing value(s) of argument(s) numbers"  # GUESS
PRINT_WORDS = frozenset(
    {"detail", "terse", "without-paging", "count-only", "as-value", "brief", "value-list", "once"}
)
PRINT_ARGS = frozenset({"proplist", "from", "interval", "file"})
CLI_ONLY_HIDDEN = frozenset({"listen", "getall"})


class ItemId(str):
    """An item id as scripts see it (`*1A`), remembering the menu it came from."""

    num: int
    menu: str

    @classmethod
    def of(cls, menu: str, num: int) -> ItemId:
        item = cls(f"*{num:X}")
        item.num = num
        item.menu = menu
        return item


def command_words(device: Device) -> dict[str, frozenset[str]]:
    return {path: m.commands - CLI_ONLY_HIDDEN for path, m in device.menus.items()}


class Session:
    """One console session: an SSH exec runs one script in a fresh session."""

    def __init__(self, device: Device, user: str, width: int | None = None, protocol: str = "ssh") -> None:
        self.device = device
        self.user = user
        self.width = device.settings.terminal_width if width is None else width
        self.protocol = protocol
        self.variables: dict[str, Any] = {}
        self._words = command_words(device)

    def run(self, text: str) -> tuple[list[str], bool]:
        """Execute a script; returns (output lines, whether it ended in an error)."""
        out: list[str] = []
        try:
            script = Parser(text, self._words).parse()
            self.script(script, out)
        except RosError as exc:
            out.append(format_error(exc))
            return out, True
        return out, False

    def script(self, script: Script, out: list[str]) -> Any:
        result: Any = None
        for stmt in script.statements:
            try:
                result = self.statement(stmt, out)
            except RosError as exc:
                if getattr(exc, "line", None) is None and exc.column is not None:
                    exc.line = stmt.pos.line  # type: ignore[attr-defined]
                raise
        return result

    def statement(self, stmt: Statement, out: list[str]) -> Any:
        if stmt.kind == "nop":
            return None
        if stmt.kind == "script":
            return self.script_command(stmt, out)
        return self.menu_command(stmt, out)

    def script_command(self, stmt: Statement, out: list[str]) -> Any:
        values = [self.value(v, out) for v in stmt.positional]
        if stmt.verb == "put":
            out.extend(printing.put_value(values[0] if values else "").split("\n"))
            return None
        if stmt.verb == "len":
            value = values[0] if values else ""
            return len(value) if isinstance(value, (list, str, dict)) else 1
        if stmt.verb in ("local", "global"):
            if not stmt.positional or stmt.positional[0].literal is None:
                raise RosError(errors.SYNTAX_ERROR, errors.CAT_SCRIPT, stmt.pos.column)
            self.variables[stmt.positional[0].literal] = values[1] if len(values) > 1 else None
            return None
        return None

    # -------------------------------------------------------------- values

    def value(self, v: Value, out: list[str]) -> Any:
        if v.literal is not None:
            return v.literal
        if v.script is not None:
            return self.script(v.script, out)
        if v.var is not None:
            return self.variable(v.var.name, v.var.pos.column)
        parts = []
        for part in v.parts:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, Script):
                parts.append(printing.put_value(self.script(part, out)))
            else:
                parts.append(printing.put_value(self.variable(part.name, part.pos.column)))
        return "".join(parts)

    def variable(self, name: str, column: int) -> Any:
        if name not in self.variables:
            # UNCONFIRMED: how an undefined variable is reported; we refuse rather than expand to "".
            raise RosError(errors.SYNTAX_ERROR, errors.CAT_SCRIPT, column)
        return self.variables[name]

    def text(self, v: Value, out: list[str]) -> str:
        return printing.put_value(self.value(v, out))

    # -------------------------------------------------------------- menu commands

    def menu_command(self, stmt: Statement, out: list[str]) -> Any:
        device = self.device
        faults = device.faults
        delay = faults.latency_for(self.protocol, stmt.menu)
        if delay:
            time.sleep(delay)
        drop, injected = faults.take(self.protocol, stmt.menu, stmt.verb)
        if drop == "before":
            device.log.record(self.protocol, self.user, stmt.menu, stmt.verb, stmt.text, "dropped")
            raise DropConnection()
        try:
            if injected is not None:
                raise injected
            result = self.dispatch(stmt, out)
        except RosError as exc:
            device.log.record(self.protocol, self.user, stmt.menu, stmt.verb, stmt.text, exc.message)
            raise
        device.log.record(self.protocol, self.user, stmt.menu, stmt.verb, stmt.text)
        if drop == "after":
            raise DropConnection()
        return result

    def dispatch(self, stmt: Statement, out: list[str]) -> Any:
        device = self.device
        menu = device.menu(stmt.menu)
        verb = stmt.verb
        if verb == "find":
            return self.find(menu, stmt, out)
        if verb == "print":
            return self.print(menu, stmt, out)
        numbers = [a for a in stmt.args if a.name == "numbers"]
        args = [a for a in stmt.args if a.name != "numbers"]
        if verb == "add":
            if stmt.positional:
                raise RosError(errors.EXPECTED_END, errors.CAT_SCRIPT, stmt.positional[0].pos.column)
            num = device.add(menu.path, self.device_args(args, out), CLI, self.user)
            return ItemId.of(menu.path, num)
        positional = [n.value for n in numbers] + stmt.positional
        if verb == "get":
            return self.get(menu, positional, out)
        if menu.singleton:
            nums = [1]
        else:
            if not positional:
                raise RosError(MISSING_NUMBERS, errors.CAT_SCRIPT)
            nums = self.items(menu, positional, out)
        if verb == "set":
            device.set(menu.path, nums, self.device_args(args, out), CLI, self.user)
        elif verb == "remove":
            self.no_args(args)
            device.remove(menu.path, nums, self.user)
        elif verb in ("enable", "disable"):
            self.no_args(args)
            device.set_flag(menu.path, nums, verb == "disable", self.user)
        elif verb == "unset":
            names = [self.text(a.value, out) for a in args if a.name == "value-name"]
            self.no_args([a for a in args if a.name != "value-name"])
            device.unset(menu.path, nums, ",".join(names).split(","), self.user)
        else:
            result = device.command(menu.path, verb, nums, self.device_args(args, out), CLI, self.user)
            if isinstance(result, dict):
                width = max(len(k) for k in result)
                out.extend(f"{k:>{width + 2}}: {v}" for k, v in result.items())
        return None

    def no_args(self, args: list[Arg]) -> None:
        if args:
            raise RosError(errors.EXPECTED_END, errors.CAT_SCRIPT, args[0].pos.column)

    def device_args(self, args: list[Arg], out: list[str]) -> list[DeviceArg]:
        return [DeviceArg(a.name, self.text(a.value, out), a.value.pos.column, a.pos.column) for a in args]

    def items(self, menu: Menu, values: list[Value], out: list[str]) -> list[int]:
        rows = self.device.rows(menu.path)
        nums: list[int] = []
        for v in values:
            value = self.value(v, out)
            refs = value if isinstance(value, list) else [r for r in str(value).split(",") if r]
            for ref in refs:
                if isinstance(ref, ItemId) and ref.menu == menu.path:
                    nums.append(ref.num)
                    continue
                try:
                    nums.append(self.device.resolve(menu.path, str(ref), rows))
                except RosError as exc:
                    if v.script is not None:
                        raise RosError(errors.EXPECTED_ITEM_ID, errors.CAT_SCRIPT, v.pos.column) from None
                    raise exc
        return nums

    def get(self, menu: Menu, values: list[Value], out: list[str]) -> Any:
        if menu.singleton:
            view = self.device.rows(menu.path)[0][1]
        else:
            if not values:
                raise RosError(MISSING_NUMBERS, errors.CAT_SCRIPT)
            nums = self.items(menu, values[:1], out)
            view = dict(self.device.rows(menu.path))[nums[0]]
            values = values[1:]
        if not values:
            return printing.as_value(menu, view, None)
        name = self.text(values[0], out)
        if name not in menu.by_name and name != ".id":
            raise RosError(errors.INVALID_VALUE.format(arg="value-name"), errors.CAT_ARGUMENT)
        f = menu.by_name.get(name)
        value = view.get(name)
        return None if value is None else (printing.render(f, value, "asvalue") if f else value)

    # -------------------------------------------------------------- find / print

    def find(self, menu: Menu, stmt: Statement, out: list[str]) -> list[ItemId]:
        rows = self.filtered(menu, stmt.where, out)
        return [ItemId.of(menu.path, num) for num, _ in rows]

    def filtered(self, menu: Menu, cond: Cond | None, out: list[str]) -> list[tuple[int, View]]:
        rows = self.device.rows(menu.path)
        if cond is None:
            return rows
        prepared = self.prepare(menu, cond, rows, out)
        return [(num, view) for num, view in rows if matches(prepared, view)]

    def prepare(self, menu: Menu, cond: Cond, rows: list[tuple[int, View]], out: list[str]) -> Any:
        """Evaluate the right-hand sides once and check property names before scanning items."""
        if cond.op in ("and", "or", "not"):
            return (cond.op, [self.prepare(menu, c, rows, out) for c in cond.children])
        known = (
            cond.name == ".id" or cond.name in menu.by_name or any(f.name == cond.name for f in menu.flags)
        )
        if not known:
            raise RosError(errors.EXPECTED_END, errors.CAT_SCRIPT, cond.pos.column)
        if cond.op == "has":
            return ("has", cond.name)
        assert cond.value is not None
        rhs = self.text(cond.value, out)
        if cond.name == ".id" and cond.cmp == "=":
            ids = {str(v[".id"]) for _, v in rows}
            if rhs not in ids:
                raise RosError(errors.EXPECTED_ITEM_ID, errors.CAT_SCRIPT, cond.value.pos.column)
        if cond.cmp == "~":
            try:
                return ("~", cond.name, re.compile(rhs))
            except re.error:
                raise RosError(errors.SYNTAX_ERROR, errors.CAT_SCRIPT, cond.value.pos.column) from None
        kind = menu.by_name[cond.name].kind if cond.name in menu.by_name else "str"
        return (cond.cmp, cond.name, normalise(rhs, kind))

    def print(self, menu: Menu, stmt: Statement, out: list[str]) -> Any:
        words = set()
        for word, pos in stmt.words:
            if word not in PRINT_WORDS:
                raise RosError(errors.EXPECTED_END, errors.CAT_SCRIPT, pos.column)
            words.add(word)
        for value in stmt.positional:
            if value.literal is None or value.quoted:
                raise RosError(errors.EXPECTED_END, errors.CAT_SCRIPT, value.pos.column)
        proplist = None
        rows = self.filtered(menu, stmt.where, out)
        for arg in stmt.args:
            if arg.name not in PRINT_ARGS:
                raise RosError(errors.EXPECTED_END, errors.CAT_SCRIPT, arg.pos.column)
            if arg.name == "proplist":
                proplist = [p for p in self.text(arg.value, out).split(",") if p]
            elif arg.name == "from":
                wanted = set(self.items(menu, [arg.value], out))
                rows = [r for r in rows if r[0] in wanted]
        if "count-only" in words:
            if "as-value" in words:
                return len(rows)
            out.append(str(len(rows)))
            return None
        if "as-value" in words:
            records = [printing.as_value(menu, view, proplist) for _, view in rows]
            return records[0] if menu.singleton and records else records
        if menu.singleton:
            out.extend(printing.singleton(menu, rows[0][1], proplist) if rows else [])
        elif "terse" in words:
            out.extend(printing.terse(menu, rows, proplist))
        elif "detail" in words:
            out.extend(printing.detail(menu, rows, proplist, self.width))
        elif rows:
            out.extend(printing.table(menu, rows, proplist))
        return None


def normalise(text: str, kind: str) -> Any:
    if text in ("yes", "true"):
        return True
    if text in ("no", "false"):
        return False
    if kind in ("int", "size"):
        try:
            return parse_size(text) if kind == "size" else int(text)
        except (ValueError, SizeSyntaxError):
            return text
    return text


def matches(cond: Any, view: View) -> bool:
    op = cond[0]
    if op == "and":
        return all(matches(c, view) for c in cond[1])
    if op == "or":
        return any(matches(c, view) for c in cond[1])
    if op == "not":
        return not matches(cond[1][0], view)
    if op == "has":
        value = view.get(cond[1])
        return value is not None and value is not False and value != ""
    name, rhs = cond[1], cond[2]
    lhs = view.get(name)
    if op == "~":
        return lhs is not None and rhs.search(api_value(lhs)) is not None
    if isinstance(lhs, bool) or isinstance(rhs, bool):
        equal = lhs == rhs if isinstance(rhs, bool) else api_value(lhs) == rhs
    elif isinstance(lhs, int) and isinstance(rhs, int):
        equal = lhs == rhs
        if op in ("<", ">", "<=", ">="):
            return {"<": lhs < rhs, ">": lhs > rhs, "<=": lhs <= rhs, ">=": lhs >= rhs}[op]
    else:
        left = "" if lhs is None else api_value(lhs)
        right = api_value(rhs)
        equal = left == right
        if op in ("<", ">", "<=", ">="):
            return {"<": left < right, ">": left > right, "<=": left <= right, ">=": left >= right}[op]
    return equal if op == "=" else not equal if op == "!=" else False


def format_error(exc: RosError) -> str:
    if exc.column is None:
        return exc.message
    return f"{exc.message} (line {getattr(exc, 'line', None) or 1} column {exc.column})"


__all__ = ["API", "ItemId", "Session", "format_error"]
