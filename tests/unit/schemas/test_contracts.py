"""The event contracts: examples accepted, bad ones rejected, models and schemas in step."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas import codec
from schemas.errors import SchemaError
from schemas.export import JSON_DIR, render
from schemas.export import main as export_main
from schemas.models import (
    EVENT_DATA_SCHEMA_URI,
    MESSAGE_TYPES,
    ChangeEvent,
    ItemChange,
    Mailbox,
)

EXAMPLES = sorted((JSON_DIR / "examples").glob("*.json"))
BAD = sorted((JSON_DIR / "bad").glob("*.json"))


def _model_of(path: Path) -> type[Any]:
    return MESSAGE_TYPES[path.name.split("-", 1)[0]]


def test_every_message_type_has_examples_and_counterexamples() -> None:
    for name in MESSAGE_TYPES:
        assert any(p.name.startswith(name + "-") for p in EXAMPLES), name
        assert any(p.name.startswith(name + "-") for p in BAD), name


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_examples_validate_and_round_trip(path: Path) -> None:
    model = _model_of(path)
    raw = path.read_bytes()
    message = codec.loads(model, raw)
    assert isinstance(message, model)
    again = codec.loads(model, codec.dumps(message))
    assert again == message
    # every property given in the example survives the round trip
    original = json.loads(raw)
    dumped = json.loads(codec.dumps(message))
    for key, value in original.items():
        assert dumped[key] == value


@pytest.mark.parametrize("path", BAD, ids=lambda p: p.stem)
def test_bad_examples_are_rejected(path: Path) -> None:
    with pytest.raises(SchemaError) as info:
        codec.loads(_model_of(path), path.read_bytes())
    assert info.value.model == _model_of(path).__name__
    assert str(info.value).startswith("invalid ")


def test_committed_schemas_match_the_models() -> None:
    for name in MESSAGE_TYPES:
        assert (JSON_DIR / f"{name}.schema.json").read_text("utf-8") == render(name), name
    assert export_main(["--check"]) == 0


def test_schema_properties_match_dataclass_fields() -> None:
    for name, model in MESSAGE_TYPES.items():
        doc = codec.schema_document(name)
        fields = {f.name: f for f in dataclasses.fields(model)}
        assert set(doc["properties"]) == set(fields), name
        required = {
            n
            for n, f in fields.items()
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        }
        assert set(doc["required"]) == required, name
        assert doc["additionalProperties"] is False


def test_error_names_the_wrong_field() -> None:
    raw = (JSON_DIR / "examples" / "item_change-outlook-contact.json").read_bytes()
    data = json.loads(raw)
    data["op"] = "explode"
    with pytest.raises(SchemaError) as info:
        codec.loads(ItemChange, json.dumps(data))
    assert info.value.field == "op"
    assert "explode" in str(info.value)


def test_nested_error_path_is_dotted() -> None:
    raw = (JSON_DIR / "examples" / "mailbox-basic.json").read_bytes()
    data = json.loads(raw)
    data["tracked_folders"][0]["regarding_id"] = "nope"
    with pytest.raises(SchemaError) as info:
        codec.loads(Mailbox, json.dumps(data))
    assert info.value.field == "tracked_folders.0.regarding_id"


@pytest.mark.parametrize(
    "garbage",
    [b"", b"{", b"null", b"[]", b"42", b'"text"', b"\xff\xfe", b'{"change_id": 1}'],
)
def test_garbage_bytes_raise_schema_error(garbage: bytes) -> None:
    with pytest.raises(SchemaError):
        codec.loads(ItemChange, garbage)


def test_unchecked_decode_still_refuses_non_objects() -> None:
    with pytest.raises(SchemaError):
        codec.loads(ItemChange, b"[1]", check=False)


def test_cloudevents_binary_mode_round_trip() -> None:
    raw = (JSON_DIR / "examples" / "change_event-synced.json").read_bytes()
    event = codec.loads(ChangeEvent, raw)
    headers, value = codec.event_to_kafka(event)
    names = [k for k, _ in headers]
    assert names[: len(codec.CE_HEADERS)] == list(codec.CE_HEADERS)
    assert ("ce_dataschema", EVENT_DATA_SCHEMA_URI.encode()) in headers
    assert ("content-type", b"application/json") in headers
    assert codec.event_from_kafka(headers, value) == event


def test_cloudevents_binary_mode_rejects_missing_header() -> None:
    raw = (JSON_DIR / "examples" / "change_event-synced.json").read_bytes()
    headers, value = codec.event_to_kafka(codec.loads(ChangeEvent, raw))
    with pytest.raises(SchemaError) as info:
        codec.event_from_kafka([h for h in headers if h[0] != "ce_type"], value)
    assert "ce_type" in str(info.value)
    with pytest.raises(SchemaError):
        codec.event_from_kafka(headers, b"{not json")


_text = st.text(min_size=1, max_size=20)
_json_leaf = st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=20)


@given(
    item_id=_text,
    version=st.text(max_size=20),
    projection=st.dictionaries(st.text(max_size=10), _json_leaf, max_size=6),
    side=st.sampled_from(["outlook", "crm"]),
    kind=st.sampled_from(["email", "contact", "appointment", "task"]),
    op=st.sampled_from(["upsert", "delete"]),
)
def test_item_change_round_trips(
    item_id: str, version: str, projection: dict[str, Any], side: Any, kind: Any, op: Any
) -> None:
    change = ItemChange(
        change_id=f"{side}:{item_id}:{version}",
        side=side,
        org_id="o",
        kind=kind,
        op=op,
        item_id=item_id,
        version=version,
        observed_at="2026-01-01T00:00:00Z",
        projection=projection,
    )
    assert codec.loads(ItemChange, codec.dumps(change)) == change
