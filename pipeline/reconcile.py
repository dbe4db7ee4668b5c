"""Resync and takeover: match both sides of a mailbox item by item. Pure, no I/O.

:func:`match` takes what a full listing of each side read (the readers' own
:class:`~schemas.models.ItemChange` upserts) and yields one action per item or pair:

- :class:`Link` — an Outlook item and a CRM row that Dynasync does not know as a pair and whose
  natural keys agree (:func:`natural_key`): the engine links them and creates nothing;
- :class:`Update` — an item Dynasync already synced (an Outlook item stamped with a correlation
  id, or the CRM row such a stamp names): handed to the engine again, which drops what it has
  already seen and merges what it missed;
- :class:`Create` — an item with no counterpart: handed to the engine as a change, which
  creates it on the other side if its rules say so (filters, tracking);
- :class:`Leave` — nothing to do (a delete in the listing, an item of another mailbox).

Natural keys (the issue's): contacts by e-mail address and name, appointments by globalobjectid
(Graph's iCalUId / Exchange's GlobalObjectId), email by internetMessageId, tasks by subject and
due date. Addresses and names are trimmed and case-folded; a key missing its parts is no key.
Several items with one key on a side are paired in item-id order; the rest are creates.

:func:`plan_link` is the engine's half: what one :class:`LinkProposal` does to the link table.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeAlias

from connectors.dataverse.ids import crm_row_id
from pipeline.plan import DEFAULT_TABLE, Drop, MailboxRules, Plan, plan
from pipeline.state import LinkState, SideState, correlation_id_for
from schemas.models import ItemChange
from schemas.resync import LinkProposal
from schemas.types import Kind, Projection

NaturalKey: TypeAlias = tuple[str, ...]

#: Projection fields of each kind's natural key.
KEY_FIELDS: Final[Mapping[Kind, tuple[str, ...]]] = {
    "contact": ("emailaddress1", "firstname", "lastname"),
    "appointment": ("globalobjectid",),
    "email": ("messageid",),
    "task": ("subject", "scheduledend"),
}


def _text(value: Any) -> str:
    return " ".join(value.split()).casefold() if isinstance(value, str) else ""


def natural_key(kind: Kind, projection: Projection) -> NaturalKey | None:
    """The key an item of ``kind`` is matched by across the two sides (None: it has none)."""
    if kind == "contact":
        email = _text(projection.get("emailaddress1"))
        name = " ".join(
            p for p in (_text(projection.get("firstname")), _text(projection.get("lastname"))) if p
        )
        return ("contact", email, name) if email or name else None
    if kind == "appointment":
        uid = projection.get("globalobjectid")
        return ("appointment", uid.strip()) if isinstance(uid, str) and uid.strip() else None
    if kind == "email":
        mid = projection.get("messageid")
        return ("email", mid.strip()) if isinstance(mid, str) and mid.strip() else None
    subject = _text(projection.get("subject"))
    due = projection.get("scheduledend")
    day = due[:10] if isinstance(due, str) else ""
    return ("task", subject, day) if subject else None


@dataclass(frozen=True, slots=True)
class Link:
    """Link ``outlook`` and ``crm``: the same item on both sides, unknown to Dynasync."""

    outlook: ItemChange
    crm: ItemChange
    key: NaturalKey


@dataclass(frozen=True, slots=True)
class Update:
    """An item of a pair Dynasync already synced: replay it (the engine drops what it saw)."""

    change: ItemChange


@dataclass(frozen=True, slots=True)
class Create:
    """An item without a counterpart: replay it (the engine creates it if its rules say so)."""

    change: ItemChange


@dataclass(frozen=True, slots=True)
class Leave:
    """Nothing to do with ``change``."""

    change: ItemChange
    reason: str


Action: TypeAlias = Link | Update | Create | Leave


def _linked_rows(
    outlook: Sequence[ItemChange], crm: Sequence[ItemChange], mailbox_id: str, org_id: str
) -> set[tuple[Kind, str]]:
    """The CRM rows (kind, lower-case id) a stamp on an Outlook item names: a row first seen
    in the CRM (its correlation id derived from its id) or one Dynasync created (its id
    derived from the correlation id)."""
    stamps = {(o.kind, o.correlation_id) for o in outlook if o.correlation_id}
    linked: set[tuple[Kind, str]] = set()
    for row in crm:
        if (row.kind, correlation_id_for(mailbox_id, "crm", row.item_id)) in stamps:
            linked.add((row.kind, row.item_id.lower()))
    by_created = {
        crm_row_id(org_id, corr, DEFAULT_TABLE[kind]).lower(): kind for kind, corr in stamps if corr
    }
    for row in crm:
        table = row.table or DEFAULT_TABLE[row.kind]
        if table == DEFAULT_TABLE[row.kind] and by_created.get(row.item_id.lower()) == row.kind:
            linked.add((row.kind, row.item_id.lower()))
    return linked


def match(
    outlook: Iterable[ItemChange], crm: Iterable[ItemChange], *, mailbox_id: str, org_id: str
) -> Iterator[Action]:
    """One action per listed item (a :class:`Link` covers two), Outlook first, in input order
    within each step. Items of another mailbox, of the wrong side and deletes are left."""
    o_items: list[ItemChange] = []
    c_items: list[ItemChange] = []
    for items, side, into in ((outlook, "outlook", o_items), (crm, "crm", c_items)):
        for change in items:
            if change.side != side or change.mailbox_id != mailbox_id:
                yield Leave(change, f"not a {side} item of mailbox {mailbox_id}")
            elif change.op != "upsert":
                yield Leave(change, "a delete in the listing")
            else:
                into.append(change)
    linked = _linked_rows(o_items, c_items, mailbox_id, org_id)
    free_o: dict[NaturalKey, list[ItemChange]] = defaultdict(list)
    free_c: dict[NaturalKey, list[ItemChange]] = defaultdict(list)
    creates: list[ItemChange] = []
    for change in o_items:
        if change.correlation_id:
            yield Update(change)
            continue
        key = natural_key(change.kind, change.projection)
        if key is None:
            creates.append(change)
        else:
            free_o[key].append(change)
    for change in c_items:
        if (change.kind, change.item_id.lower()) in linked:
            yield Update(change)
            continue
        key = natural_key(change.kind, change.projection)
        if key is None:
            creates.append(change)
        else:
            free_c[key].append(change)
    for key in sorted(set(free_o) | set(free_c)):
        os_ = sorted(free_o.get(key, ()), key=lambda c: c.item_id)
        cs = sorted(free_c.get(key, ()), key=lambda c: c.item_id)
        for o, c in zip(os_, cs, strict=False):
            yield Link(o, c, key)
        n = min(len(os_), len(cs))
        creates.extend(os_[n:])
        creates.extend(cs[n:])
    for change in creates:
        yield Create(change)


def key_text(key: NaturalKey) -> str:
    """``key`` as one line (the :class:`LinkProposal`'s ``key``)."""
    return "|".join(key)


def _agreed(kind: Kind, outlook: Projection, crm: Projection) -> Projection:
    """The fields both sides agree on, with the CRM's value: key fields that matched (equal
    but for case and spaces) agree too, so a takeover writes no case-only difference back."""
    keys = KEY_FIELDS[kind]
    out: Projection = {}
    for name, value in outlook.items():
        if name not in crm:
            continue
        other = crm[name]
        if other == value or (
            name in keys
            and isinstance(value, str)
            and isinstance(other, str)
            and _text(value) == _text(other)
        ):
            out[name] = other
    return out


def plan_link(
    proposal: LinkProposal,
    outlook_link: LinkState | None,
    crm_link: LinkState | None,
    rules: MailboxRules | None,
    now: str,
) -> Plan:
    """What a matched pair does to the link table: nothing if either item is linked already;
    else a new link (correlation id as if the CRM row had been seen first), both items known at
    their listed versions, ``base`` the fields both sides agree on. With the mailbox's
    ``rules`` (it is enabled) the pair is merged at once, so fields that differ converge by
    the conflict policy; without (a takeover before ``mailbox enable``) they converge at the
    next edit of either side."""
    o, c = proposal.outlook, proposal.crm
    for found in (outlook_link, crm_link):
        if found is not None and not found.unlinked and not found.tombstone:
            same = (found.outlook_id, (found.crm_id or "").lower()) == (
                o.item_id,
                c.item_id.lower(),
            )
            why = "pair already linked" if same else "an item is linked to another item"
            return Plan(None, (Drop(why),))
    mailbox_id = proposal.mailbox_id
    base = _agreed(c.kind, o.projection, c.projection)
    # what Outlook shows, its key fields as the CRM spells them (a case-only difference is none)
    o_seen = {**o.projection, **{k: v for k, v in base.items() if k in KEY_FIELDS[c.kind]}}
    outlook_side = SideState(item_id=o.item_id).saw(o.version, o_seen, o.observed_at)
    crm_side = SideState(item_id=c.item_id)
    link = LinkState(
        correlation_id=correlation_id_for(mailbox_id, "crm", c.item_id),
        mailbox_id=mailbox_id,
        org_id=c.org_id,
        kind=c.kind,
        crm_table=c.table or DEFAULT_TABLE[c.kind],
        outlook=outlook_side,
        crm=crm_side,
        base=base,
        origin="crm",
        updated_at=now,
    )
    if rules is not None:
        # the CRM row as a change of a pair whose CRM side was never seen: merged against base
        merged = plan(c, link, rules, now)
        if merged.link is not None:
            return merged
    seen = crm_side.saw(c.version, dict(c.projection), c.observed_at)
    return Plan(link.with_side("crm", seen))
