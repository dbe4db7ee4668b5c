"""Resolving a conflict the ``manual`` policy left open: the chosen side's value is written to
the other side, the conflict is closed, and a stale or repeated resolution changes nothing."""

from __future__ import annotations

from dataclasses import replace

import pytest

from pipeline.plan import conflict_key, plan, resolve_conflict
from pipeline.rules import ConflictRecord
from pipeline.state import LinkState
from schemas.conflicts import (
    ConflictClosed,
    ConflictResolution,
    decode_resolution,
    encode_resolution,
)
from schemas.errors import SchemaError
from schemas.types import Side
from tests.unit.plan.test_plan import NOW, change, linked, outcome, rules


def _held_open() -> tuple[LinkState, ConflictRecord]:
    r = rules("manual")
    link = linked(r)
    p1 = plan(
        change("outlook", "o1", "v2", {"firstname": "FromOutlook", "lastname": "Lee"}), link, r, NOW
    )
    (cmd,) = p1.commands
    p2 = plan(
        change("crm", "c1", "2", {"firstname": "FromCrm", "lastname": "Lee"}), p1.link, r, NOW
    )
    (record,) = p2.conflicts
    assert record.winner is None and not p2.commands
    assert p2.link is not None
    # the write in flight meets the CRM's edit: 412, nothing written, the conflict still open
    from pipeline.plan import apply_outcome

    p3 = apply_outcome(p2.link, outcome(cmd, "conflict"), r, NOW)
    assert p3.link is not None and not p3.commands and not p3.conflicts
    assert "firstname" in p3.link.conflicts
    return p3.link, record


def _resolution(
    link: LinkState, record: ConflictRecord, take: Side, rid: str = "r1"
) -> ConflictResolution:
    return ConflictResolution(
        resolution_id=rid,
        mailbox_id="mbx",
        conflict_id="c-1",
        correlation_id=link.correlation_id,
        field="firstname",
        conflict_key=conflict_key(link.correlation_id, record),
        take=take,
        requested_at=NOW,
    )


@pytest.mark.parametrize(
    ("take", "target", "value"), [("crm", "outlook", "FromCrm"), ("outlook", "crm", "FromOutlook")]
)
def test_resolution_writes_the_chosen_value_and_closes(
    take: Side, target: Side, value: str
) -> None:
    link, record = _held_open()
    r = rules("manual")
    result = resolve_conflict(link, _resolution(link, record, take), r, NOW)
    (cmd,) = result.commands
    assert cmd.target == target and cmd.fields == {"firstname": value} and cmd.action == "update"
    closed = [a for a in result.actions if isinstance(a, ConflictClosed)]
    assert len(closed) == 1 and closed[0].applied and closed[0].conflict_id == "c-1"
    assert result.link is not None and "firstname" not in result.link.conflicts
    # the same resolution again (a repeat after a crash) re-issues the same command only
    again = resolve_conflict(result.link, _resolution(link, record, take), r, NOW)
    assert [c.command_id for c in again.commands] == [cmd.command_id]


def test_stale_resolution_changes_nothing_but_closes() -> None:
    link, record = _held_open()
    newer = replace(record, crm="EvenNewer")
    stale = _resolution(link, newer, "crm")
    result = resolve_conflict(link, stale, rules("manual"), NOW)
    assert not result.commands and result.link is not None
    assert result.link.conflicts == link.conflicts and result.link.base == link.base
    (closed,) = result.actions
    assert (
        isinstance(closed, ConflictClosed)
        and not closed.applied
        and "no longer open" in closed.reason
    )


def test_resolution_records_round_trip_and_garbage_is_refused() -> None:
    link, record = _held_open()
    res = _resolution(link, record, "outlook")
    assert decode_resolution(encode_resolution(res)) == res
    good = encode_resolution(res)
    for raw in (
        b"",
        b"[]",
        b"{}",
        good.replace(b'"outlook"', b'"both"'),
        good.replace(b'"requested_at":"', b'"requested_at":"x'),
        good[:-1] + b',"extra":1}',
        good.replace(b'"field":"firstname"', b'"field":""'),
        good.replace(b'"field":"firstname"', b'"field":7'),
    ):
        with pytest.raises(SchemaError):
            decode_resolution(raw)
