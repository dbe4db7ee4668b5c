"""Pure fan-out rules: which mailboxes' sync filters hold a CRM record, and the copies to send.

A record of ``crm.raw`` (no mailbox) becomes one copy per mailbox whose filters for the
record's table hold it, plus a copy flagged ``attributes["left_filter"] = True`` for each
mailbox that held it before and no longer does. A delete goes to every mailbox that held it.

A mailbox with no filter record for a table uses the default templates (plus
:data:`MY_EMAILS` for e-mail); a mailbox whose filters for the table are all disabled holds
nothing of it. A filter whose FetchXML does not parse is skipped and reported; when no valid
filter of the mailbox holds the record but a broken one might, the mailbox keeps its previous
membership (a broken filter changes nothing).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Final

from pipeline.rules.fetch_ops import user_key
from pipeline.rules.fetchxml import EvalContext, FetchQuery, FetchXmlError, parse_fetchxml
from pipeline.rules.templates import SYSTEM_TEMPLATES, Template
from schemas.models import FilterRecord, ItemChange, Mailbox, MailboxStatus

#: Mailbox statuses that receive fanned-out changes (the engine parks paused ones).
FANOUT_STATUSES: Final[frozenset[MailboxStatus]] = frozenset({"enabled", "paused"})

#: The default e-mail filter: CRM e-mails the user sends (outgoing mail to send through Graph).
MY_EMAILS: Final = Template(
    "My outgoing e-mails",
    "email",
    '<fetch><entity name="email">'
    '<attribute name="subject"/>'
    '<link-entity name="activityparty" from="activityid" to="activityid" '
    'link-type="inner" alias="party">'
    '<filter type="and">'
    '<condition attribute="partyid" operator="eq-userid"/>'
    '<condition attribute="participationtypemask" operator="eq" value="1"/>'
    "</filter></link-entity></entity></fetch>",
)

#: Every default filter template of a mailbox that has none for a table.
DEFAULT_TEMPLATES: Final[tuple[Template, ...]] = (*SYSTEM_TEMPLATES, MY_EMAILS)

#: Parses FetchXML for a table (raises :class:`FetchXmlError`); the stage passes a cached one.
Parser = Callable[[str, str], FetchQuery]


def parse_for_table(text: str, table: str) -> FetchQuery:
    """:func:`parse_fetchxml` bound to ``table``, as a :data:`Parser`."""
    return parse_fetchxml(text, table=table)


@dataclass(frozen=True, slots=True)
class MailboxFilters:
    """One mailbox and its filter records for the record's table (empty: default templates)."""

    mailbox: Mailbox
    filters: Sequence[FilterRecord] = ()


@dataclass(frozen=True, slots=True)
class FilterProblem:
    """A filter that was skipped, and why."""

    mailbox_id: str
    filter_id: str
    reason: str

    def __str__(self) -> str:
        return f"filter {self.filter_id!r} of mailbox {self.mailbox_id!r} skipped: {self.reason}"


@dataclass(frozen=True, slots=True)
class Delivery:
    """One copy of the change for one mailbox."""

    mailbox_id: str
    change: ItemChange
    left_filter: bool = False


@dataclass(frozen=True, slots=True)
class FanOut:
    """The outcome for one record: who holds it now, what to send, what was skipped."""

    members: frozenset[str]
    deliveries: tuple[Delivery, ...] = ()
    problems: tuple[FilterProblem, ...] = ()


def parties_as_links(attributes: Mapping[str, Any], activity_id: str) -> list[dict[str, Any]]:
    """The reader's ``parties`` (mask, table, id, address) as ``activityparty`` rows."""
    raw = attributes.get("parties")
    if not isinstance(raw, list):
        return []
    rows: list[dict[str, Any]] = []
    for party in raw:
        if not isinstance(party, Mapping):
            continue
        rows.append(
            {
                "activityid": activity_id,
                "partyid": party.get("id"),
                "partyid_table": party.get("table"),
                "participationtypemask": party.get("mask"),
                "addressused": party.get("address"),
            }
        )
    return rows


def _copy(change: ItemChange, mailbox_id: str, *, left: bool) -> ItemChange:
    attributes = {k: v for k, v in change.attributes.items() if k != "left_filter"}
    if left:
        attributes["left_filter"] = True
    return replace(change, mailbox_id=mailbox_id, attributes=attributes)


def _queries(
    target: MailboxFilters, table: str, parse: Parser
) -> tuple[list[FetchQuery], list[FilterProblem]]:
    named, problems = named_queries(target, table, parse)
    return [q for _, q in named], problems


def named_queries(
    target: MailboxFilters, table: str, parse: Parser = parse_for_table
) -> tuple[list[tuple[str, FetchQuery]], list[FilterProblem]]:
    """The mailbox's queries for ``table``, each with its name (a filter's id, or a default
    template's name when the mailbox has no filter for the table); the ones that do not parse
    as problems."""
    mailbox_id = target.mailbox.mailbox_id
    own = [f for f in target.filters if f.table == table]
    if not own:
        texts = [(t.name, t.fetchxml) for t in DEFAULT_TEMPLATES if t.table == table]
    else:
        texts = [(f.filter_id, f.fetchxml) for f in own if f.enabled]
    queries: list[tuple[str, FetchQuery]] = []
    problems: list[FilterProblem] = []
    for name, text in texts:
        try:
            queries.append((name, parse(text, table)))
        except FetchXmlError as exc:
            problems.append(FilterProblem(mailbox_id, name, str(exc)))
        except ValueError as exc:  # anything else the parser refuses
            problems.append(FilterProblem(mailbox_id, name, f"{type(exc).__name__}: {exc}"))
    return queries, problems


