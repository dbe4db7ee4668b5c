"""A two-sided in-memory world driven through the pure planner: stores, feeds, writer, outcomes.

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
from pipeline.plan import MailboxRules, Plan, apply_outcome, plan
from pipeline.state import LinkState
from schemas.models import ItemChange, WriteCommand, WriteOutcome
from schemas.types import Kind, Projection, Side

NOW = "2030-01-01T00:00:00Z"


@dataclass
class World:
    rules: MailboxRules
    kind: Kind = "contact"
    outlook: MemorySide = field(default_factory=lambda: MemorySide("outlook"))
    crm: MemorySide = field(default_factory=lambda: MemorySide("crm"))
    links: dict[str, LinkState] = field(default_factory=dict)
    index: dict[tuple[Side, str], str] = field(default_factory=dict)
    feeds: dict[Side, deque[ItemChange]] = field(
        default_factory=lambda: {"outlook": deque(), "crm": deque()}
    )
    commands: deque[WriteCommand] = field(default_factory=deque)
    outcomes: deque[WriteOutcome] = field(default_factory=deque)
    cursors: dict[Side, int] = field(default_factory=lambda: {"outlook": 0, "crm": 0})
    plans: list[Plan] = field(default_factory=list)
    writes: int = 0

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

    def _store_plan(self, result: Plan, old: LinkState | None) -> None:
        self.plans.append(result)
        link = result.link
        if link is not None:
            self.links[link.correlation_id] = link
            for side in ("outlook", "crm"):
                item_id = link.side(side).item_id
                if item_id:
                    self.index[(side, item_id)] = link.correlation_id
        self.commands.extend(result.commands)

    def serve_feed(self, side: Side) -> Plan | None:
        if not self.feeds[side]:
            return None
        change = self.feeds[side].popleft()
        corr = self.index.get((side, change.item_id))
        if corr is None and change.correlation_id:
            corr = change.correlation_id if change.correlation_id in self.links else None
        link = self.links.get(corr) if corr else None
        result = plan(change, link, self.rules, NOW)
        self._store_plan(result, link)
        return result

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
        outcome = self.outcomes.popleft()
        link = self.links.get(outcome.correlation_id)
        if link is None:
            return None
        result = apply_outcome(link, outcome, self.rules, NOW)
        self._store_plan(result, link)
        return result

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
