"""Several FetchXML filters per CRM table, OR-combined: does a record belong to a mailbox?"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from pipeline.rules.fetchxml import EvalContext, FetchQuery, parse_fetchxml


@dataclass(frozen=True, slots=True)
class FilterSet:
    """The filters of one mailbox: table -> queries. A record matches when any query of its
    table matches; a table with no filter matches nothing."""

    by_table: Mapping[str, tuple[FetchQuery, ...]] = field(
        default_factory=lambda: MappingProxyType({})
    )

    @classmethod
    def from_queries(cls, queries: Iterable[FetchQuery]) -> FilterSet:
        """Group parsed queries by their entity."""
        grouped: dict[str, list[FetchQuery]] = {}
        for query in queries:
            grouped.setdefault(query.entity, []).append(query)
        return cls(MappingProxyType({t: tuple(q) for t, q in grouped.items()}))

    @classmethod
    def from_fetchxml(cls, items: Iterable[tuple[str, str]]) -> FilterSet:
        """Parse ``(table, fetchxml)`` pairs; each text's entity must be its table."""
        return cls.from_queries(parse_fetchxml(text, table=table) for table, text in items)

    def tables(self) -> frozenset[str]:
        """The tables that have at least one filter."""
        return frozenset(t for t, q in self.by_table.items() if q)

    def matches(self, table: str, record: Mapping[str, Any], ctx: EvalContext) -> bool:
        """Whether ``record`` of ``table`` is held by any of the table's filters."""
        return any(q.matches(record, ctx) for q in self.by_table.get(table.lower(), ()))