@dataclass(frozen=True, slots=True)
class Routing:
    """An organisation's mailboxes for one table, indexed so that a record is evaluated only
    against the mailboxes that may hold it. A mailbox whose every filter requires the record
    to name its user in one attribute (``ownerid eq-userid``, as the system templates do) is
    filed under that user: a record owned by someone else cannot match any of its filters,
    so it is skipped unless it held the record before. Every other mailbox (a filter without
    such a condition, a broken filter) is always evaluated."""

    by_id: Mapping[str, MailboxFilters]
    always: tuple[MailboxFilters, ...]
    bound: Mapping[str, Mapping[str, tuple[MailboxFilters, ...]]]
    """attribute → user key (:func:`pipeline.rules.fetch_ops.user_key`) → mailboxes."""

    @classmethod
    def build(cls, targets: Sequence[MailboxFilters], table: str, parse: Parser) -> Routing:
        """Index ``targets`` (one organisation's) for records of ``table``."""
        always: list[MailboxFilters] = []
        bound: dict[str, dict[str, list[MailboxFilters]]] = {}
        for target in targets:
            queries, broken = _queries(target, table, parse)
            attrs = {q.user_attribute() for q in queries}
            attr = next(iter(attrs)) if len(attrs) == 1 else None
            if broken or attr is None:
                always.append(target)
                continue
            user = user_key(target.mailbox.systemuser_id)
            bound.setdefault(attr, {}).setdefault(user, []).append(target)
        return cls(
            by_id={t.mailbox.mailbox_id: t for t in targets},
            always=tuple(always),
            bound={a: {u: tuple(ts) for u, ts in users.items()} for a, users in bound.items()},
        )

    def candidates(
        self, attributes: Mapping[str, Any], previous: frozenset[str]
    ) -> list[MailboxFilters]:
        """The mailboxes :func:`fan_out` must consider for a record with ``attributes`` that
        ``previous`` held: routing it to only these gives the same result as to all."""
        found = {t.mailbox.mailbox_id: t for t in self.always}
        for attr, users in self.bound.items():
            for target in users.get(user_key(attributes.get(attr)), ()):
                found[target.mailbox.mailbox_id] = target
        for mailbox_id in previous:
            held = self.by_id.get(mailbox_id)
            if held is not None:
                found[mailbox_id] = held
        return list(found.values())


def _record_and_links(change: ItemChange) -> tuple[dict[str, Any], dict[str, Any]]:
    links = {"activityparty": parties_as_links(change.attributes, change.item_id)}
    return {"activityid": change.item_id, **change.attributes}, links


def admitted_by(
    change: ItemChange, target: MailboxFilters, now: datetime, parse: Parser = parse_for_table
) -> tuple[str, ...]:
    """The names (:func:`named_queries`) of the mailbox's filters that hold the CRM upsert
    ``change``, in filter order; empty if none does (whatever its status)."""
    if change.side != "crm" or change.table is None:
        raise ValueError(f"not a CRM record change (side {change.side!r}, table {change.table!r})")
    named, _ = named_queries(target, change.table, parse)
    record, links = _record_and_links(change)
    ctx = EvalContext(user_id=target.mailbox.systemuser_id, now=now, links=links)
    return tuple(name for name, query in named if query.matches(record, ctx))


def fan_out(
    change: ItemChange,
    targets: Sequence[MailboxFilters],
    previous: frozenset[str],
    now: datetime,
    parse: Parser = parse_for_table,
) -> FanOut:
    """Route one ``crm.raw`` change to the mailboxes of ``targets`` (its organisation's).

    ``previous`` is the set of mailbox ids that held the record; ``now`` is aware. Mailboxes
    not in :data:`FANOUT_STATUSES` receive nothing and drop out of the membership.
    """
    if change.side != "crm" or change.table is None:
        raise ValueError(f"not a CRM record change (side {change.side!r}, table {change.table!r})")
    active = [t for t in targets if t.mailbox.status in FANOUT_STATUSES]
    if change.op == "delete":
        held = [t.mailbox.mailbox_id for t in active if t.mailbox.mailbox_id in previous]
        return FanOut(
            frozenset(),
            tuple(Delivery(m, _copy(change, m, left=False)) for m in sorted(held)),
        )
    record, links = _record_and_links(change)
    members: set[str] = set()
    deliveries: list[Delivery] = []
    problems: list[FilterProblem] = []
    for target in sorted(active, key=lambda t: t.mailbox.mailbox_id):
        mailbox_id = target.mailbox.mailbox_id
        queries, broken = _queries(target, change.table, parse)
        problems.extend(broken)
        ctx = EvalContext(user_id=target.mailbox.systemuser_id, now=now, links=links)
        holds = any(q.matches(record, ctx) for q in queries)
        was = mailbox_id in previous
        if not holds and broken:
            holds = was  # a broken filter might hold it: keep what we had
        if holds:
            members.add(mailbox_id)
            deliveries.append(Delivery(mailbox_id, _copy(change, mailbox_id, left=False)))
        elif was:
            deliveries.append(Delivery(mailbox_id, _copy(change, mailbox_id, left=True), True))
    return FanOut(frozenset(members), tuple(deliveries), tuple(problems))
