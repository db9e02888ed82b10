"""A small, independent model of how the RouterOS console splits a line, for tests only.

It knows what the console treats as structure outside double quotes (``;`` ends a command,
``[`` ``]`` substitute a command, ``$`` reads a variable, ``{`` ``}`` open blocks, ``#`` starts
a comment) and how a quoted string is decoded (backslash escapes; a bare ``$`` interpolates).
"""

from __future__ import annotations

from dataclasses import dataclass

SIMPLE_ESCAPES = {'"': '"', "\\": "\\", "$": "$", "?": "?", "n": "\n", "r": "\r", "t": "\t", "_": " "}


class LexError(ValueError):
    pass


@dataclass
class Token:
    text: str  # raw
    value: str  # decoded (strings unquoted)
    quoted: bool


def decode_string(body: str) -> str:
    out, i = [], 0
    while i < len(body):
        char = body[i]
        if char == "\\":
            nxt = body[i + 1 : i + 2]
            if nxt in SIMPLE_ESCAPES:
                out.append(SIMPLE_ESCAPES[nxt])
                i += 2
                continue
            pair = body[i + 1 : i + 3]
            if len(pair) == 2 and all(c in "0123456789ABCDEFabcdef" for c in pair):
                out.append(chr(int(pair, 16)))
                i += 3
                continue
            raise LexError(f"bad escape at {i}")
        if char in "$?":
            raise LexError(f"unescaped {char!r} inside a string interpolates or asks for help")
        if char in "\r\n":
            raise LexError("line break inside a string")
        out.append(char)
        i += 1
    return "".join(out)


def split_statements(line: str) -> list[list[str]]:
    """Top-level statements; each a list of words where `[...]` and `"..."` stay inside words."""
    statements: list[list[str]] = [[]]
    word: list[str] = []
    depth = 0
    i = 0

    def flush() -> None:
        if word:
            statements[-1].append("".join(word))
            word.clear()

    while i < len(line):
        char = line[i]
        if char == '"':
            j = i + 1
            while j < len(line) and line[j] != '"':
                j += 2 if line[j] == "\\" else 1
            if j >= len(line):
                raise LexError("unterminated string")
            decode_string(line[i + 1 : j])
            word.append(line[i : j + 1])
            i = j + 1
            continue
        if char in "${}#\n\r":
            raise LexError(f"console syntax {char!r} outside a string")
        if char == "[":
            depth += 1
        elif char == "]":
            depth -= 1
            if depth < 0:
                raise LexError("unbalanced ]")
        if depth == 0 and char == ";":
            flush()
            statements.append([])
        elif depth == 0 and char == " ":
            flush()
        else:
            word.append(char)
        i += 1
    if depth:
        raise LexError("unbalanced [")
    flush()
    return [s for s in statements if s]


def argument(word: str) -> tuple[str, str]:
    """``key=value`` with the value decoded if quoted."""
    key, _, value = word.partition("=")
    if value.startswith('"') and value.endswith('"') and len(value) >= 2:
        return key, decode_string(value[1:-1])
    return key, value
