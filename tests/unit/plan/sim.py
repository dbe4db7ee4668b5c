"""A two-sided in-memory world driven through the engine (:class:`pipeline.stages.engine.Engine`
over dict stores, as the engine stage drives it over changelog tables): stores, feeds, writer,
outcomes.

Both sides are ``connectors.memory.MemorySide`` stores written through ``MemorySink``; every
store mutation (a user's or ours) is observed as an ItemChange on that side's feed, as a delta
reader would report it. The test chooses which queue to serve next, so any interleaving of
feeds, writes and outcomes can be explored.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field

from connectors.memory import MemorySide, MemorySink
from pipeline.plan import MailboxRules, Plan
from pipeline.stages.engine import Engine, Handled, StaticRules
from pipeline.stages.guard import GuardPolicy
from pipeline.state import LinkState, decode_link
from schemas.models import ItemChange, WriteCommand, WriteOutcome
from schemas.types import Kind, Projection, Side

NOW = "2030-01-01T00:00:00Z"


@dataclass
class World:
    rules: MailboxRules
    kind: Kind = "contact"
    outlook: MemorySide = field(default_factory=lambda: MemorySide("outlook"))
    crm: MemorySide = field(default_factory=lambda: MemorySide("crm"))
    tables: dict[str, dict[bytes, bytes]] = field(
        default_factory=lambda: {"links": {}, "index": {}, "guards": {}}
    )
    feeds: dict[Side, deque[ItemChange]] = field(
        default_factory=lambda: {"outlook": deque(), "crm": deque()}
    )
    commands: deque[WriteCommand] = field(default_factory=deque)
    outcomes: deque[WriteOutcome] = field(default_factory=deque)
    cursors: dict[Side, int] = field(default_factory=lambda: {"outlook": 0, "crm": 0})
    plans: list[Plan] = field(default_factory=list)
    writes: int = 0
    engine: Engine = field(init=False)

    def __post_init__(self) -> None:
        # the mass-delete guard has its own tests; here it never pauses
        self.engine = Engine(
            StaticRules({self.rules.mailbox_id: self.rules}),
            self.tables["links"],
            self.tables["index"],
            self.tables["guards"],
            clock=lambda: NOW,
            guard=GuardPolicy(min_count=1_000_000_000),
        )

    @property
    def links(self) -> dict[str, LinkState]:
        """Every link the engine stored, by correlation id."""
        found = (decode_link(raw) for raw in self.tables["links"].values())
        return {link.correlation_id: link for link in found}

    def store(self, side: Side) -> MemorySide:
        return self.outlook if side == "outlook" else self.crm

    def observe(self, side: Side) -> None:
        """Turn new entries of ``side``'s change log into feed changes."""
        store = self.store(side)
        for seq, item_id, deleted in store.log:
            if seq <= self.cursors[side]:
                continue
            self.cursors[side] = seq
            item = store.items.get(item_id)
            if deleted or item is None:
                change = ItemChange(
                    change_id=f"{side}:{item_id}:deleted:{seq}",
                    side=side,
                    org_id="org",
                    kind=self.kind,
                    op="delete",
                    item_id=item_id,
                    version="",
                    observed_at=NOW,
                    mailbox_id=self.rules.mailbox_id,
                )
            else:
                change = ItemChange(
                    change_id=f"{side}:{item_id}:{item.version}",
                    side=side,
                    org_id="org",
                    kind=self.kind,
                    op="upsert",
                    item_id=item_id,
                    version=str(item.version),
                    observed_at=f"2030-01-01T00:{seq // 60 % 60:02d}:{seq % 60:02d}Z",
                    mailbox_id=self.rules.mailbox_id,
                    table="contact",
                    correlation_id=item.correlation_id,
                    projection=dict(item.projection),
                    attributes={"tracked": True} if side == "outlook" else {},
                )
            self.feeds[side].append(change)

    def user_put(self, side: Side, projection: Projection, item_id: str | None = None) -> str:
        item = self.store(side).put(self.kind, projection, item_id=item_id, table="contact")
        self.observe(side)
        return item.item_id

    def user_remove(self, side: Side, item_id: str) -> None:
        self.store(side).remove(item_id)
        self.observe(side)

    def _handled(self, done: Handled) -> Plan | None:
        assert done.parked is None, done.parked
        if done.plan is not None:
            self.plans.append(done.plan)
            self.commands.extend(done.plan.commands)
        done.save()
        return done.plan

    def serve_feed(self, side: Side) -> Plan | None:
        if not self.feeds[side]:
            return None
        change = self.feeds[side].popleft()
        return self._handled(asyncio.run(self.engine.change(change, self.rules.mailbox_id)))

    def serve_command(self) -> None:
        if not self.commands:
            return
        cmd = self.commands.popleft()
        sink = MemorySink(self.store(cmd.target))
        (outcome,) = asyncio.run(sink.apply([cmd]))
        self.writes += len(sink.applied)
        self.outcomes.append(outcome)
        self.observe(cmd.target)

    def serve_outcome(self) -> Plan | None:
        if not self.outcomes:
            return None
        return self._handled(self.engine.outcome(self.outcomes.popleft()))

    def busy(self) -> bool:
        return bool(self.feeds["outlook"] or self.feeds["crm"] or self.commands or self.outcomes)

    def drain(self, limit: int = 10_000) -> int:
        steps = 0
        while self.busy():
            steps += 1
            assert steps < limit, "no quiescence: an echo loop?"
            if self.feeds["outlook"]:
                self.serve_feed("outlook")
            elif self.feeds["crm"]:
                self.serve_feed("crm")
            elif self.commands:
                self.serve_command()
            else:
                self.serve_outcome()
        return steps
