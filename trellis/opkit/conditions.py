"""Kubernetes-style status conditions (type/status/reason/message/observedGeneration).

Conditions are plain dicts so they can be written straight into a status patch. Setting a
condition that already holds the same values returns an equal list, which lets handlers skip
the status write entirely: a no-op reconcile makes no writes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any

Condition = dict[str, Any]
_COMPARED = ("status", "reason", "message", "observedGeneration")


def now_rfc3339() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def find(conditions: Iterable[Mapping[str, Any]] | None, cond_type: str) -> Mapping[str, Any] | None:
    for cond in conditions or ():
        if cond.get("type") == cond_type:
            return cond
    return None


def is_true(conditions: Iterable[Mapping[str, Any]] | None, cond_type: str) -> bool:
    cond = find(conditions, cond_type)
    return bool(cond and cond.get("status") == "True")


def set_condition(
    conditions: Iterable[Mapping[str, Any]] | None,
    cond_type: str,
    status: bool | str,
    reason: str,
    message: str = "",
    generation: int | None = None,
) -> list[Condition]:
    """Return a new condition list with ``cond_type`` set.

    lastTransitionTime changes only when the status flips; if nothing compared changed the
    old entry is kept as it was, so callers can compare lists to decide whether to write.
    """
    status_str = status if isinstance(status, str) else ("True" if status else "False")
    new: Condition = {"type": cond_type, "status": status_str, "reason": reason, "message": message}
    if generation is not None:
        new["observedGeneration"] = generation
    result: list[Condition] = []
    replaced = False
    for cond in conditions or ():
        if cond.get("type") != cond_type:
            result.append(dict(cond))
            continue
        replaced = True
        if all(cond.get(k) == new.get(k) for k in _COMPARED):
            result.append(dict(cond))
            continue
        same_status = cond.get("status") == status_str
        new["lastTransitionTime"] = cond.get("lastTransitionTime") if same_status else now_rfc3339()
        if not new["lastTransitionTime"]:
            new["lastTransitionTime"] = now_rfc3339()
        result.append(new)
    if not replaced:
        new["lastTransitionTime"] = now_rfc3339()
        result.append(new)
    return result


def without_times(conditions: Iterable[Mapping[str, Any]] | None) -> list[dict[str, Any]]:
    """Conditions with timestamps dropped, for comparisons in tests and change detection."""
    return [{k: v for k, v in c.items() if k != "lastTransitionTime"} for c in conditions or ()]
