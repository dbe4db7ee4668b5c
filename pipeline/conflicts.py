"""What the ``conflicts`` topic says is still open (pure; the CLI reads the records).

The engine writes one record per conflict decision (:class:`pipeline.plan.ConflictEntry`) and
one ``conflict_closed`` record per resolution (:class:`schemas.conflicts.ConflictClosed`). A
conflict is *open* when the ``manual`` policy left it without a winner, no closing record names
it, and no later decision on the same pair and field superseded it. Records are read from an
outside-writable topic, so each is checked and the unusable ones are counted, not trusted.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from pipeline.plan import DELETE_FIELD, conflict_key
from pipeline.rules import ConflictRecord
from schemas.conflicts import CLOSED_TYPE
from schemas.types import CONFLICT_POLICIES, KINDS

_MAX_TEXT = 512


@dataclass(frozen=True, slots=True)
class Recorded:
    """One recorded conflict decision."""

    conflict_id: str
    mailbox_id: str
    org_id: str
    correlation_id: str
    kind: str
    field: str
    policy: str
    base: Any
    outlook: Any
    crm: Any
    winner: str | None
    decided_at: str
    offset: tuple[int, int]

    @property
    def key(self) -> str:
        """:func:`pipeline.plan.conflict_key` of this conflict (what a resolution names)."""
        policy = next(p for p in CONFLICT_POLICIES if p == self.policy)
        record = ConflictRecord(self.field, self.base, self.outlook, self.crm, policy, None)
        return conflict_key(self.correlation_id, record)

    def summary(self, *, values: bool = True) -> dict[str, Any]:
        data: dict[str, Any] = {
            "conflict_id": self.conflict_id,
            "mailbox_id": self.mailbox_id,
            "org_id": self.org_id,
            "correlation_id": self.correlation_id,
            "kind": self.kind,
            "field": self.field,
            "policy": self.policy,
            "decided_at": self.decided_at,
        }
        if values:
            data.update(base=self.base, outlook=self.outlook, crm=self.crm)
        return data


@dataclass(slots=True)
class ConflictLog:
    """The ``conflicts`` topic read: open conflicts in the order recorded, closed ids."""

    recorded: list[Recorded] = field(default_factory=list)
    closed: set[str] = field(default_factory=set)
    unreadable: int = 0

    def add(self, raw: bytes | None, partition: int, offset: int) -> None:
        """Take one record of the topic (unusable ones are counted)."""
        try:
            data: Any = orjson.loads(raw or b"")
        except orjson.JSONDecodeError:
            self.unreadable += 1
            return
        if not isinstance(data, dict):
            self.unreadable += 1
            return
        if data.get("record_type") == CLOSED_TYPE:
            closed = data.get("conflict_id")
            if isinstance(closed, str) and 0 < len(closed) <= _MAX_TEXT:
                self.closed.add(closed)
            else:
                self.unreadable += 1
            return
        recorded = _recorded(data, (partition, offset))
        if recorded is None:
            self.unreadable += 1
        else:
            self.recorded.append(recorded)

    def open(self, mailboxes: Iterable[str] = ()) -> list[Recorded]:
        """The conflicts still open (of ``mailboxes`` only, if any are given)."""
        wanted = set(mailboxes)
        latest: dict[tuple[str, str, str], Recorded] = {}
        for rec in self.recorded:
            latest[(rec.mailbox_id, rec.correlation_id, rec.field)] = rec
        return [
            rec
            for rec in self.recorded
            if rec.winner is None
            and rec.field != DELETE_FIELD
            and rec.conflict_id not in self.closed
            and latest[(rec.mailbox_id, rec.correlation_id, rec.field)] is rec
            and (not wanted or rec.mailbox_id in wanted)
        ]

    def find(self, conflict_id: str) -> Recorded | None:
        """The recorded conflict ``conflict_id`` (the last, if repeated)."""
        return next((r for r in reversed(self.recorded) if r.conflict_id == conflict_id), None)


def _recorded(data: dict[str, Any], offset: tuple[int, int]) -> Recorded | None:
    texts = {}
    for name in ("conflict_id", "mailbox_id", "org_id", "correlation_id", "kind", "field"):
        value = data.get(name)
        if not isinstance(value, str) or not 0 < len(value) <= _MAX_TEXT:
            return None
        texts[name] = value
    policy, winner, decided = data.get("policy"), data.get("winner"), data.get("decided_at")
    if texts["kind"] not in KINDS or not isinstance(policy, str) or len(policy) > 64:
        return None
    if winner not in (None, "outlook", "crm") or not isinstance(decided, str):
        return None
    if winner is None and policy not in CONFLICT_POLICIES:
        return None
    return Recorded(
        **texts,
        policy=policy,
        base=data.get("base"),
        outlook=data.get("outlook"),
        crm=data.get("crm"),
        winner=winner,
        decided_at=decided[:64],
        offset=offset,
    )
