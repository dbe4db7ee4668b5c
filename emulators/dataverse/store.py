"""In-memory rows, org-wide version numbers, tombstones, shares, and changeset rollback."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

from .metadata import Catalog

VERSION_BASE = 1_000_000


@dataclass
class Row:
    """A stored row: values by property name (``_x_value`` for lookups) and lookup targets."""

    id: str
    values: dict[str, Any]
    targets: dict[str, str] = field(default_factory=dict)

    @property
    def version(self) -> int:
        """The row's versionnumber."""
        return int(self.values["versionnumber"])

    def copy(self) -> Row:
        """A shallow copy safe to mutate."""
        return Row(self.id, dict(self.values), dict(self.targets))


@dataclass(frozen=True)
class Tombstone:
    """A deleted row, kept for change tracking."""

    id: str
    version: int


class Store:
    """All rows of all tables, with an undo journal for atomic changesets."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.rows: dict[str, dict[str, Row]] = {t: {} for t in catalog.by_logical}
        self.tombstones: dict[str, dict[str, Tombstone]] = {t: {} for t in catalog.by_logical}
        self.shares: set[tuple[str, str, str]] = set()
        self.version = VERSION_BASE
        self.expired_below = 0
        self._journal: list[Callable[[], None]] | None = None
        self._generation = 0
        self._party_index: tuple[int, dict[str, list[Row]]] | None = None

    def parties_of(self, activity_id: str) -> list[Row]:
        """The activity parties of an activity, by id (indexed, rebuilt after any change)."""
        cached = self._party_index
        if cached is None or cached[0] != self._generation:
            index: dict[str, list[Row]] = {}
            for party in self.rows["activityparty"].values():
                owner = party.values.get("_activityid_value")
                if isinstance(owner, str):
                    index.setdefault(owner, []).append(party)
            for parties in index.values():
                parties.sort(key=lambda p: p.id)
            cached = (self._generation, index)
            self._party_index = cached
        return list(cached[1].get(activity_id, []))

    def clear(self) -> None:
        """Drop every row, tombstone and share; tokens issued before are expired."""
        for logical in self.rows:
            self.rows[logical] = {}
            self.tombstones[logical] = {}
        self.shares = set()
        self._journal = None
        self._generation += 1
        self.expire_tokens()

    def next_version(self) -> int:
        """Take the next org-wide version number."""
        self.version += 1
        return self.version

    def get(self, logical: str, row_id: str) -> Row | None:
        """The row, or None."""
        return self.rows[logical].get(row_id.lower())

    def all(self, logical: str) -> list[Row]:
        """Every row of a table, by primary key."""
        return sorted(self.rows[logical].values(), key=lambda r: r.id)

    def put(self, logical: str, row: Row) -> None:
        """Insert or replace a row (journaled); a re-created id drops its tombstone."""
        table_rows = self.rows[logical]
        previous = table_rows.get(row.id)
        tomb = self.tombstones[logical].pop(row.id, None)
        table_rows[row.id] = row
        self._generation += 1

        def undo() -> None:
            self._generation += 1
            if previous is None:
                table_rows.pop(row.id, None)
            else:
                table_rows[row.id] = previous
            if tomb is not None:
                self.tombstones[logical][row.id] = tomb

        self._record(undo)

    def delete(self, logical: str, row_id: str) -> None:
        """Remove a row and leave a tombstone (journaled)."""
        table_rows = self.rows[logical]
        previous = table_rows.pop(row_id)
        tomb = Tombstone(row_id, self.next_version())
        old_tomb = self.tombstones[logical].get(row_id)
        self.tombstones[logical][row_id] = tomb
        self._generation += 1

        def undo() -> None:
            self._generation += 1
            table_rows[row_id] = previous
            if old_tomb is None:
                self.tombstones[logical].pop(row_id, None)
            else:
                self.tombstones[logical][row_id] = old_tomb

        self._record(undo)

    def share(self, logical: str, row_id: str, user_id: str) -> None:
        """Grant ``user_id`` write/delete access to one row."""
        self.shares.add((logical, row_id.lower(), user_id.lower()))

    def is_shared(self, logical: str, row_id: str, user_id: str) -> bool:
        """Whether the row is shared with the user."""
        return (logical, row_id.lower(), user_id.lower()) in self.shares

    def expire_tokens(self) -> None:
        """Make every change-tracking token issued so far expired."""
        self.expired_below = self.next_version()

    def _record(self, undo: Callable[[], None]) -> None:
        if self._journal is not None:
            self._journal.append(undo)

    def atomic(self) -> AbstractContextManager[object]:
        """On exception, undo every change made inside (joins an open transaction)."""
        if self._journal is not None:
            return nullcontext()
        return Atomic(self)


class Atomic:
    """Undo-journal transaction over a Store (not re-entrant)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def __enter__(self) -> Atomic:
        if self.store._journal is not None:
            raise RuntimeError("nested transactions are not supported")
        self.store._journal = []
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        journal = self.store._journal or []
        self.store._journal = None
        if exc_type is not None:
            for undo in reversed(journal):
                undo()
