"""orjson codecs and the edge loader: bytes -> validated, typed model."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from functools import cache, partial
from importlib import resources
from typing import Any, ClassVar, Protocol, TypeVar, get_args, get_origin

import orjson
from jsonschema import Draft202012Validator

from schemas.derive import hints
from schemas.errors import SchemaError
from schemas.models import MESSAGE_TYPES, ChangeEvent, ChangeEventData


class _Dataclass(Protocol):
    __dataclass_fields__: ClassVar[dict[str, Any]]


T = TypeVar("T", bound=_Dataclass)

_NAME_OF: dict[type[Any], str] = {model: name for name, model in MESSAGE_TYPES.items()}


def schema_name(model: type[Any]) -> str:
    """The file stem of ``model``'s JSON Schema."""
    try:
        return _NAME_OF[model]
    except KeyError:
        raise TypeError(f"{model.__name__} is not a top-level message type") from None


@cache
def schema_document(name: str) -> dict[str, Any]:
    """The committed JSON Schema document ``schemas/json/<name>.schema.json``."""
    text = resources.files("schemas").joinpath(f"json/{name}.schema.json").read_text("utf-8")
    doc: dict[str, Any] = json.loads(text)
    return doc


@cache
def _validator(name: str) -> Draft202012Validator:
    doc = schema_document(name)
    Draft202012Validator.check_schema(doc)
    return Draft202012Validator(doc, format_checker=Draft202012Validator.FORMAT_CHECKER)


def dumps(message: Any) -> bytes:
    """Serialise a model (or any orjson-serialisable value) to JSON bytes."""
    return orjson.dumps(message)


def _path(parts: Any) -> str:
    return ".".join(str(p) for p in parts)


def validate(model: type[Any], data: Any) -> None:
    """Validate decoded JSON against ``model``'s schema; raise SchemaError naming the field."""
    name = schema_name(model)
    errors = sorted(_validator(name).iter_errors(data), key=lambda e: (len(e.path), e.message))
    if errors:
        err = errors[0]
        path = _path(err.absolute_path)
        if err.validator == "required" or err.validator == "additionalProperties":
            # the offending property is named in the message, not the path
            reason = err.message
        else:
            reason = err.message if len(err.message) < 300 else err.message[:300] + "…"
        raise SchemaError(model.__name__, path, reason)


Converter = Callable[[Any], Any]


def build(model: type[T], data: dict[str, Any]) -> T:
    """Construct ``model`` from a decoded dict (nested dataclasses included), no validation."""
    kwargs: dict[str, Any] = {}
    for name, convert in _fields(model):
        if name in data:
            value = data[name]
            kwargs[name] = value if convert is None or value is None else convert(value)
    return model(**kwargs)


@cache
def _fields(model: type[Any]) -> tuple[tuple[str, Converter | None], ...]:
    """Each field of ``model`` with how to convert its decoded value (None: as decoded);
    worked out once per model, as decoding sits on the engine's hot path."""
    types = hints(model)
    return tuple((f.name, _converter(types[f.name])) for f in dataclasses.fields(model))


def _converter(tp: Any) -> Converter | None:
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return partial(build, tp)
    if get_origin(tp) is list:
        (item,) = get_args(tp)
        inner = _converter(item)
        if inner is None:
            return list
        return lambda value: [None if v is None else inner(v) for v in value]
    for arg in get_args(tp):
        if dataclasses.is_dataclass(arg) and isinstance(arg, type):
            return partial(_maybe_build, arg)
    return None


def _maybe_build(model: type[Any], value: Any) -> Any:
    return build(model, value) if isinstance(value, dict) else value


def loads(model: type[T], raw: bytes | bytearray | memoryview | str, *, check: bool = True) -> T:
    """Decode bytes into ``model``. With ``check`` (the default) the JSON Schema is enforced.

    Trusted internal topics may pass ``check=False`` for speed; every edge keeps it on.
    """
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise SchemaError(model.__name__, "", f"not valid JSON: {exc}") from None
    if check:
        validate(model, data)
    elif not isinstance(data, dict):
        raise SchemaError(model.__name__, "", "expected a JSON object")
    return build(model, data)


CE_HEADERS = (
    "ce_id",
    "ce_source",
    "ce_type",
    "ce_specversion",
    "ce_time",
    "ce_subject",
    "ce_dataschema",
)


def event_to_kafka(event: ChangeEvent) -> tuple[list[tuple[str, bytes]], bytes]:
    """CloudEvents binary mode: attributes as headers, data as the value."""
    headers = [(name, str(getattr(event, name)).encode()) for name in CE_HEADERS]
    headers.append(("content-type", b"application/json"))
    return headers, orjson.dumps(event.data)


def event_from_kafka(headers: list[tuple[str, bytes]] | None, value: bytes) -> ChangeEvent:
    """Rebuild and validate a ChangeEvent from a binary-mode Kafka record."""
    attrs: dict[str, Any] = {}
    for key, raw in headers or []:
        if key in CE_HEADERS:
            attrs[key] = raw.decode("utf-8", errors="replace")
    try:
        attrs["data"] = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise SchemaError("ChangeEvent", "data", f"not valid JSON: {exc}") from None
    validate(ChangeEvent, attrs)
    event = build(ChangeEvent, attrs)
    assert isinstance(event.data, ChangeEventData)
    return event
