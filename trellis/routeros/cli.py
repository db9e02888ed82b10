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

import enum
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

# ---------------------------------------------------------------------------------------------
# Errors


class CliValueError(ValueError):
    """A value or name was refused before anything was sent to the router."""


class ErrorKind(enum.Enum):
    NOT_FOUND = "not-found"
    EXISTS = "exists"
    NO_SPACE = "no-space"
    INVALID_VALUE = "invalid-value"
    SYNTAX = "syntax"
    PERMISSION = "permission"
    BUSY = "busy"
    FAILURE = "failure"


# Matched case-insensitively against each error line, first match wins. Wording sources are in
# the reference (routeros.md §6); the lines marked GUESS have no hardware capture yet and are the
# first place to correct when a real RDS says otherwise.
ERROR_PATTERNS: tuple[tuple[re.Pattern[str], ErrorKind], ...] = tuple(
    (re.compile(pattern, re.IGNORECASE), kind)
    for pattern, kind in (
        (r"not enough (disk )?space|no space left", ErrorKind.NO_SPACE),  # GUESS (rds-csi only)
        (r"not enough (permissions|privileges)|not allowed", ErrorKind.PERMISSION),
        (r"no such item|expected item id", ErrorKind.NOT_FOUND),
        (r"already (have such|exists)|with such name already exists", ErrorKind.EXISTS),
        (r"disk is (in use|busy)", ErrorKind.BUSY),  # GUESS (rds-csi docs)
        (r"syntax error|expected end of command|bad command name|expected command name", ErrorKind.SYNTAX),
        (r"no such command", ErrorKind.SYNTAX),
        (
            r"does not match any value|invalid value|invalid trailing characters|expected yes or no"
            r"|invalid parameter|out of range",
            ErrorKind.INVALID_VALUE,
        ),
    )
)


class RouterOSError(Exception):
    """The router refused or failed a command; `kind` says how, `message` is its own text."""

    def __init__(self, message: str, kind: ErrorKind, command: str = "") -> None:
        super().__init__(f"{message} (command: {command})" if command else message)
        self.message = message
        self.kind = kind
        self.command = command


def classify_error(text: str) -> ErrorKind:
    for pattern, kind in ERROR_PATTERNS:
        if pattern.search(text):
            return kind
    return ErrorKind.FAILURE


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


class PrintStyle(enum.Enum):
    AS_VALUE = "as-value"
    TERSE = "terse"
    DETAIL = "detail"


def build_print(path: str, where: Query | None = None, style: PrintStyle = PrintStyle.AS_VALUE) -> str:
    clause = f" where {where.render()}" if where is not None else ""
    if style is PrintStyle.AS_VALUE:
        return f":put [{_path(path)} print detail as-value{clause}]"
    extra = "terse" if style is PrintStyle.TERSE else "detail"
    return f"{_path(path)} print {extra} without-paging{clause}"


# ---------------------------------------------------------------------------------------------
# Output

Record = dict[str, str]
_AS_VALUE_KEY = re.compile(r"^(\.id|\.[a-z]+|[a-z][a-z0-9-]*)=")
_ITEM_LINE = re.compile(r"^\s*(\d+)\s+((?:[A-Za-z*]+\s+)*?)(?=[a-z.][a-z0-9.-]*=)(.*)$")
_KEY_START = re.compile(r"^[a-z.][a-z0-9.-]*=")
_TABLE_ITEM = re.compile(r"^\s*\d+\s")
_HEADER = re.compile(r"^\s*(Flags|Columns):|^\s*#\s")
_DIGITS3 = re.compile(r"^\d{3}$")
_TOKEN = re.compile(r'([a-z.][a-z0-9.-]*)=("(?:[^"\\]|\\.)*"|\S*)|(\S+)')


def _lines(text: str) -> list[str]:
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


def _unquote(text: str) -> str:
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        return re.sub(r"\\(.)", r"\1", text[1:-1])
    return text


def _is_data(line: str, style: PrintStyle) -> bool:
    if not line.strip():
        return True
    if style is PrintStyle.AS_VALUE:
        return bool(_AS_VALUE_KEY.match(line.strip()))
    return bool(
        _HEADER.match(line) or _TABLE_ITEM.match(line) or line[:1].isspace() or _KEY_START.match(line)
    )


