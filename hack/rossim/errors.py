"""Errors and the exact RouterOS wording the simulator uses for them.

Each message carries the confidence of its wording (see docs/simulator.md):
HW = captured on hardware by a third party, DOC = MikroTik documentation,
CODE = inferred from client code, GUESS = unconfirmed; re-check on a real router.
"""

from __future__ import annotations

# API !trap categories (DOC)
CAT_MISSING = 0
CAT_ARGUMENT = 1
CAT_INTERRUPTED = 2
CAT_SCRIPT = 3
CAT_FAILURE = 4
CAT_API = 5

# --- CLI parse errors (printed with "(line L column C)") ---
SYNTAX_ERROR = "syntax error"  # HW 7.21.5
EXPECTED_END = "expected end of command"  # HW 7.21.5
BAD_COMMAND = "bad command name {word}"  # CODE
EXPECTED_COMMAND = "expected command name"  # CODE; when it is printed is a GUESS
EXPECTED_ITEM_ID = "expected item id"  # CODE (tik4net classifier)

# --- value errors (CLI: with position; API: !trap category 1) ---
NO_MATCH = "input does not match any value of {arg}"  # HW + DOC
INVALID_VALUE = "invalid value for argument {arg}"  # CODE
TRAILING = "value of {arg} contains invalid trailing characters"  # HW
EXPECTED_BOOL = "expected yes or no"  # CODE; approximate wording, GUESS
OUT_OF_RANGE = "value of {arg} out of range ({lo}..{hi})"  # GUESS
UNKNOWN_PARAMETER = "unknown parameter {arg}"  # CODE (API only)

# --- execution failures (no position) ---
NO_SUCH_ITEM = "no such item"  # CODE
NO_SUCH_COMMAND = "no such command prefix"  # CODE (API only)
FAILURE = "failure: {message}"  # CODE generic prefix
ALREADY_HAVE = "failure: already have such entry"  # CODE
NAME_EXISTS = "failure: item with such name already exists"  # CODE; which menus use it is a GUESS
NOT_ENOUGH_SPACE = "failure: not enough space"  # GUESS: only rds-csi docs/mocks
NOT_ENOUGH_PERMISSIONS = "not enough permissions (9)"  # CODE
NOT_ALLOWED_REST = "std failure: not allowed (9)"  # HW (REST only)
COMPRESSION_BTRFS = "compression only available for btrfs"  # DOC
TMPFS_TOO_BIG = "too much memory requested for tmpfs/ramdisk"  # DOC
FILE_EXISTS = "failure: file already exists"  # GUESS (rds-csi docs)
INVALID_PARAMETER = "failure: invalid parameter"  # GUESS (rds-csi docs)
DISK_IN_USE = "failure: disk is in use"  # GUESS (rds-csi docs)
DISK_BUSY = "failure: disk is busy"  # GUESS (rds-csi docs)
EXECUTION_ERROR = "failure: execution error"  # GUESS (rds-csi mock)
INTERRUPTED = "interrupted"  # DOC (API /cancel)
LOGIN_FAILED = "invalid user name or password (6)"  # GUESS
NOT_LOGGED_IN = "not logged in"  # GUESS
SESSION_TERMINATED = "session terminated on request"  # DOC


class RosError(Exception):
    """A RouterOS error: message, API category and (CLI only) a 1-based column."""

    def __init__(self, message: str, category: int = CAT_FAILURE, column: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.category = category
        self.column = column

    def at(self, column: int | None) -> RosError:
        if self.column is None and column is not None:
            self.column = column
        return self


class ValueProblem(RosError):
    """A value that does not parse for its argument (category 1, positioned on the CLI)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, CAT_ARGUMENT)


def no_match(arg: str) -> ValueProblem:
    return ValueProblem(NO_MATCH.format(arg=arg))


def invalid_value(arg: str) -> ValueProblem:
    return ValueProblem(INVALID_VALUE.format(arg=arg))


def trailing(arg: str) -> ValueProblem:
    return ValueProblem(TRAILING.format(arg=arg))


def failure(message: str) -> RosError:
    return RosError(FAILURE.format(message=message), CAT_FAILURE)
