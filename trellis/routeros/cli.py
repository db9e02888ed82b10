"""RouterOS CLI: building safe command lines and reading what the console prints back.

Everything that reaches a RouterOS console goes through this module:

* **Values** are validated and always double-quoted (`quote`); strings, ints and booleans are the
  only value types, and a value can never end the quoted string, start a variable (``$``),
  substitute a command (``$[...]``) or open the help (``?``).
* **Names** (menu paths, verbs, argument keys) come from our own code and are checked against a
  strict identifier grammar, never quoted and never taken from user input.
* **Output** of ``print`` is parsed in the three forms RouterOS offers: ``as-value`` (one line under
  ``:put [...]``; numbers raw — the form the readers here use by default), ``terse`` and
  ``detail`` (wrapped, space-grouped numbers, humanised sizes).
* **Errors** come back as text on stdout, often with exit status 0: `check_output` treats any line
  that is not data in the expected form as an error and classifies it with `ERROR_PATTERNS`.

The transport (SSH) lives in `trellis.routeros.ssh`; `RouterOSCli` ties the two together.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from trellis.routeros.cliparse import (
    ERROR_PATTERNS,
    ErrorKind,
    PrintStyle,
    Record,
    RouterOSError,
    check_output,
    classify_error,
    parse_as_value,
    parse_bool,
    parse_items,
    parse_records,
    parse_size,
)

__all__ = [
    "ERROR_PATTERNS",
    "ErrorKind",
    "PrintStyle",
    "Record",
    "RouterOSError",
    "check_output",
    "classify_error",
    "parse_as_value",
    "parse_bool",
    "parse_items",
    "parse_records",
    "parse_size",
]


class CliValueError(ValueError):
    """A value or name was refused before anything was sent to the router."""


# ---------------------------------------------------------------------------------------------
# Values and names

_NAME = re.compile(r"^[a-z][a-z0-9-]*$")
_ARG_KEY = re.compile(r"^(\.id|\.proplist|[a-z][a-z0-9-]*)$")
_MAX_VALUE_LEN = 4096
# Inside a double-quoted RouterOS string these four are special: `"` ends it, `\` escapes, `$`
# starts a variable or `$[...]` command substitution, `?` asks for help at the console.
_ESCAPES = {"\\": "\\\\", '"': '\\"', "$": "\\$", "?": "\\?"}

Value = str | int | bool


def quote(value: str) -> str:
    """A double-quoted RouterOS string literal for ``value``.

    Only printable ASCII (0x20-0x7E) is accepted: control characters (newlines would start a new
    command), DEL and non-ASCII text are refused with `CliValueError` rather than escaped.
    """
    if not isinstance(value, str):
        raise CliValueError(f"expected a string, got {type(value).__name__}")
    if len(value) > _MAX_VALUE_LEN:
        raise CliValueError(f"value is longer than {_MAX_VALUE_LEN} characters")
    for char in value:
        if not " " <= char <= "~":
            raise CliValueError(f"value {value!r} contains the character {char!r}; only printable ASCII")
    return '"' + "".join(_ESCAPES.get(c, c) for c in value) + '"'


def render_value(value: Value) -> str:
    if isinstance(value, bool):  # before int: bool is an int
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    return quote(value)


def _name(text: str, what: str) -> str:
    if not _NAME.match(text):
        raise CliValueError(f"invalid {what} {text!r}")
    return text


def _path(path: str) -> str:
    parts = path.strip("/").split("/")
    if not path.startswith("/") or not all(_NAME.match(p) for p in parts):
        raise CliValueError(f"invalid menu path {path!r}")
    return "/" + "/".join(parts)


def _key(key: str) -> str:
    if not _ARG_KEY.match(key):
        raise CliValueError(f"invalid argument name {key!r}")
    return key


# ---------------------------------------------------------------------------------------------
# Queries and commands


@dataclass(frozen=True)
class Cond:
    """One comparison in a ``where`` clause: ``key=value``, ``key!=value`` or ``key~regex``."""

    key: str
    op: str
    value: Value

    def render(self) -> str:
        if self.op not in ("=", "!=", "~"):
            raise CliValueError(f"invalid operator {self.op!r}")
        return f"{_key(self.key)}{self.op}{render_value(self.value)}"


@dataclass(frozen=True)
class Where:
    """Conditions joined by one boolean operator (``and`` or ``or``)."""

    conds: tuple[Cond, ...]
    joiner: str = "and"

    def render(self) -> str:
        if self.joiner not in ("and", "or") or not self.conds:
            raise CliValueError("a where clause needs conditions joined by 'and' or 'or'")
        return f" {self.joiner} ".join(c.render() for c in self.conds)


def eq(key: str, value: Value) -> Cond:
    return Cond(key, "=", value)


def regex(key: str, pattern: str) -> Cond:
    return Cond(key, "~", pattern)


def any_of(*conds: Cond) -> Where:
    return Where(tuple(conds), "or")


def all_of(*conds: Cond) -> Where:
    return Where(tuple(conds), "and")


Query = Cond | Where


@dataclass(frozen=True)
class Find:
    """``[find where ...]``: selects items by a query; an empty match selects nothing."""

    query: Query

    def render(self) -> str:
        return f"[find where {self.query.render()}]"


ArgValue = Value | Find


def build(
    path: str,
    verb: str,
    *,
    item: str | Find | None = None,
    args: Mapping[str, ArgValue] | None = None,
) -> str:
    """``<path> <verb> [item] key=value ...`` with every value quoted.

    >>> build("/disk", "set", item=Find(eq("slot", "a")), args={"file-size": 1024})
    '/disk set [find where slot="a"] file-size=1024'
    """
    words = [_path(path), _name(verb, "command")]
    if item is not None:
        words.append(item.render() if isinstance(item, Find) else quote(item))
    for key, value in (args or {}).items():
        words.append(f"{_key(key)}={value.render() if isinstance(value, Find) else render_value(value)}")
    return " ".join(words)


def build_print(path: str, where: Query | None = None, style: PrintStyle = PrintStyle.AS_VALUE) -> str:
    clause = f" where {where.render()}" if where is not None else ""
    if style is PrintStyle.AS_VALUE:
        return f":put [{_path(path)} print detail as-value{clause}]"
    extra = "terse" if style is PrintStyle.TERSE else "detail"
    return f"{_path(path)} print {extra} without-paging{clause}"


# ---------------------------------------------------------------------------------------------
# Running commands


@dataclass(frozen=True)
class CommandResult:
    stdout: str
    stderr: str
    exit_status: int


class CommandRunner(Protocol):
    """Runs one command line on the router (see `trellis.routeros.ssh.SSHPool`).

    ``idempotent`` allows the runner to resend the command after a transport failure that may
    have happened after the router received it; otherwise only unsent commands are retried.
    """

    def run(self, command: str, *, idempotent: bool, timeout: float | None = None) -> CommandResult: ...


class RouterOSCli:
    """Typed RouterOS commands over a `CommandRunner`; raises `RouterOSError` on router errors.

    Transport problems surface as `trellis.routeros.ssh.TransportError` from the runner.
    """

    def __init__(self, runner: CommandRunner, style: PrintStyle = PrintStyle.AS_VALUE) -> None:
        self.runner = runner
        self.style = style

    def execute(
        self,
        command: str,
        *,
        idempotent: bool,
        expect: PrintStyle | None = None,
        timeout: float | None = None,
    ) -> str:
        result = self.runner.run(command, idempotent=idempotent, timeout=timeout)
        check_output(result.stdout, expect, command)
        if result.exit_status != 0:
            text = (result.stderr or result.stdout).strip() or f"exit status {result.exit_status}"
            raise RouterOSError(text, classify_error(text), command)
        return result.stdout

    def print(self, path: str, where: Query | None = None, *, timeout: float | None = None) -> list[Record]:
        command = build_print(path, where, self.style)
        stdout = self.execute(command, idempotent=True, expect=self.style, timeout=timeout)
        return parse_records(stdout, self.style)

    def add(self, path: str, args: Mapping[str, ArgValue], *, timeout: float | None = None) -> None:
        """Not idempotent: a transport failure after sending leaves the outcome to be checked."""
        self.execute(build(path, "add", args=args), idempotent=False, timeout=timeout)

    def set(
        self, path: str, item: str | Find, args: Mapping[str, ArgValue], *, timeout: float | None = None
    ) -> None:
        self.execute(build(path, "set", item=item, args=args), idempotent=True, timeout=timeout)

    def remove(self, path: str, item: str | Find, *, timeout: float | None = None) -> None:
        """Removing ``[find ...]`` is idempotent: no match removes nothing and prints nothing."""
        self.execute(build(path, "remove", item=item), idempotent=isinstance(item, Find), timeout=timeout)
