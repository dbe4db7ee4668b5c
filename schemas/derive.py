"""Derive JSON Schema (2020-12, closed content model) from the dataclass models."""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Literal, Union, get_args, get_origin

DIALECT = "https://json-schema.org/draft/2020-12/schema"
BASE_ID = "https://dynasync.dev/schemas/"


def _type_schema(tp: Any, defs: dict[str, Any]) -> dict[str, Any]:
    origin = get_origin(tp)
    if tp is Any:
        return {}
    if tp is str:
        return {"type": "string"}
    if tp is bool:
        return {"type": "boolean"}
    if tp is int:
        return {"type": "integer"}
    if tp is float:
        return {"type": "number"}
    if tp is type(None):
        return {"type": "null"}
    if origin is Literal:
        values = list(get_args(tp))
        return {"enum": values} if len(values) > 1 else {"const": values[0]}
    if origin in (Union, types.UnionType):
        options = [_type_schema(arg, defs) for arg in get_args(tp)]
        return {"anyOf": options}
    if origin is list:
        (item,) = get_args(tp)
        return {"type": "array", "items": _type_schema(item, defs)}
    if origin is dict:
        key, value = get_args(tp)
        if key is not str:
            raise TypeError(f"dict keys must be str, got {key!r}")
        out: dict[str, Any] = {"type": "object"}
        value_schema = _type_schema(value, defs)
        if value_schema:
            out["additionalProperties"] = value_schema
        return out
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        name = tp.__name__
        if name not in defs:
            defs[name] = {}
            defs[name] = _object_schema(tp, defs)
        return {"$ref": f"#/$defs/{name}"}
    raise TypeError(f"no JSON Schema for {tp!r}")


def _simplify_nullable(schema: dict[str, Any]) -> dict[str, Any]:
    options = schema.get("anyOf")
    if not options or len(options) != 2 or {"type": "null"} not in options:
        return schema
    other = next(o for o in options if o != {"type": "null"})
    if set(other) <= {"type"} and isinstance(other.get("type"), str):
        return {"type": [other["type"], "null"]}
    if set(other) == {"enum"}:
        return {"enum": [*other["enum"], None]}
    return schema


_HINTS: dict[type[Any], dict[str, Any]] = {}


def hints(model: type[Any]) -> dict[str, Any]:
    """Resolved type hints of a dataclass model (cached)."""
    found = _HINTS.get(model)
    if found is None:
        found = _HINTS[model] = typing.get_type_hints(model)
    return found


def _object_schema(model: type[Any], defs: dict[str, Any]) -> dict[str, Any]:
    props: dict[str, Any] = {}
    required: list[str] = []
    for f in dataclasses.fields(model):
        schema = _simplify_nullable(_type_schema(hints(model)[f.name], defs))
        extra = dict(f.metadata)
        if extra and "$ref" not in schema:
            target = schema
            if "anyOf" in schema:
                target = next(o for o in schema["anyOf"] if o != {"type": "null"})
            description = extra.pop("description", None)
            target.update(extra)
            if description:
                schema["description"] = description
        props[f.name] = schema
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            required.append(f.name)
    out: dict[str, Any] = {"type": "object"}
    doc = (model.__doc__ or "").strip().splitlines()
    if doc:
        out["description"] = doc[0]
    out |= {"properties": props, "required": required, "additionalProperties": False}
    return out


def derive_schema(name: str, model: type[Any]) -> dict[str, Any]:
    """The JSON Schema document for one top-level message type."""
    defs: dict[str, Any] = {}
    body = _object_schema(model, defs)
    doc: dict[str, Any] = {"$schema": DIALECT, "$id": f"{BASE_ID}{name}.schema.json"}
    doc["title"] = model.__name__
    doc |= body
    if defs:
        doc["$defs"] = defs
    return doc
