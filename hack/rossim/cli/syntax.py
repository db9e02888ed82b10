"""Parse a RouterOS console script into statements (the whole script is parsed before anything runs).

Rules modelled: `;` and newlines separate commands outside quotes; `[ ... ]` is a command
substitution; `"..."` strings with backslash escapes and `$var` / `$[ ... ]` expansion; `name=value`
arguments; `where` / `find` expressions with `=`, `!=`, `~`, `<`, `>`, `!`, `and`, `or`, parentheses.
Paths may be written `/ip/address/add` or `/ip address add`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rossim import errors
from rossim.errors import RosError

_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")
_SEGMENT_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-")
_TERMINATORS = frozenset(' \t\r\n;[](){}"$')
_SIMPLE_ESCAPES = {
    '"': '"',
    "\\": "\\",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "$": "$",
    "?": "?",
    "_": " ",
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "v": "\v",
}
_HEX = frozenset("0123456789abcdefABCDEF")
SCRIPT_COMMANDS = frozenset({"put", "len", "local", "global", "nothing"})
GENERIC_VERBS = frozenset({"get"})


@dataclass
class Pos:
    line: int
    column: int


@dataclass
class Value:
    """An argument value: literal text, or parts to join (strings with `$` expansions)."""

    pos: Pos
    literal: str | None = None
    parts: list[str | Script | Var] = field(default_factory=list)
    script: Script | None = None
    var: Var | None = None
    quoted: bool = False


@dataclass
class Var:
    name: str
    pos: Pos


@dataclass
class Cond:
    op: str  # and, or, not, cmp, has
    pos: Pos
    name: str = ""
    cmp: str = ""
    value: Value | None = None
    children: list[Cond] = field(default_factory=list)


@dataclass
class Arg:
    name: str
    value: Value
    pos: Pos


@dataclass
class Statement:
    kind: str  # menu, script, nop
    pos: Pos
    menu: str = ""
    verb: str = ""
    args: list[Arg] = field(default_factory=list)
    positional: list[Value] = field(default_factory=list)
    words: list[tuple[str, Pos]] = field(default_factory=list)
    where: Cond | None = None
    text: str = ""


@dataclass
class Script:
    statements: list[Statement]


class Parser:
    def __init__(self, text: str, menus: dict[str, frozenset[str]]) -> None:
        """`menus` maps each menu path to its command words."""
        self.text = text
        self.pos = 0
        self.cwd = ""
        self.menus = menus
        self.dirs: set[str] = {""}
        for path in menus:
            parts = path.split("/")
            for i in range(1, len(parts)):
                self.dirs.add("/".join(parts[:i]))

    # ---------------------------------------------------------------- positions

    def where_(self, pos: int | None = None) -> Pos:
        p = self.pos if pos is None else pos
        line_start = self.text.rfind("\n", 0, p) + 1
        return Pos(self.text.count("\n", 0, p) + 1, p - line_start + 1)

    def fail(self, message: str, pos: int | None = None) -> RosError:
        at = self.where_(pos)
        exc = RosError(message, errors.CAT_SCRIPT, at.column)
        exc.line = at.line  # type: ignore[attr-defined]
        return exc

    def peek(self, offset: int = 0) -> str:
        i = self.pos + offset
        return self.text[i] if i < len(self.text) else ""

    def skip_blanks(self) -> None:
        while self.peek() in (" ", "\t", "\r") and self.peek():
            self.pos += 1
        if self.peek() == "\\" and self.peek(1) == "\n":
            self.pos += 2
            self.skip_blanks()

    def at_end(self, nested: bool) -> bool:
        ch = self.peek()
        return ch in ("", ";", "\n") or (nested and ch == "]")

    # ---------------------------------------------------------------- script

    def parse(self) -> Script:
        script = self.script(nested=False)
        if self.pos < len(self.text):
            raise self.fail(errors.SYNTAX_ERROR)
        return script

    def script(self, nested: bool) -> Script:
        statements = []
        while True:
            self.skip_blanks()
            if self.peek() == "" or (nested and self.peek() == "]"):
                break
            if self.peek() in (";", "\n"):
                self.pos += 1
                continue
            if self.peek() == "#":
                while self.peek() not in ("", "\n"):
                    self.pos += 1
                continue
            start = self.pos
            stmt = self.statement(nested)
            stmt.text = self.text[start : self.pos].strip()
            statements.append(stmt)
        return Script(statements)

    def statement(self, nested: bool) -> Statement:
        pos = self.where_()
        if self.peek() == ":":
            self.pos += 1
            word = self.read_while(_SEGMENT_CHARS)
            if word not in SCRIPT_COMMANDS:
                raise self.fail(errors.BAD_COMMAND.format(word=word), self.pos - len(word) - 1)
            stmt = Statement("script", pos, verb=word)
            self.arguments(stmt, nested)
            return stmt
        menu, verb = self.path()
        if verb is None:
            if not self.at_end(nested):
                raise self.fail(errors.EXPECTED_COMMAND)
            return Statement("nop", pos, menu=menu)
        stmt = Statement("menu", pos, menu=menu, verb=verb)
        outer, self.cwd = self.cwd, menu
        try:
            if verb == "find":
                self.skip_blanks()
                if self.peek_word() == "where":
                    self.pos += 5
                stmt.where = self.expression(nested)
            else:
                self.arguments(stmt, nested)
        finally:
            self.cwd = outer
        return stmt

    def read_while(self, chars: frozenset[str]) -> str:
        start = self.pos
        while self.peek() and self.peek() in chars:
            self.pos += 1
        return self.text[start : self.pos]

    def peek_word(self) -> str:
        end = self.pos
        while end < len(self.text) and self.text[end] in _NAME_CHARS:
            end += 1
        return self.text[self.pos : end]

    def path(self) -> tuple[str, str | None]:
        cur = "" if self.peek() == "/" else self.cwd
        sep = self.pos
        while True:
            if self.peek() == "/":
                sep = self.pos
                self.pos += 1
            elif self.peek() in (" ", "\t"):
                sep = self.pos
                self.skip_blanks()
            word_start = self.pos
            word = self.read_while(_SEGMENT_CHARS)
            if not word:
                if self.peek() == "/":
                    continue
                return cur, None
            child = f"{cur}/{word}" if cur else word
            if child in self.menus or child in self.dirs:
                cur = child
                if self.peek() not in ("/", " ", "\t"):
                    return (cur, None) if self.at_end(True) or self.peek() == "" else self._bad_after(cur)
                continue
            if cur in self.menus and (word in self.menus[cur] or word in GENERIC_VERBS):
                return cur, word
            if cur not in self.menus or self.peek() == "/":
                raise self.fail(errors.SYNTAX_ERROR, self.pos)
            del word_start
            raise self.fail(errors.BAD_COMMAND.format(word=word), sep)

    def _bad_after(self, cur: str) -> tuple[str, str | None]:
        raise self.fail(errors.EXPECTED_COMMAND)

    # ---------------------------------------------------------------- arguments

    def arguments(self, stmt: Statement, nested: bool) -> None:
        while True:
            self.skip_blanks()
            if self.at_end(nested):
                return
            ch = self.peek()
            start = self.pos
            if ch in ('"', "[", "$"):
                stmt.positional.append(self.value(nested))
                continue
            if ch in _TERMINATORS:
                raise self.fail(errors.EXPECTED_END)
            name = self.read_while(_NAME_CHARS)
            if name and self.peek() == "=":
                self.pos += 1
                stmt.args.append(Arg(name, self.value(nested), self.where_(start)))
                continue
            if name == "where" and self.peek() in (" ", "\t", "!", "("):
                stmt.where = self.expression(nested)
                continue
            self.pos = start
            word = self.unquoted()
            if self.peek() == "=":
                raise self.fail(errors.EXPECTED_END, start)
            if self.peek() and self.peek() not in _TERMINATORS:
                raise self.fail(errors.EXPECTED_END)
            stmt.words.append((word, self.where_(start)))
            stmt.positional.append(Value(self.where_(start), literal=word))

    def unquoted(self) -> str:
        start = self.pos
        while self.peek() and self.peek() not in _TERMINATORS and self.peek() != "=":
            self.pos += 1
        return self.text[start : self.pos]

    def value(self, nested: bool) -> Value:
        pos = self.where_()
        ch = self.peek()
        if ch == '"':
            v = self.string()
        elif ch == "[":
            v = Value(pos, script=self.substitution())
        elif ch == "$":
            v = Value(pos, var=self.variable())
        else:
            start = self.pos
            while self.peek() and self.peek() not in _TERMINATORS:
                self.pos += 1
            v = Value(pos, literal=self.text[start : self.pos])
        if self.peek() and not self.at_end(nested) and self.peek() not in (" ", "\t", "\r", ")"):
            raise self.fail(errors.EXPECTED_END)
        return v

    def substitution(self) -> Script:
        open_at = self.pos
        self.pos += 1
        script = self.script(nested=True)
        if self.peek() != "]":
            raise self.fail(errors.SYNTAX_ERROR, open_at if self.pos >= len(self.text) else None)
        self.pos += 1
        return script

    def variable(self) -> Var:
        pos = self.where_()
        self.pos += 1
        name = self.read_while(_NAME_CHARS)
        if not name:
            raise self.fail(errors.SYNTAX_ERROR)
        return Var(name, pos)

    def string(self) -> Value:
        pos = self.where_()
        open_at = self.pos
        self.pos += 1
        parts: list[str | Script | Var] = []
        buf: list[str] = []
        while True:
            ch = self.peek()
            if ch == "":
                raise self.fail(errors.SYNTAX_ERROR, open_at)
            if ch == '"':
                self.pos += 1
                break
            if ch == "\\":
                nxt = self.peek(1)
                if nxt in _SIMPLE_ESCAPES:
                    buf.append(_SIMPLE_ESCAPES[nxt])
                    self.pos += 2
                elif nxt == "\n":
                    self.pos += 2
                elif nxt in _HEX and self.peek(2) in _HEX and self.peek(2):
                    buf.append(chr(int(nxt + self.peek(2), 16)))
                    self.pos += 3
                else:
                    raise self.fail(errors.SYNTAX_ERROR)
                continue
            if ch == "$" and (self.peek(1) == "[" or (self.peek(1) and self.peek(1) in _NAME_CHARS)):
                if buf:
                    parts.append("".join(buf))
                    buf = []
                if self.peek(1) == "[":
                    self.pos += 1
                    parts.append(self.substitution())
                else:
                    parts.append(self.variable())
                continue
            buf.append(ch)
            self.pos += 1
        if buf or not parts:
            parts.append("".join(buf))
        if len(parts) == 1 and isinstance(parts[0], str):
            return Value(pos, literal=parts[0], quoted=True)
        return Value(pos, parts=parts, quoted=True)

    # ---------------------------------------------------------------- expressions

    def expression(self, nested: bool) -> Cond:
        pos = self.where_()
        left = self.conjunction(nested)
        children = [left]
        while True:
            self.skip_blanks()
            word = self.peek_word()
            if word == "or" or self.text.startswith("||", self.pos):
                self.pos += 2
            else:
                break
            children.append(self.conjunction(nested))
        return children[0] if len(children) == 1 else Cond("or", pos, children=children)

    def conjunction(self, nested: bool) -> Cond:
        pos = self.where_()
        children = []
        while True:
            self.skip_blanks()
            if self.at_end(nested) or self.peek() == ")" or self.peek_word() == "or" or self.peek() == "|":
                break
            if self.peek_word() == "and":
                self.pos += 3
                continue
            if self.text.startswith("&&", self.pos):
                self.pos += 2
                continue
            children.append(self.unary(nested))
        if not children:
            if self.at_end(nested):
                return Cond("and", pos)
            raise self.fail(errors.SYNTAX_ERROR)
        return children[0] if len(children) == 1 else Cond("and", pos, children=children)

    def unary(self, nested: bool) -> Cond:
        pos = self.where_()
        if self.peek() == "!" and self.peek(1) != "=":
            self.pos += 1
            return Cond("not", pos, children=[self.unary(nested)])
        if self.peek() == "(":
            self.pos += 1
            inner = self.expression(nested)
            self.skip_blanks()
            if self.peek() != ")":
                raise self.fail(errors.SYNTAX_ERROR)
            self.pos += 1
            return inner
        name = self.read_while(_NAME_CHARS)
        if not name:
            raise self.fail(errors.SYNTAX_ERROR)
        for op in ("!=", "<=", ">=", "=", "~", "<", ">"):
            if self.text.startswith(op, self.pos):
                self.pos += len(op)
                return Cond("cmp", pos, name=name, cmp=op, value=self.value(nested))
        return Cond("has", pos, name=name)
