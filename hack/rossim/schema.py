"""Field and menu descriptions: how each property is read from input and printed back."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rossim import errors
from rossim.units import SizeSyntaxError, group_thousands, humanize, parse_size

if TYPE_CHECKING:
    from rossim.device import Device

View = dict[str, Any]

# Styles a value can be rendered in.
API = "api"
DETAIL = "detail"
TERSE = "terse"
ASVALUE = "asvalue"


@dataclass(frozen=True)
class Field:
    name: str
    kind: str = "str"
    default: Any = None
    readonly: bool = False
    required: bool = False
    choices: tuple[str, ...] = ()
    lo: int = 0
    hi: int = (1 << 63) - 1
    ref: str | None = None
    ref_extra: tuple[str, ...] = ()
    quoted: bool = False
    cli: str = ""
    detail: bool = True
    visible: Callable[[View], bool] | None = None
    break_before: bool = False
    write_only: bool = False
    bare_in_detail: bool = False


@dataclass(frozen=True)
class Flag:
    letter: str
    name: str
    test: Callable[[View], bool]


@dataclass
class Menu:
    path: str
    fields: tuple[Field, ...]
    name_field: str | None = None
    name_is_id: bool = False
    flags: tuple[Flag, ...] = ()
    columns: tuple[str, ...] = ()
    verbs: frozenset[str] = frozenset(
        {"add", "set", "remove", "print", "find", "enable", "disable", "unset", "getall", "listen"}
    )
    extra_commands: frozenset[str] = frozenset()
    singleton: bool = False
    hooks: Any = None
    by_name: dict[str, Field] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.by_name = {f.name: f for f in self.fields}

    @property
    def commands(self) -> frozenset[str]:
        return self.verbs | self.extra_commands


def disabled_flag() -> Flag:
    return Flag("X", "disabled", lambda v: bool(v.get("disabled")))


def dynamic_flag() -> Flag:
    return Flag("D", "dynamic", lambda v: bool(v.get("dynamic")))


# ---------------------------------------------------------------- reading values

_MAC = re.compile(r"[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}")
_TIME = re.compile(r"(\d+w)?(\d+d)?(\d+h)?(\d+m)?(\d+s)?(\d+ms)?|\d+:\d\d:\d\d|\d+")
_DIGITS = re.compile(r"\d+")


def parse_bool(f: Field, text: str, dialect: str) -> bool:
    if text in ("yes", "true" if dialect == API else "yes"):
        return True
    if text in ("no", "false" if dialect == API else "no"):
        return False
    raise errors.ValueProblem(errors.EXPECTED_BOOL)


def parse_int(f: Field, text: str) -> int:
    m = _DIGITS.match(text)
    if not m:
        raise errors.invalid_value(f.name)
    if m.end() != len(text):
        raise errors.trailing(f.name)
    value = int(text)
    if not f.lo <= value <= f.hi:
        raise errors.ValueProblem(errors.OUT_OF_RANGE.format(arg=f.name, lo=f.lo, hi=f.hi))
    return value


def parse_ip(f: Field, text: str) -> str:
    try:
        return str(ipaddress.IPv4Address(text))
    except ValueError:
        raise errors.invalid_value(f.name) from None


def parse_cidr(f: Field, text: str) -> str:
    try:
        iface = ipaddress.IPv4Interface(text)
    except ValueError:
        raise errors.invalid_value(f.name) from None
    return str(iface)


def parse_network(f: Field, text: str) -> str:
    try:
        return str(ipaddress.IPv4Network(text, strict=False))
    except ValueError:
        raise errors.invalid_value(f.name) from None


def parse_ranges(f: Field, text: str) -> str:
    parts = []
    for part in text.split(","):
        try:
            if "/" in part:
                parts.append(str(ipaddress.IPv4Network(part, strict=False)))
                continue
            lo, _, hi = part.partition("-")
            a = ipaddress.IPv4Address(lo)
            b = ipaddress.IPv4Address(hi) if hi else a
        except ValueError:
            raise errors.invalid_value(f.name) from None
        if b < a:
            raise errors.invalid_value(f.name)
        parts.append(f"{a}-{b}" if b != a else str(a))
    return ",".join(parts)


def parse_vlan_ids(f: Field, text: str) -> str:
    out = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        a = parse_int(Field(f.name, lo=1, hi=4094), lo)
        b = parse_int(Field(f.name, lo=1, hi=4094), hi) if hi else a
        if b < a:
            raise errors.invalid_value(f.name)
        out.append(f"{a}-{b}" if b != a else str(a))
    return ",".join(out)


def expand_vlan_ids(text: str) -> set[int]:
    ids: set[int] = set()
    for part in text.split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        ids.update(range(int(lo), int(hi or lo) + 1))
    return ids


def parse_value(f: Field, text: str, dialect: str, device: Device) -> Any:
    """Turn one argument as typed into the stored value, raising RouterOS' own complaints."""
    kind = f.kind
    if kind in ("str", "any"):
        return text
    if kind == "bool":
        return parse_bool(f, text, dialect)
    if kind == "int":
        return parse_int(f, text)
    if kind == "size":
        try:
            return parse_size(text)
        except SizeSyntaxError as exc:
            raise (errors.trailing(f.name) if exc.trailing else errors.invalid_value(f.name)) from None
    if kind == "enum":
        if text not in f.choices:
            raise errors.no_match(f.name)
        return text
    if kind == "ref":
        if text in f.ref_extra or (f.ref and device.name_exists(f.ref, text)):
            return text
        raise errors.no_match(f.name)
    if kind == "reflist":
        names = [n for n in text.split(",") if n]
        for name in names:
            if not (name in f.ref_extra or (f.ref and device.name_exists(f.ref, name))):
                raise errors.no_match(f.name)
        return ",".join(names)
    if kind == "ip":
        return parse_ip(f, text)
    if kind == "iplist":
        return ",".join(parse_ip(f, part) for part in text.split(",") if part)
    if kind == "cidr":
        return parse_cidr(f, text)
    if kind == "network":
        return parse_network(f, text)
    if kind == "ranges":
        return parse_ranges(f, text)
    if kind == "vlanids":
        return parse_vlan_ids(f, text)
    if kind == "mac":
        if not _MAC.fullmatch(text):
            raise errors.invalid_value(f.name)
        return text.upper()
    if kind == "time":
        if not text or not _TIME.fullmatch(text):
            raise errors.invalid_value(f.name)
        return text
    raise AssertionError(f"unknown field kind {kind}")


