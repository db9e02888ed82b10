"""CEL validation rules attached to pydantic models and fields.

A rule is declared next to the field or model it checks and ends up, unchanged, in the CRD's
``x-kubernetes-validations``: the apiserver evaluates it on every create and update.

* On a field type or field: ``Annotated[str, Cel("isIP(self)", "must be an IP address")]``.
* On a model: ``model_config = ConfigDict(json_schema_extra=rules(Cel(...), ...))``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

RULES_KEY = "x-kubernetes-validations"


@dataclass(frozen=True)
class Cel:
    """One ``x-kubernetes-validations`` entry.

    ``field_path`` (JSONPath relative to the object the rule sits on, e.g. ``.gateway``) makes the
    apiserver report the error against that field instead of the object holding the rule.
    """

    rule: str
    message: str
    field_path: str | None = None
    reason: str | None = None

    def as_dict(self) -> dict[str, str]:
        out = {"rule": self.rule, "message": self.message}
        if self.field_path:
            out["fieldPath"] = self.field_path
        if self.reason:
            out["reason"] = self.reason
        return out

    def __get_pydantic_json_schema__(
        self, core: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema = dict(handler(core))
        schema[RULES_KEY] = [*schema.get(RULES_KEY, []), self.as_dict()]
        return schema


def rules(*cels: Cel) -> dict[str, Any]:
    """``json_schema_extra`` for a model carrying object-level rules."""
    return {RULES_KEY: [c.as_dict() for c in cels]}


def immutable(what: str) -> Cel:
    """Transition rule: once set, the value may not change."""
    return Cel("self == oldSelf", f"{what} is immutable", reason="FieldValueForbidden")


def immutable_once_set(field: str) -> Cel:
    """Object-level transition rule for an optional field: it may be set later, never changed or removed."""
    return Cel(
        f"!has(oldSelf.{field}) || (has(self.{field}) && self.{field} == oldSelf.{field})",
        f"{field} cannot be changed or removed once set",
        field_path=f".{field}",
        reason="FieldValueForbidden",
    )


def ipv4_as_int(expr: str) -> str:
    """CEL expression turning a dotted IPv4 string into an int, for ordering comparisons.

    The Kubernetes IP library has no ordering, so ranges are compared numerically.
    """
    parts = [f"int({expr}.split('.')[{i}])" for i in range(4)]
    return f"({parts[0]} * 16777216 + {parts[1]} * 65536 + {parts[2]} * 256 + {parts[3]})"


def ipv4_le(a: str, b: str) -> str:
    return f"{ipv4_as_int(a)} <= {ipv4_as_int(b)}"
