"""Talos config patches on machine configs held as data: strategic merge and RFC 6902.

Strategic merge follows Talos' rules: maps merge key by key, lists append, except
- `cluster.network.podSubnets` / `serviceSubnets` and `cluster.apiServer.auditPolicy` are replaced,
- `machine.network.interfaces` items merge by `interface` name or equal `deviceSelector`,
  their `vlans` by `vlanId`, and `cluster.apiServer.admissionControl` items by `name`;
- `$patch: delete` removes a key, a keyed list item, or a whole non-v1alpha1 document;
- patch documents match config documents by apiVersion + kind + name; unknown ones are appended.
A null in a patch changes nothing (Talos decodes it as "unset"). RFC 6902 patches apply to the
v1alpha1 document only, as in Talos.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Hashable
from typing import Any

import jsonpatch

Document = dict[str, Any]
DELETE = {"$patch": "delete"}

_V1ALPHA1 = "v1alpha1-config"


class PatchError(ValueError):
    """A patch that cannot be applied; the message names the path."""


def _interface_key(item: dict[str, Any]) -> Hashable:
    if item.get("interface"):
        return ("interface", item["interface"])
    if isinstance(item.get("deviceSelector"), dict):
        return ("deviceSelector", tuple(sorted((k, repr(v)) for k, v in item["deviceSelector"].items())))
    return None


def _field_key(name: str) -> Callable[[dict[str, Any]], Hashable]:
    def key(item: dict[str, Any]) -> Hashable:
        return item.get(name)

    return key


# Paths are the dict keys from the document root; list positions are skipped, so the VLANs of
# any interface share one path.
_KEYED_LISTS: dict[tuple[str, tuple[str, ...]], Callable[[dict[str, Any]], Hashable]] = {
    (_V1ALPHA1, ("machine", "network", "interfaces")): _interface_key,
    (_V1ALPHA1, ("machine", "network", "interfaces", "vlans")): _field_key("vlanId"),
    (_V1ALPHA1, ("cluster", "apiServer", "admissionControl")): _field_key("name"),
}
_REPLACED: set[tuple[str, tuple[str, ...]]] = {
    (_V1ALPHA1, ("cluster", "network", "podSubnets")),
    (_V1ALPHA1, ("cluster", "network", "serviceSubnets")),
    (_V1ALPHA1, ("cluster", "apiServer", "auditPolicy")),
    ("NetworkRuleConfig", ("ingress",)),
    ("NetworkRuleConfig", ("portSelector", "ports")),
}


def document_kind(doc: Document) -> str:
    return str(doc["kind"]) if "kind" in doc else _V1ALPHA1


def document_identity(doc: Document) -> tuple[str, str, str]:
    if "kind" not in doc:
        return ("", _V1ALPHA1, "")
    return (str(doc.get("apiVersion", "")), str(doc["kind"]), str(doc.get("name", "")))


def _is_delete(value: Any) -> bool:
    return isinstance(value, dict) and value.get("$patch") == "delete"


def _where(kind: str, path: tuple[str, ...]) -> str:
    prefix = "" if kind == _V1ALPHA1 else f"{kind}:"
    return prefix + (".".join(path) or "<document>")


def _merge_value(kind: str, path: tuple[str, ...], left: Any, right: Any) -> Any:
    if right is None:
        return left
    if (kind, path) in _REPLACED or left is None:
        return _without_markers(right)
    if isinstance(left, dict) and isinstance(right, dict):
        return _merge_map(kind, path, left, right)
    if isinstance(left, list) and isinstance(right, list):
        keyer = _KEYED_LISTS.get((kind, path))
        if keyer is None:
            return left + [_without_markers(item) for item in right]
        return _merge_keyed_list(kind, path, left, right, keyer)
    if isinstance(left, dict | list) or isinstance(right, dict | list):
        raise PatchError(
            f"{_where(kind, path)}: cannot merge {type(right).__name__} into {type(left).__name__}"
        )
    return right


def _merge_map(
    kind: str, path: tuple[str, ...], left: dict[str, Any], right: dict[str, Any]
) -> dict[str, Any]:
    merged = dict(left)
    for key, value in right.items():
        if key == "$patch":
            continue
        if _is_delete(value):
            merged.pop(key, None)
            continue
        merged[key] = _merge_value(kind, (*path, key), left.get(key), value)
    return merged


def _merge_keyed_list(
    kind: str,
    path: tuple[str, ...],
    left: list[Any],
    right: list[Any],
    keyer: Callable[[dict[str, Any]], Hashable],
) -> list[Any]:
    merged = list(left)
    for item in right:
        if not isinstance(item, dict):
            raise PatchError(f"{_where(kind, path)}: list items must be maps")
        key = keyer(item)
        index = next(
            (
                i
                for i, old in enumerate(merged)
                if key is not None and isinstance(old, dict) and keyer(old) == key
            ),
            None,
        )
        if _is_delete(item):
            if index is not None:
                del merged[index]
            continue
        if index is None:
            merged.append(_without_markers(item))
        else:
            merged[index] = _merge_map(kind, path, merged[index], item)
    return merged


def _without_markers(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_markers(v) for k, v in value.items() if k != "$patch" and not _is_delete(v)}
    if isinstance(value, list):
        return [_without_markers(v) for v in value if not _is_delete(v)]
    return value


def strategic_merge(documents: list[Document], patch: list[Document]) -> list[Document]:
    """Apply one strategic-merge patch (one or more documents) and return new documents."""
    result = copy.deepcopy(documents)
    for patch_doc in patch:
        if not isinstance(patch_doc, dict):
            raise PatchError("a strategic merge patch document must be a map")
        identity = document_identity(patch_doc)
        kind = document_kind(patch_doc)
        index = next((i for i, doc in enumerate(result) if document_identity(doc) == identity), None)
        if patch_doc.get("$patch") == "delete":
            if kind == _V1ALPHA1:
                raise PatchError("the v1alpha1 document cannot be deleted")
            if index is not None:
                del result[index]
            continue
        if index is None:
            result.append(_without_markers(patch_doc))
        else:
            result[index] = _merge_map(kind, (), result[index], patch_doc)
    return result


def json6902(documents: list[Document], operations: list[dict[str, Any]]) -> list[Document]:
    """Apply RFC 6902 operations to the v1alpha1 document."""
    index = next((i for i, doc in enumerate(documents) if "kind" not in doc), None)
    if index is None:
        raise PatchError("JSON6902 patches need a v1alpha1 document to patch")
    try:
        patched = jsonpatch.apply_patch(documents[index], operations, in_place=False)
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
        raise PatchError(f"JSON6902 patch failed: {exc}") from None
    except (TypeError, KeyError, ValueError) as exc:
        raise PatchError(f"JSON6902 patch is malformed: {exc}") from None
    result = list(documents)
    result[index] = patched
    return result
