"""Arrow types for JSON values described by a JSON schema (as pydantic writes them).

A backfill's Parquet output holds the API's JSON answers as typed columns, so every file has the
same schema (a column inferred from one batch would not: a batch without spans, or without
explanations, gives them a null type). The schema comes from the response model itself, so it
follows the API without a second description to keep in step.
"""

from collections.abc import Mapping
from typing import Any

import pyarrow as pa

_SCALARS = {
    "string": pa.string(),
    "integer": pa.int64(),
    "number": pa.float64(),
    "boolean": pa.bool_(),
}


class UnsupportedSchemaError(ValueError):
    """A JSON schema that no single Arrow type describes (a union of several kinds)."""


def arrow_type(schema: Mapping[str, Any], defs: Mapping[str, Any] | None = None) -> pa.DataType:
    """The Arrow type of the values ``schema`` describes: objects with properties become
    structs (every field nullable), objects with only ``additionalProperties`` maps from
    string, arrays lists, ``X or null`` a nullable X. ``defs`` resolves ``$ref``s (by default
    the schema's own ``$defs``). UnsupportedSchemaError for anything else."""
    defs = schema.get("$defs", {}) if defs is None else defs
    if "$ref" in schema:
        return arrow_type(defs[schema["$ref"].rsplit("/", 1)[-1]], defs)
    for combinator in ("anyOf", "oneOf", "allOf"):
        if combinator in schema:
            options = [option for option in schema[combinator] if option.get("type") != "null"]
            if len(options) != 1:
                raise UnsupportedSchemaError(f"{combinator} of several types: {schema}")
            return arrow_type(options[0], defs)
    kind = schema.get("type")
    if kind in _SCALARS:
        return _SCALARS[kind]
    if kind == "array":
        return pa.list_(arrow_type(schema.get("items", {}), defs))
    if kind == "object" and "properties" in schema:
        fields = [
            pa.field(name, arrow_type(member, defs))
            for name, member in schema["properties"].items()
        ]
        return pa.struct(fields)
    if kind == "object" and isinstance(schema.get("additionalProperties"), Mapping):
        return pa.map_(pa.string(), arrow_type(schema["additionalProperties"], defs))
    raise UnsupportedSchemaError(f"no Arrow type for {schema}")


def plain(value: Any, kind: pa.DataType) -> Any:
    """``value`` as read from an Arrow column of type ``kind`` (``to_pylist``), back in JSON's
    terms: maps, which Arrow reads as lists of pairs, become objects again."""
    if value is None:
        return None
    if isinstance(kind, pa.MapType):
        return {key: plain(item, kind.item_type) for key, item in value}
    if isinstance(kind, pa.StructType):
        return {field.name: plain(value[field.name], field.type) for field in kind}
    if isinstance(kind, pa.ListType):
        return [plain(item, kind.value_type) for item in value]
    return value
