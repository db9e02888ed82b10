"""API `?` query words evaluated on a stack per item (the `?#` operation language)."""

from __future__ import annotations

from typing import Any

from rossim import errors
from rossim.schema import View, api_value

INVALID_QUERY = "invalid query"  # GUESS


def _norm(value: Any) -> str:
    text = api_value(value)
    return {"yes": "true", "no": "false"}.get(text, text)


def _compare(view: View, body: str, op: str) -> bool:
    name, sep, value = body.partition("=")
    current = view.get(name)
    if op == "=":
        if not sep:
            return current is not None
        return _norm("" if current is None else current) == _norm(value)
    if current is None:
        return False
    left, right = _norm(current), value
    if left.lstrip("-").isdigit() and right.lstrip("-").isdigit():
        return int(left) < int(right) if op == "<" else int(left) > int(right)
    return left < right if op == "<" else left > right


def evaluate(queries: list[str], view: View) -> bool:
    stack: list[bool] = []
    try:
        for word in queries:
            body = word[1:]
            if body.startswith("#"):
                for op in body[1:]:
                    if op == "|":
                        b, a = stack.pop(), stack.pop()
                        stack.append(a or b)
                    elif op == "&":
                        b, a = stack.pop(), stack.pop()
                        stack.append(a and b)
                    elif op == "!":
                        stack.append(not stack.pop())
                    elif op == ".":
                        stack.append(stack[-1])
                    elif op.isdigit():
                        # UNCONFIRMED: positions are counted from the bottom of the stack.
                        stack.append(stack[int(op)])
                    else:
                        raise errors.RosError(INVALID_QUERY, errors.CAT_API)
            elif body.startswith("-"):
                stack.append(view.get(body[1:]) is None)
            elif body.startswith("<"):
                stack.append(_compare(view, body[1:], "<"))
            elif body.startswith(">"):
                stack.append(_compare(view, body[1:], ">"))
            elif body.startswith("="):
                stack.append(_compare(view, body[1:], "="))
            else:
                stack.append(_compare(view, body, "="))
    except IndexError:
        raise errors.RosError(INVALID_QUERY, errors.CAT_API) from None
    return all(stack)


def validate(queries: list[str]) -> None:
    """Reject a malformed stack program once, before it is run on every item."""
    evaluate(queries, {})
