"""The three-worker test's checks find what they look for (so a pass means something)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from tests.chaos.test_many_workers import claims, concurrent_writers, overlaps

T0 = datetime(2026, 1, 1, 12, 0, 0)


def _w(agent: str, start: float, end: float, mailbox: str = "m1") -> dict[str, Any]:
    return {"agent": agent, "started": start, "ended": end, "mailbox": mailbox, "path": "/x"}


def test_concurrent_writers_finds_an_overlap_between_two_processes_only() -> None:
    assert concurrent_writers([_w("A", 0, 2), _w("A", 1, 3), _w("B", 3, 4)]) == []
    found = concurrent_writers([_w("A", 0, 2), _w("B", 1.5, 3), _w("B", 1, 2, "m2")])
    assert len(found) == 1 and found[0].startswith("m1: A")


def test_claims_and_overlaps_end_a_claim_at_the_next_one_or_at_death() -> None:
    log = (
        "2026-01-01 12:00:00,000 INFO pipeline.runtime: mailboxes owned: 2 of 2 enabled "
        "(partitions 0,1): a@x, b@x\n"
        "2026-01-01 12:00:05,000 INFO pipeline.runtime: mailboxes owned: 0 of 2 enabled "
        "(partitions none)\n"
    )
    seq = claims(log)
    assert [len(upns) for _, upns in seq] == [2, 0]
    other = [(T0 + timedelta(seconds=6), frozenset({"a@x"}))]
    assert overlaps({"w1": seq, "w2": other}, {}) == []
    early = [(T0 + timedelta(seconds=4), frozenset({"a@x"}))]
    assert len(overlaps({"w1": seq, "w2": early}, {})) == 1
    # the same claim is no clash when w1 had died before it
    died = {"w1": [(T0 - timedelta(seconds=1), T0 + timedelta(seconds=3))]}
    assert overlaps({"w1": seq[:1], "w2": early}, died) == []