# ---------------------------------------------------------------- printing values

_NEEDS_QUOTES = re.compile(r'[\s"\\;$\[\]{}()=]|^$')
_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t", "$": "\\$"}


def quote(text: str) -> str:
    """Double-quote a CLI string the way RouterOS prints it."""
    out = []
    for ch in text:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\{ord(ch):02X}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def render(f: Field, value: Any, style: str) -> str:
    """One property value in the given print style (without the `name=`)."""
    if isinstance(value, bool):
        if style in (API, ASVALUE):
            return "true" if value else "false"
        return "yes" if value else "no"
    if isinstance(value, int):
        if style in (DETAIL, TERSE):
            if f.cli == "grouped":
                return group_thousands(value)
            if f.cli == "human":
                return humanize(value)
        return str(value)
    text = str(value)
    if style in (API, ASVALUE) or f.bare_in_detail:
        return text
    if (style == DETAIL and f.quoted) or _NEEDS_QUOTES.search(text):
        return quote(text)
    return text


def visible_fields(menu: Menu, view: View) -> Iterable[Field]:
    for f in menu.fields:
        if f.write_only:
            continue
        if f.visible is not None and not f.visible(view):
            continue
        if view.get(f.name) is None:
            continue
        yield f


def api_value(value: Any) -> str:
    """A stored value as the API returns it (used for ?queries and replies)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
