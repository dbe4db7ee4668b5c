"""Table metadata: logical names, entity sets, keys, columns, lookups and navigations."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum


class ColType(StrEnum):
    """Column types, with their Edm names."""

    STRING = "string"
    MEMO = "memo"
    INT = "int"
    BIGINT = "bigint"
    DECIMAL = "decimal"
    BOOL = "bool"
    DATETIME = "datetime"
    DATE = "date"
    GUID = "guid"

    @property
    def edm(self) -> str:
        """The Edm type name."""
        return _EDM[self]


_EDM = {
    ColType.STRING: "Edm.String",
    ColType.MEMO: "Edm.String",
    ColType.INT: "Edm.Int32",
    ColType.BIGINT: "Edm.Int64",
    ColType.DECIMAL: "Edm.Decimal",
    ColType.BOOL: "Edm.Boolean",
    ColType.DATETIME: "Edm.DateTimeOffset",
    ColType.DATE: "Edm.Date",
    ColType.GUID: "Edm.Guid",
}


Options = tuple[tuple[int, str], ...]
"""A choice column's options: (value, label)."""


@dataclass(frozen=True)
class Column:
    """A structural property; ``options`` makes an INT column a choice (picklist) and
    ``bool_labels`` names a BOOL column's (false, true) options."""

    name: str
    type: ColType
    max_length: int | None = None
    read_only: bool = False
    min_value: int | None = None
    max_value: int | None = None
    options: Options = ()
    bool_labels: tuple[str, str] = ("No", "Yes")


@dataclass(frozen=True)
class State:
    """One ``statecode`` value, its invariant name, default status and its ``statuscode``s."""

    value: int
    label: str
    default_status: int
    statuses: Options

    @property
    def invariant(self) -> str:
        """The state's invariant name (its label without spaces)."""
        return self.label.replace(" ", "")


@dataclass(frozen=True)
class Lookup:
    """A lookup attribute (``_<attribute>_value``) and its single-valued navigations."""

    attribute: str
    targets: Mapping[str, str]  # navigation property name -> target logical name
    bindable: bool = True

    @property
    def value_name(self) -> str:
        """The read-side property name, e.g. ``_ownerid_value``."""
        return f"_{self.attribute}_value"


@dataclass(frozen=True)
class Table:
    """One Dataverse table."""

    logical: str
    entity_set: str
    primary_key: str
    primary_name: str
    schema_name: str
    columns: Mapping[str, Column]
    lookups: Mapping[str, Lookup]
    user_owned: bool
    party_navigation: str | None = None
    default_state: tuple[int, int] = (0, 1)
    computed_fullname: bool = False
    navigations: Mapping[str, tuple[Lookup, str]] = field(default_factory=dict)
    lookup_by_value: Mapping[str, Lookup] = field(default_factory=dict)
    object_type_code: int = 0
    display_name: str = ""
    display_collection_name: str = ""
    states: tuple[State, ...] = ()
    """Table definitions only (``EntityDefinitions``): type code, labels, state/status options."""

    @staticmethod
    def build(
        logical: str,
        entity_set: str,
        primary_key: str,
        primary_name: str,
        schema_name: str,
        columns: list[Column],
        lookups: list[Lookup],
        *,
        user_owned: bool,
        party_navigation: str | None = None,
        default_state: tuple[int, int] = (0, 1),
        computed_fullname: bool = False,
    ) -> Table:
        """Make a table and its navigation indexes."""
        navs: dict[str, tuple[Lookup, str]] = {}
        for lookup in lookups:
            for nav, target in lookup.targets.items():
                navs[nav] = (lookup, target)
        return Table(
            logical=logical,
            entity_set=entity_set,
            primary_key=primary_key,
            primary_name=primary_name,
            schema_name=schema_name,
            columns={c.name: c for c in columns},
            lookups={lk.attribute: lk for lk in lookups},
            user_owned=user_owned,
            party_navigation=party_navigation,
            default_state=default_state,
            computed_fullname=computed_fullname,
            navigations=navs,
            lookup_by_value={lk.value_name: lk for lk in lookups},
        )

    def property_type(self, name: str) -> ColType | None:
        """The type of a readable property (column or ``_x_value``), else None."""
        col = self.columns.get(name)
        if col is not None:
            return col.type
        if name in self.lookup_by_value:
            return ColType.GUID
        return None

    def readable_properties(self) -> list[str]:
        """Every property a row shows, columns first, then lookup values."""
        return [*self.columns, *self.lookup_by_value]


class Catalog:
    """All tables, by logical name and by entity set name."""

    def __init__(self, tables: list[Table]) -> None:
        self.by_logical = {t.logical: t for t in tables}
        self.by_set = {t.entity_set: t for t in tables}
        self.by_party_navigation = {
            t.party_navigation: t for t in tables if t.party_navigation is not None
        }

    def table(self, logical: str) -> Table:
        """The table with this logical name (KeyError if unknown)."""
        return self.by_logical[logical]
