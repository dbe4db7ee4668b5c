"""Mailbox rules backed by the configuration store's snapshot.

A mailbox gets rules only when it is ``enabled``, its organisation exists, it is not named in
an invariant clash, and its organisation's direction records are valid; otherwise
:meth:`ConfigRules.rules_for` answers None and :meth:`ConfigRules.refusal` says why (the engine
parks such a mailbox's changes on ``dlq`` with that reason).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from pipeline.config_store import ConfigSnapshot
from pipeline.fanout_rules import Parser, Routing
from pipeline.plan import MailboxRules
from pipeline.rules import DirectionsError, TrackingConfigError, TrackingLookup
from pipeline.stages.fanout import StaticDirectory
from schemas.models import FieldDirections, FilterRecord, Mailbox


@dataclass(frozen=True, slots=True)
class _Entry:
    mailbox: Mailbox
    directions: tuple[FieldDirections, ...]
    rules: MailboxRules | None
    refusal: str
    clashing: bool
    org_present: bool


@dataclass
class ConfigRules:
    """A ``RulesSource`` over the current :class:`ConfigSnapshot` (read on every call, so a
    reloaded or updated snapshot takes effect at once; built rules are cached per record)."""

    snapshot: Callable[[], ConfigSnapshot]
    lookup: Callable[[str], TrackingLookup] | None = None
    _cache: dict[str, _Entry] = field(default_factory=dict, repr=False)
    _clash_key: tuple[int, ...] = field(default=(), repr=False)
    _clashing: frozenset[str] = field(default=frozenset(), repr=False)

    @classmethod
    def of(cls, snapshot: ConfigSnapshot) -> ConfigRules:
        """Rules over one fixed snapshot object (it may still be updated in place)."""
        return cls(lambda: snapshot)

    def rules_for(self, mailbox_id: str) -> MailboxRules | None:
        """The rules of ``mailbox_id``, or None when it may not sync now."""
        entry = self._entry(mailbox_id)
        return entry.rules if entry is not None else None

    def refusal(self, mailbox_id: str) -> str:
        """Why ``mailbox_id`` has no rules ("" when it has)."""
        entry = self._entry(mailbox_id)
        return f"mailbox {mailbox_id!r} is not registered" if entry is None else entry.refusal

    def _clashes(self, snap: ConfigSnapshot) -> frozenset[str]:
        key = (id(snap), *map(id, snap.mailboxes.values()))
        if key != self._clash_key:
            names = {p.key.partition(":")[2] for p in snap.clashes()}
            self._clash_key, self._clashing = key, frozenset(names)
        return self._clashing

    def _entry(self, mailbox_id: str) -> _Entry | None:
        snap = self.snapshot()
        mailbox = snap.mailboxes.get(mailbox_id)
        if mailbox is None:
            return None
        directions = tuple(
            d for (org, _), d in sorted(snap.directions.items()) if org == mailbox.org_id
        )
        cached = self._cache.get(mailbox_id)
        clashing = mailbox_id in self._clashes(snap)
        if (
            cached is not None
            and cached.mailbox is mailbox
            and len(cached.directions) == len(directions)
            and all(a is b for a, b in zip(cached.directions, directions, strict=True))
            and cached.clashing == clashing
            and cached.org_present == (mailbox.org_id in snap.organisations)
        ):
            return cached
        entry = self._build(snap, mailbox, directions, clashing)
        self._cache[mailbox_id] = entry
        return entry

    def _build(
        self,
        snap: ConfigSnapshot,
        mailbox: Mailbox,
        directions: tuple[FieldDirections, ...],
        clashing: bool,
    ) -> _Entry:
        org_present = mailbox.org_id in snap.organisations

        def refuse(reason: str) -> _Entry:
            return _Entry(mailbox, directions, None, reason, clashing, org_present)

        if clashing:
            problem = next(
                (p for p in snap.clashes() if p.key == f"mailbox:{mailbox.mailbox_id}"), None
            )
            return refuse(f"config clash: {problem.reason if problem else 'see dynasync config'}")
        if mailbox.status != "enabled":
            return refuse(f"mailbox {mailbox.mailbox_id!r} is {mailbox.status}, not enabled")
        if not org_present:
            return refuse(f"organisation {mailbox.org_id!r} of the mailbox does not exist")
        lookup = self.lookup(mailbox.org_id) if self.lookup is not None else None
        try:
            rules = MailboxRules.from_mailbox(mailbox, directions, lookup=lookup)
        except (DirectionsError, TrackingConfigError, ValueError) as exc:
            return refuse(f"invalid configuration: {exc}")
        return _Entry(mailbox, directions, rules, "", clashing, org_present)


class ConfigDirectory:
    """The fan-out's ``MailboxDirectory`` over the current :class:`ConfigSnapshot`: mailboxes
    of an organisation, and a mailbox's filters plus its organisation's templates.

    The indexed view is built once per snapshot; while some mailbox of the snapshot is not
    routable yet, it is rebuilt at most every ``recheck_s`` so the mailbox joins soon after
    it becomes routable."""

    def __init__(
        self,
        snapshot: Callable[[], ConfigSnapshot],
        routable: Callable[[str], bool] = lambda mailbox_id: True,
        *,
        recheck_s: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.snapshot = snapshot
        self.routable = routable
        """Whether rows may go to a mailbox yet (one just added waits until every worker's
        engine knows it; its rows come again with its resync)."""
        self._recheck_s = recheck_s
        self._clock = clock
        #: (the snapshot, its revision, when built, whether every mailbox was routable, view)
        self._view: tuple[ConfigSnapshot, int, float, bool, StaticDirectory] | None = None

    def _current(self) -> StaticDirectory:
        snap, now = self.snapshot(), self._clock()
        view = self._view
        if (
            view is not None
            and view[0] is snap
            and view[1] == snap.revision
            and (view[3] or now - view[2] < self._recheck_s)
        ):
            return view[4]
        every = snap.mailboxes.values()
        mailboxes = tuple(m for m in every if self.routable(m.mailbox_id))
        built = StaticDirectory(mailboxes, tuple(snap.filters.values()))
        self._view = (snap, snap.revision, now, len(mailboxes) == len(every), built)
        return built

    def mailboxes_for(self, org_id: str) -> Sequence[Mailbox]:
        return self._current().mailboxes_for(org_id)

    def filters_for(self, mailbox_id: str, table: str) -> Sequence[FilterRecord]:
        return self._current().filters_for(mailbox_id, table)

    def routing(self, org_id: str, table: str, parse: Parser) -> Routing:
        return self._current().routing(org_id, table, parse)