def check_output(stdout: str, style: PrintStyle | None, command: str = "") -> None:
    """Raise `RouterOSError` if stdout holds anything that is not data in ``style``.

    ``style=None`` means the command prints nothing on success (add, set, remove, ...).
    """
    for raw in _lines(stdout):
        line = raw.rstrip()
        if not line.strip():
            continue
        if style is not None and _is_data(line, style):
            continue
        text = line.strip()
        raise RouterOSError(text, classify_error(text), command)


def parse_as_value(stdout: str) -> list[Record]:
    """Records from ``:put [... print as-value]``: ``.id=*1;k=v;...;.id=*2;...`` on one line.

    A ``;``-separated piece that is not ``key=value`` continues the previous value (list values
    are ``;``-joined too); a new record starts at ``.id`` or when a key repeats.
    """
    records: list[Record] = []
    current: Record | None = None
    last_key = ""
    for line in _lines(stdout):
        if not line.strip():
            continue
        for piece in line.strip().split(";"):
            match = _AS_VALUE_KEY.match(piece)
            if match is None:
                if current is not None and last_key:
                    current[last_key] += ";" + piece
                continue
            key = match.group(1)
            if current is None or key == ".id" or key in current:
                current = {}
                records.append(current)
            current[key] = piece[match.end() :]
            last_key = key
    return records


def _tokens(text: str, wrapped_at: set[int]) -> Record:
    """key=value pairs of one item; bare words continue the previous value.

    Bare words arise from space-grouped numbers (``size=17 283 541``), unquoted values with
    spaces (``type=.img file``) and values split by the console's line wrap (positions in
    ``wrapped_at``), which are re-joined without a space.
    """
    record: Record = {}
    last_key = ""
    for match in _TOKEN.finditer(text):
        key, value, bare = match.groups()
        if key is not None:
            record[key] = _unquote(value)
            last_key = key
            continue
        if not last_key:
            continue
        previous = record[last_key]
        grouped_number = bool(_DIGITS3.match(bare)) and previous.isdigit()
        if grouped_number or match.start() in wrapped_at:
            record[last_key] = previous + bare
        else:
            record[last_key] = f"{previous} {bare}"
    return record


def parse_items(stdout: str) -> list[Record]:
    """Records from ``print detail`` or ``print terse``; item number and flags go to ``#``/``flags``."""
    items: list[tuple[str, str, list[str]]] = []
    for raw in _lines(stdout):
        line = raw.rstrip()
        if not line.strip() or _HEADER.match(line):
            continue
        match = _ITEM_LINE.match(line)
        if match is not None:
            items.append((match.group(1), "".join(match.group(2).split()), [match.group(3)]))
        elif items and (line[:1].isspace() or _KEY_START.match(line)):
            items[-1][2].append(line.strip())
    records = []
    for number, flags, parts in items:
        text, wrapped_at = "", set()
        for part in parts:
            if text:
                text += " "
                wrapped_at.add(len(text))
            text += part
        record = _tokens(text, wrapped_at)
        record["#"] = number
        record["flags"] = flags
        records.append(record)
    return records


def parse_records(stdout: str, style: PrintStyle) -> list[Record]:
    return parse_as_value(stdout) if style is PrintStyle.AS_VALUE else parse_items(stdout)


_HUMAN_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*([KMGTP]?)(i?B)?$", re.IGNORECASE)
_SIZE_FACTORS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40, "P": 1 << 50}


def parse_size(text: str) -> int:
    """Bytes from ``53687091200``, ``53 687 091 200``, ``50.0GiB`` or ``10G``.

    Humanised sizes are binary (GiB) as RouterOS prints them and are only as exact as printed.
    """
    compact = text.replace(" ", "")
    if compact.isdigit():
        return int(compact)
    match = _HUMAN_SIZE.match(compact)
    if match is None:
        raise ValueError(f"not a size: {text!r}")
    return int(float(match.group(1)) * _SIZE_FACTORS[match.group(2).upper()])


def parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("yes", "true"):
        return True
    if lowered in ("no", "false", ""):
        return False
    raise ValueError(f"not a boolean: {text!r}")


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


def records_where(records: Iterable[Record], **match: str) -> list[Record]:
    """The records whose fields equal every given value (keys use ``_`` for ``-``)."""
    wanted = {k.replace("_", "-"): v for k, v in match.items()}
    return [r for r in records if all(r.get(k) == v for k, v in wanted.items())]


def join_commands(commands: Sequence[str]) -> str:
    """Several built commands as one console line, run in order (``;``-separated)."""
    return "; ".join(commands)
