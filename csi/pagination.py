"""Pagination for ListVolumes and ListSnapshots."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import grpc

from trellis.csi.errors import CsiError, invalid


def paginate(
    items: Sequence[Any], max_entries: int, token: str, valid_token: Callable[[str], bool]
) -> tuple[list[Any], str]:
    """A page of ``items`` (sorted by slot) after ``token``, and the next token ('' at the end).

    The token is the last slot of the previous page, so deleting or adding items between pages
    neither skips nor repeats the others.
    """
    if max_entries < 0:
        raise invalid("max_entries must not be negative")
    if token:
        if not valid_token(token):
            raise CsiError(grpc.StatusCode.ABORTED, f"invalid starting token {token!r}")
        items = [i for i in items if i.slot > token]
    items = list(items)
    if max_entries and len(items) > max_entries:
        return items[:max_entries], items[max_entries - 1].slot
    return items, ""
