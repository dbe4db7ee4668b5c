"""``dynasync fields show|set``: an organisation's per-field directions and policies of one
kind of item (its ``field_directions`` record on the config topic; FIELDS.md is the field map).

Every field and direction is checked against the catalogue (:mod:`schemas.fields`) by the
same rules the engine builds its directions with, before anything is written.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from pipeline.cli.common import (
    CommandError,
    UsageError,
    checked,
    emit,
    json_option,
    kafka_options,
    with_config,
)
from pipeline.cli.params import IDENT
from schemas.types import CONFLICT_POLICIES, DIRECTIONS, KINDS, Kind

if TYPE_CHECKING:
    from pipeline.config_store import ConfigStore
    from schemas.models import FieldDirections

KIND_NAMES = KINDS
DIRECTION_NAMES = DIRECTIONS
POLICY_NAMES = CONFLICT_POLICIES
EDIT_VS_DELETE_NAMES = ("edit_wins", "delete_wins")
LEAVE_FILTER_NAMES = ("unlink", "delete")


def as_kind(text: str) -> Kind:
    """``text`` as a :data:`Kind`; ValueError if it is not one."""
    for kind in KINDS:
        if kind == text:
            return kind
    raise ValueError(f"unknown kind {text!r}; one of {', '.join(KINDS)}")


@click.group(name="fields")
def fields() -> None:
    """Per-field sync directions and conflict policies of an organisation."""


def _org_option(func: Any) -> Any:
    func = click.option(
        "--kind",
        required=True,
        type=click.Choice(KIND_NAMES),
        help="kind of item",
    )(func)
    return click.option("--org", "org_id", required=True, type=IDENT, help="organisation id")(func)


def parse_assignment(text: str) -> tuple[str, str]:
    """``FIELD=DIRECTION`` split and checked for shape; ValueError saying what is wrong."""
    name, sep, direction = text.partition("=")
    name, direction = name.strip(), direction.strip()
    if not sep or not name or not direction:
        raise ValueError(f"expected FIELD=DIRECTION like jobtitle=to_outlook, got {text!r}")
    if direction not in DIRECTION_NAMES:
        raise ValueError(
            f"{name}: unknown direction {direction!r}; one of {', '.join(DIRECTION_NAMES)}"
        )
    return name, direction


def effective(record: FieldDirections) -> list[dict[str, Any]]:
    """Every catalogue field of the record's kind with its direction (default ``both``)."""
    from schemas.fields import FIELDS

    return [
        {
            "field": spec.name,
            "direction": record.directions.get(spec.name, "both"),
            "fixed": spec.fixed,
            "group": spec.group,
        }
        for spec in FIELDS[record.kind]
    ]


def _data(record: FieldDirections, stored: bool) -> dict[str, Any]:
    return {
        "org_id": record.org_id,
        "kind": record.kind,
        "stored": stored,
        "conflict_policy": record.conflict_policy,
        "edit_vs_delete": record.edit_vs_delete,
        "leave_filter": record.leave_filter,
        "fields": effective(record),
    }


def _lines(record: FieldDirections, stored: bool) -> list[str]:
    head = (
        f"{record.org_id} {record.kind}: conflict policy {record.conflict_policy}, "
        f"edit vs delete {record.edit_vs_delete}, leaving a filter {record.leave_filter}"
        + ("" if stored else " (defaults: nothing stored)")
    )
    rows = []
    for item in effective(record):
        notes = [n for n in ("fixed" if item["fixed"] else "", item["group"] or "") if n]
        rows.append(f"  {item['field']:<28} {item['direction']:<11} {' '.join(notes)}".rstrip())
    return [head, *rows]


def _current(store: ConfigStore, org_id: str, kind: str) -> tuple[FieldDirections, bool]:
    from schemas.models import FieldDirections

    if org_id not in store.snapshot.organisations:
        raise CommandError(f"organisation {org_id!r} does not exist")
    found = store.snapshot.directions.get((org_id, kind))
    if found is not None:
        return found, True
    return FieldDirections(org_id=org_id, kind=as_kind(kind)), False


@fields.command("show")
@_org_option
@kafka_options
@json_option
def show(
    org_id: str,
    kind: str,
    bootstrap: str | None,
    topic_prefix: str | None,
    timeout: float,
    as_json: bool,
) -> int:
    """Show every field of KIND with its direction, and the policies."""

    async def act(store: ConfigStore) -> tuple[FieldDirections, bool]:
        return _current(store, org_id, kind)

    record, stored = with_config(bootstrap, topic_prefix, timeout, act)
    emit(as_json, _data(record, stored), _lines(record, stored))
    return 0


@fields.command("set")
@_org_option
@click.argument("assignments", nargs=-1, metavar="[FIELD=DIRECTION]...")
@click.option("--reset", "resets", multiple=True, help="back to both ways (repeatable)")
@click.option("--policy", type=click.Choice(POLICY_NAMES), help="same-field conflict policy")
@click.option("--edit-vs-delete", type=click.Choice(EDIT_VS_DELETE_NAMES))
@click.option("--leave-filter", type=click.Choice(LEAVE_FILTER_NAMES))
@click.option("--dry-run", is_flag=True, help="check and show, write nothing")
@kafka_options
@json_option
def set_(
    org_id: str,
    kind: str,
    assignments: tuple[str, ...],
    resets: tuple[str, ...],
    policy: str | None,
    edit_vs_delete: str | None,
    leave_filter: str | None,
    dry_run: bool,
    bootstrap: str | None,
    topic_prefix: str | None,
    timeout: float,
    as_json: bool,
) -> int:
    """Set field directions (FIELD=both|to_outlook|to_crm|none) and policies of KIND.

    Fields of the optional groups (address2, address3, percentcomplete) are refused: a
    mailbox without the group could not use the record."""
    changes: dict[str, str] = {}
    try:
        for text in assignments:
            name, direction = parse_assignment(text)
            if name in changes:
                raise ValueError(f"{name}: given twice")
            changes[name] = direction
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    for name in resets:
        if name in changes:
            raise UsageError(f"{name}: both set and reset")
        changes[name] = "both"
    if not changes and policy is None and edit_vs_delete is None and leave_filter is None:
        raise UsageError("nothing to set: give FIELD=DIRECTION, --reset, or a policy option")
    # the engine's own check, before anything connects
    _check_directions(kind, changes)

    async def act(store: ConfigStore) -> FieldDirections:
        import dataclasses

        current, _ = _current(store, org_id, kind)
        merged = {**current.directions, **changes}
        merged = {n: d for n, d in merged.items() if d != "both"}
        _check_directions(kind, merged)
        values: dict[str, Any] = {"directions": merged}
        for key, value in (
            ("conflict_policy", policy),
            ("edit_vs_delete", edit_vs_delete),
            ("leave_filter", leave_filter),
        ):
            if value is not None:
                values[key] = value
        record = dataclasses.replace(current, **values)
        checked(record)
        if not dry_run:
            await store.put(record)
        return record

    record = with_config(bootstrap, topic_prefix, timeout, act)
    data = {**_data(record, not dry_run), "dry_run": dry_run}
    verb = "would set" if dry_run else "set"
    emit(as_json, data, [f"{verb} {_lines(record, True)[0]}", *_lines(record, True)[1:]])
    return 0


def _check_directions(kind: str, config: dict[str, str]) -> None:
    from pipeline.rules.directions import DirectionsError, FieldDirections

    try:
        FieldDirections.build(as_kind(kind), config)
    except DirectionsError as exc:
        raise UsageError(str(exc)) from None
