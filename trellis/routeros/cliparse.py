"""Reading what the RouterOS console prints: data in its three print forms, and errors.

Split from `trellis.routeros.cli` (which re-exports everything here): RouterOS has no structured
error channel on the CLI, so the same module that parses data decides what is not data.
"""

from __future__ import annotations

import enum
import re

# ---------------------------------------------------------------------------------------------
# Errors


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


class PrintStyle(enum.Enum):
    AS_VALUE = "as-value"
    TERSE = "terse"
    DETAIL = "detail"


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
