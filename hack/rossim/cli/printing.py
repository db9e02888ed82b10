"""`print` output: table, detail (wrapped), terse, singleton, as-value."""

from __future__ import annotations

from typing import Any

from rossim.schema import ASVALUE, DETAIL, TERSE, Field, Menu, View, render, visible_fields

# The /disk detail layout: continuation lines are indented 15 columns in the hardware capture.
DISK_FLAG_WIDTH = 11


def flags_of(menu: Menu, view: View) -> str:
    return "".join(f.letter for f in menu.flags if f.test(view))


def flags_header(menu: Menu, views: list[View]) -> list[str]:
    present = [f for f in menu.flags if any(f.test(v) for v in views)]
    if not present:
        return []
    return ["Flags: " + "; ".join(f"{f.letter} - {f.name.upper()}" for f in present)]


def selected_fields(menu: Menu, view: View, proplist: list[str] | None, detail_only: bool) -> list[Field]:
    out = []
    for f in visible_fields(menu, view):
        if detail_only and (not f.detail or f.name == "comment"):
            continue
        if proplist is not None and f.name not in proplist:
            continue
        out.append(f)
    return out


def wrap(tokens: list[tuple[str, bool]], first_prefix: str, indent: int, width: int) -> list[str]:
    """Greedy wrap of `key=value` tokens; a token marked True always starts a new line.

    UNCONFIRMED layout: lines stay below width-1 columns, and `size`, `file-path` and `file-size`
    start their own line, which is what reproduces the captured /disk sample.
    """
    limit = width - 2 if width else 1 << 30
    lines: list[str] = []
    cur = first_prefix
    fresh = True
    for text, break_before in tokens:
        if not fresh and (break_before or len(cur) + 1 + len(text) > limit):
            lines.append(cur)
            cur, fresh = " " * indent, True
        while fresh and len(cur) + len(text) > limit and limit - indent > 8:
            room = limit - len(cur)
            lines.append(cur + text[:room])
            text = text[room:]
            cur = " " * indent
        cur = cur + text if fresh else cur + " " + text
        fresh = False
    lines.append(cur)
    return lines


def detail(menu: Menu, rows: list[tuple[int, View]], proplist: list[str] | None, width: int) -> list[str]:
    views = [v for _, v in rows]
    out = flags_header(menu, views)
    number_width = max(2, len(str(len(rows) - 1)))
    flag_width = DISK_FLAG_WIDTH if menu.path == "disk" else len(menu.flags)
    for index, (_, view) in enumerate(rows):
        prefix = f"{index:>{number_width}} " + (
            f"{flags_of(menu, view):<{flag_width}} " if flag_width else ""
        )
        indent = len(prefix)
        comment = view.get("comment")
        tokens = [
            (f"{f.name}={render(f, view[f.name], DETAIL)}", f.break_before)
            for f in selected_fields(menu, view, proplist, detail_only=True)
        ]
        if comment:
            out.append(prefix + ";;; " + str(comment))
            prefix = " " * indent
        out.extend(wrap(tokens, prefix, indent, width))
        out.append("")
    return out


def terse(menu: Menu, rows: list[tuple[int, View]], proplist: list[str] | None) -> list[str]:
    number_width = len(str(max(len(rows) - 1, 0)))
    flag_width = max((len(flags_of(menu, v)) for _, v in rows), default=0)
    out = []
    for index, (_, view) in enumerate(rows):
        flags = flags_of(menu, view)
        head = f"{index:>{number_width}} " + (f"{flags:<{flag_width}} " if flag_width else "")
        fields = [
            f"{f.name}={render(f, view[f.name], TERSE) if f.cli != 'grouped' else view[f.name]}"
            for f in selected_fields(menu, view, proplist, detail_only=False)
            if f.detail or f.name == "comment"
        ]
        out.append(head + " ".join(fields))
    return out


def table(menu: Menu, rows: list[tuple[int, View]], proplist: list[str] | None) -> list[str]:
    columns = [c for c in (proplist or menu.columns) if c in menu.by_name] or [
        f.name for f in menu.fields[:4]
    ]
    views = [v for _, v in rows]
    out = flags_header(menu, views)
    out.append("Columns: " + ", ".join(c.upper() for c in columns))
    cells = []
    for _, view in rows:
        cells.append(
            [
                render(menu.by_name[c], view[c], TERSE).strip('"') if view.get(c) is not None else ""
                for c in columns
            ]
        )
    number_width = max(1, len(str(len(rows) - 1)))
    flag_width = max((len(flags_of(menu, v)) for v in views), default=0)
    widths = [max([len(c.upper())] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    lead = " " * (flag_width + 1) if flag_width else ""
    header = f"{'#':<{number_width}} {lead}" + "  ".join(
        c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)
    )
    out.append(header.rstrip())
    for index, ((_, view), row) in enumerate(zip(rows, cells, strict=True)):
        flags = f"{flags_of(menu, view):<{flag_width}} " if flag_width else ""
        line = f"{index:<{number_width}} {flags}" + "  ".join(
            v.ljust(w) for v, w in zip(row, widths, strict=True)
        )
        out.append(line.rstrip())
    return out


def singleton(menu: Menu, view: View, proplist: list[str] | None) -> list[str]:
    fields = selected_fields(menu, view, proplist, detail_only=False)
    if not fields:
        return []
    width = max(len(f.name) for f in fields)
    return [f"{f.name:>{width + 2}}: {render(f, view[f.name], TERSE).strip(chr(34))}" for f in fields]


def as_value(menu: Menu, view: View, proplist: list[str] | None) -> dict[str, str]:
    record: dict[str, str] = {}
    if not menu.singleton:
        record[".id"] = str(view[".id"])
    for f in selected_fields(menu, view, proplist, detail_only=False):
        record[f.name] = render(f, view[f.name], ASVALUE)
    return record


def put_value(value: Any) -> str:
    """How `:put` shows a value: arrays joined with `;`, records as `key=value;...`."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return ";".join(f"{k}={v}" for k, v in value.items())
    if isinstance(value, list):
        return ";".join(put_value(v) for v in value)
    return str(value)
