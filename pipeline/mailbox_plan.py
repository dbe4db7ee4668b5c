"""``dynasync mailbox plan``: a dry run of a mailbox's first sync. Reads both sides, writes
nothing (no request but reads to Graph or Dataverse, no record to Kafka).

Both sides are listed as ``dynasync resync --full`` lists them (:func:`pipeline.resync.
list_outlook`, the readers' own full passes); each CRM row the mailbox's filters may concern
(:class:`~pipeline.fanout_rules.Routing`: the rows naming its user, or every row when a filter
does not require that) is routed as the fan-out routes it (:func:`~pipeline.fanout_rules.
fan_out`) and named by the filter that admits it (:func:`~pipeline.fanout_rules.admitted_by`:
its id, or the default template's name). The two listings are matched by
:func:`pipeline.reconcile.match`, and what an unmatched item would do is what the engine's
planner (:func:`pipeline.plan.plan`) says of it seen for the first time: a create on the other
side, or left alone and why (an Outlook item that is not tracked, a CRM e-mail not pending
send).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Final, Literal, TypeAlias

from connectors.dataverse.reader import DataverseChangeSource
from pipeline.config_store import ConfigSnapshot
from pipeline.fanout_rules import MailboxFilters, Routing, admitted_by, fan_out, parse_for_table
from pipeline.plan import MailboxRules, plan
from pipeline.reconcile import Create, Leave, Link, Update, match
from pipeline.resync import Progress, list_outlook
from pipeline.settings import Settings
from pipeline.sinks import Connections
from pipeline.stages.fanout import StaticDirectory
from schemas.models import ItemChange, Mailbox
from schemas.types import CRM_TABLES, Kind, Side

PlanAction: TypeAlias = Literal["create", "link", "update", "leave"]

#: Every action, in the order counts and listings show them.
ACTIONS: Final[tuple[PlanAction, ...]] = ("create", "link", "update", "leave")

NOT_ADMITTED: Final = "no filter of the mailbox holds it"


@dataclass(frozen=True, slots=True)
class PlanItem:
    """What the first sync would do with one item of one side."""

    side: Side
    kind: Kind
    item_id: str
    label: str
    action: PlanAction
    filter: str | None = None
    """The CRM filter that admits the row (its id, or the default template's name)."""
    target: str | None = None
    """``create``: the side it would be created on; ``link``: the other item's id."""
    reason: str = ""


@dataclass(frozen=True, slots=True)
class MailboxPlanReport:
    """A mailbox's dry run: its counts per side and action, and the listing (``limit``)."""

    mailbox_id: str
    upn: str
    status: str
    outlook_items: int
    crm_rows: int
    """CRM rows the mailbox's filters concern (those naming other users are not counted)."""
    counts: dict[str, dict[str, int]]
    items: list[PlanItem]
    listed: int
    total: int


def label(change: ItemChange) -> str:
    """A short human name for an item: a contact's name and address, else its subject."""
    p = change.projection
    if change.kind == "contact":
        name = " ".join(str(p[k]).strip() for k in ("firstname", "lastname") if p.get(k))
        email = p.get("emailaddress1")
        text = f"{name} <{email}>" if email else name
    else:
        subject = p.get("subject")
        text = str(subject).strip() if subject else ""
    return text[:120] or change.item_id


def _item(change: ItemChange, action: PlanAction, **more: str | None) -> PlanItem:
    return PlanItem(
        side=change.side,
        kind=change.kind,
        item_id=change.item_id,
        label=label(change),
        action=action,
        filter=more.get("filter"),
        target=more.get("target"),
        reason=more.get("reason") or "",
    )


async def list_crm_candidates(
    connections: Connections, mailbox: Mailbox, snapshot: ConfigSnapshot, progress: Progress
) -> tuple[list[tuple[ItemChange, str]], list[ItemChange]]:
    """The rows of the mailbox's organisation its filters may concern: the ones they hold
    (as the fan-out routes them, whether or not the mailbox is enabled yet), each with the
    name of the first filter that admits it, and the ones none holds."""
    client = await connections.dataverse(mailbox.org_id)
    target = replace(mailbox, status="enabled")
    directory = StaticDirectory((target,), tuple(snapshot.filters.values()))
    now = datetime.now(UTC)
    held: list[tuple[ItemChange, str]] = []
    left: list[ItemChange] = []
    seen = 0
    for table in CRM_TABLES:
        source = DataverseChangeSource(client, org_id=mailbox.org_id, table=table)
        filters = MailboxFilters(target, tuple(directory.filters_for(mailbox.mailbox_id, table)))
        routing = Routing.build((filters,), table, parse_for_table)
        async for batch in source.read(None):
            for row in batch.changes:
                if row.op != "upsert" or not routing.candidates(row.attributes, frozenset()):
                    continue
                routed = fan_out(row, (filters,), frozenset(), now)
                names = admitted_by(row, filters, now)
                copies = [d.change for d in routed.deliveries if not d.left_filter]
                if copies:
                    held.append((copies[0], names[0] if names else "?"))
                else:
                    left.append(replace(row, mailbox_id=mailbox.mailbox_id))
            seen += len(batch.changes)
            progress("listing crm", seen, None)
    return held, left


def plan_items(
    outlook: Sequence[ItemChange],
    held: Sequence[tuple[ItemChange, str]],
    not_admitted: Iterable[ItemChange],
    mailbox: Mailbox,
    rules: MailboxRules,
    now: str,
) -> list[PlanItem]:
    """One :class:`PlanItem` per listed item (pure): matched by :func:`match`, an unmatched
    one as the planner would handle it seen for the first time."""
    filter_of = {(c.kind, c.item_id): name for c, name in held}
    crm = [c for c, _ in held]
    items: list[PlanItem] = []

    def named(change: ItemChange) -> str | None:
        return filter_of.get((change.kind, change.item_id)) if change.side == "crm" else None

    actions = match(outlook, crm, mailbox_id=mailbox.mailbox_id, org_id=mailbox.org_id)
    for action in actions:
        if isinstance(action, Link):
            o, c = action.outlook, action.crm
            why = "same " + " / ".join(p for p in action.key[1:] if p)
            items.append(_item(o, "link", target=c.item_id, reason=why))
            items.append(_item(c, "link", target=o.item_id, reason=why, filter=named(c)))
        elif isinstance(action, Update):
            change = action.change
            items.append(
                _item(
                    change,
                    "update",
                    filter=named(change),
                    reason="synced by Dynasync before: the engine merges what it missed",
                )
            )
        elif isinstance(action, Leave):
            items.append(_item(action.change, "leave", reason=action.reason))
        else:
            assert isinstance(action, Create)
            change = action.change
            planned = plan(change, None, rules, now)
            commands = [c for c in planned.commands if c.target != change.side]
            if planned.dropped is not None or not commands:
                why = planned.dropped or "nothing to write"
                items.append(_item(change, "leave", filter=named(change), reason=why))
            else:
                to = commands[-1].target
                verb = (
                    "sent through Outlook"
                    if commands[-1].action == "send"
                    else "no counterpart on the other side"
                )
                items.append(_item(change, "create", filter=named(change), target=to, reason=verb))
    items.extend(_item(c, "leave", reason=NOT_ADMITTED) for c in not_admitted)
    order = {a: n for n, a in enumerate(ACTIONS)}
    items.sort(key=lambda i: (i.side != "outlook", order[i.action], i.kind, i.label, i.item_id))
    return items


def count(items: Iterable[PlanItem]) -> dict[str, dict[str, int]]:
    """Items per side and action, every key present."""
    counts: dict[str, dict[str, int]] = {s: dict.fromkeys(ACTIONS, 0) for s in ("outlook", "crm")}
    for item in items:
        counts[item.side][item.action] += 1
    return counts


async def mailbox_plan(
    settings: Settings,
    snapshot: ConfigSnapshot,
    mailbox: Mailbox,
    *,
    limit: int | None = None,
    progress: Progress | None = None,
) -> MailboxPlanReport:
    """List both sides of ``mailbox`` and say what its first sync would do (module docstring);
    ``limit``: at most that many items listed (the counts cover them all)."""
    report: Progress = progress or _quiet
    rules = MailboxRules.from_mailbox(mailbox, snapshot.directions.values())
    async with Connections(settings.graph, settings.dataverse, snapshot.organisations) as conn:
        outlook = await list_outlook(conn, mailbox, snapshot, report)
        held, not_admitted = await list_crm_candidates(conn, mailbox, snapshot, report)
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    items = plan_items(outlook, held, not_admitted, mailbox, rules, now)
    shown = items if limit is None else items[:limit]
    return MailboxPlanReport(
        mailbox_id=mailbox.mailbox_id,
        upn=mailbox.upn,
        status=mailbox.status,
        outlook_items=len(outlook),
        crm_rows=len(held) + len(not_admitted),
        counts=count(items),
        items=shown,
        listed=len(shown),
        total=len(items),
    )


def _quiet(phase: str, done: int, total: int | None) -> None:
    return None
