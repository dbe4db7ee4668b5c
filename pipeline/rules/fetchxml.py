"""A FetchXML subset: parser into a frozen AST, and an evaluator over one record.

Supported: ``<fetch><entity name>`` with ``<attribute>``, ``<all-attributes>``, ``<order>``
(ignored), nested ``<filter type="and|or">``, ``<condition attribute operator value>`` (the
operators of :mod:`pipeline.rules.fetch_ops`, ``in``/``not-in`` with ``<value>`` children,
``entityname`` naming a link alias), and one level of ``<link-entity name from to link-type
alias>`` with its own filter (inner / outer / any / not any), e.g. attendee membership through
``activityparty``. Anything else is refused with :class:`FetchXmlError` naming the element.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any, Final, Literal, TypeAlias

from pipeline.rules.fetch_ops import (
    MANY_VALUE_OPS,
    NO_VALUE_OPS,
    OPERATORS,
    check_argument,
    evaluate,
)

#: Largest FetchXML text accepted (characters), as in filter.schema.json.
MAX_FETCHXML_CHARS: Final = 100_000
#: Deepest filter nesting accepted.
MAX_FILTER_DEPTH: Final = 32

FilterType: TypeAlias = Literal["and", "or"]
LinkType: TypeAlias = Literal["inner", "outer", "any", "not any"]
_LINK_TYPES: Final[tuple[LinkType, ...]] = ("inner", "outer", "any", "not any")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_EMPTY: Final[Mapping[str, Sequence[Mapping[str, Any]]]] = MappingProxyType({})


class FetchXmlError(ValueError):
    """Malformed or unsupported FetchXML; ``path`` locates the element, ``reason`` says why."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}")


@dataclass(frozen=True, slots=True)
class EvalContext:
    """What a filter is evaluated against besides the record itself.

    ``user_id`` is the mailbox's systemuserid (for ``eq-userid``); ``now`` is aware and its
    time zone is the user's calendar; ``links`` holds the related rows of this record per
    link-entity name (e.g. ``"activityparty"``).
    """

    user_id: str
    now: datetime
    links: Mapping[str, Sequence[Mapping[str, Any]]] = field(default_factory=lambda: _EMPTY)

    def __post_init__(self) -> None:
        if self.now.tzinfo is None or self.now.utcoffset() is None:
            raise ValueError("EvalContext.now must be timezone-aware")


@dataclass(frozen=True, slots=True)
class Condition:
    """One ``<condition>``; ``entityname`` names a link-entity alias, if any."""

    attribute: str
    operator: str
    values: tuple[str, ...] = ()
    entityname: str | None = None


@dataclass(frozen=True, slots=True)
class Filter:
    """A ``<filter>``: its conditions and nested filters, combined by ``type``."""

    type: FilterType = "and"
    items: tuple[Condition | Filter, ...] = ()


@dataclass(frozen=True, slots=True)
class LinkEntity:
    """A ``<link-entity>``: rows of ``name`` whose ``from`` equals the record's ``to``."""

    name: str
    from_attribute: str
    to_attribute: str
    link_type: LinkType = "inner"
    alias: str | None = None
    filter: Filter | None = None


@dataclass(frozen=True, slots=True)
class FetchQuery:
    """A parsed FetchXML query over one table."""

    entity: str
    attributes: tuple[str, ...] = ()
    all_attributes: bool = False
    filter: Filter | None = None
    links: tuple[LinkEntity, ...] = ()

    def user_attribute(self) -> str | None:
        """The attribute of the record that must hold the evaluating user for this query to
        match: a condition ``eq-userid`` on the record itself at the top of an ``and`` filter
        (``ownerid`` in the system templates); None if the query has none."""
        flt = self.filter
        if flt is None or flt.type != "and":
            return None
        for item in flt.items:
            if (
                isinstance(item, Condition)
                and item.operator == "eq-userid"
                and item.entityname is None
            ):
                return item.attribute
        return None

    def matches(self, record: Mapping[str, Any], ctx: EvalContext) -> bool:
        """Whether ``record`` (Dataverse logical names) is in this query's result."""
        for link in self.links:
            if link.link_type == "outer":
                continue
            found = any(_link_row_matches(link, row, ctx) for row in _related(link, record, ctx))
            if found != (link.link_type != "not any"):
                return False
        if self.filter is None:
            return True
        return _filter_matches(self.filter, record, self, ctx)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, Mapping):
        a = a.get("id")
    if isinstance(b, Mapping):
        b = b.get("id")
    return str(a).strip().strip("{}").casefold() == str(b).strip().strip("{}").casefold()


def _related(
    link: LinkEntity, record: Mapping[str, Any], ctx: EvalContext
) -> list[Mapping[str, Any]]:
    """The rows of ``link`` related to ``record``; the join is checked when both sides carry it."""
    rows = ctx.links.get(link.name, ())
    key = record.get(link.to_attribute)
    if key is None:
        return list(rows)
    return [
        row
        for row in rows
        if row.get(link.from_attribute) is None or _same(row.get(link.from_attribute), key)
    ]


def _link_row_matches(link: LinkEntity, row: Mapping[str, Any], ctx: EvalContext) -> bool:
    return link.filter is None or _filter_matches(link.filter, row, None, ctx)


def _condition_matches(
    cond: Condition, record: Mapping[str, Any], query: FetchQuery | None, ctx: EvalContext
) -> bool:
    link = None
    if cond.entityname is not None and query is not None:
        link = next((lk for lk in query.links if (lk.alias or lk.name) == cond.entityname), None)
    if link is not None:
        rows = [r for r in _related(link, record, ctx) if _link_row_matches(link, r, ctx)]
        if not rows:
            return evaluate(cond.operator, None, cond.values, ctx.user_id, ctx.now)
        return any(
            evaluate(cond.operator, r.get(cond.attribute), cond.values, ctx.user_id, ctx.now)
            for r in rows
        )
    value = record.get(cond.attribute)
    return evaluate(cond.operator, value, cond.values, ctx.user_id, ctx.now)


def _filter_matches(
    flt: Filter, record: Mapping[str, Any], query: FetchQuery | None, ctx: EvalContext
) -> bool:
    results = (
        _condition_matches(item, record, query, ctx)
        if isinstance(item, Condition)
        else _filter_matches(item, record, query, ctx)
        for item in flt.items
    )
    return all(results) if flt.type == "and" else any(results)


# ---------------------------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------------------------


class _Path:
    """Element paths like ``fetch/entity/filter[2]/condition[1]`` for error messages."""

    def __init__(self, text: str) -> None:
        self.text = text

    def child(self, parent: ET.Element, elem: ET.Element) -> _Path:
        same = [c for c in parent if c.tag == elem.tag]
        if len(same) == 1:
            return _Path(f"{self.text}/{elem.tag}")
        return _Path(f"{self.text}/{elem.tag}[{same.index(elem) + 1}]")

    def error(self, reason: str) -> FetchXmlError:
        return FetchXmlError(self.text, reason)


def _attr(elem: ET.Element, path: _Path, name: str) -> str:
    value = elem.get(name)
    if value is None or not value.strip():
        raise path.error(f"missing attribute {name!r}")
    return value.strip()


def _name_attr(elem: ET.Element, path: _Path, name: str) -> str:
    value = _attr(elem, path, name)
    if not _NAME.match(value):
        raise path.error(f"attribute {name!r} is not a logical name: {value[:80]!r}")
    return value.lower()


def _no_text(elem: ET.Element, path: _Path) -> None:
    if elem.text is not None and elem.text.strip():
        raise path.error(f"unexpected text {elem.text.strip()[:40]!r}")


def _parse_condition(elem: ET.Element, path: _Path, aliases: frozenset[str] | None) -> Condition:
    _no_text(elem, path)
    attribute = _name_attr(elem, path, "attribute")
    operator = _attr(elem, path, "operator").lower()
    if operator not in OPERATORS:
        raise path.error(f"unknown operator {operator!r}")
    entityname = elem.get("entityname")
    if entityname is not None:
        if aliases is None:
            raise path.error("entityname is only allowed in the entity's own filter")
        if entityname not in aliases:
            raise path.error(f"entityname {entityname!r} names no link-entity alias")
    children: list[str] = []
    for child in elem:
        cpath = path.child(elem, child)
        if child.tag != "value":
            raise cpath.error("unexpected element (a condition holds only <value> elements)")
        if len(child):
            raise cpath.error("a <value> holds text only")
        children.append((child.text or "").strip())
    attr_value = elem.get("value")
    if operator in NO_VALUE_OPS:
        if attr_value is not None or children:
            raise path.error(f"operator {operator!r} takes no value")
        values: tuple[str, ...] = ()
    elif operator in MANY_VALUE_OPS:
        if attr_value is not None:
            raise path.error(f"operator {operator!r} takes <value> elements, not a value attribute")
        if not children:
            raise path.error(f"operator {operator!r} needs at least one <value>")
        values = tuple(children)
    else:
        if attr_value is not None and children:
            raise path.error(f"operator {operator!r} takes one value, got an attribute and <value>")
        found = [attr_value] if attr_value is not None else children
        if len(found) != 1:
            raise path.error(f"operator {operator!r} takes exactly one value, got {len(found)}")
        values = (found[0],)
    for value in values:
        problem = check_argument(operator, value)
        if problem is not None:
            raise path.error(problem)
    return Condition(attribute, operator, values, entityname)


def _parse_filter(
    elem: ET.Element, path: _Path, aliases: frozenset[str] | None, depth: int
) -> Filter:
    if depth > MAX_FILTER_DEPTH:
        raise path.error(f"filters nested deeper than {MAX_FILTER_DEPTH}")
    _no_text(elem, path)
    kind = (elem.get("type") or "and").strip().lower()
    if kind not in ("and", "or"):
        raise path.error(f"filter type must be 'and' or 'or', got {kind!r}")
    items: list[Condition | Filter] = []
    for child in elem:
        cpath = path.child(elem, child)
        if child.tag == "condition":
            items.append(_parse_condition(child, cpath, aliases))
        elif child.tag == "filter":
            items.append(_parse_filter(child, cpath, aliases, depth + 1))
        else:
            raise cpath.error("unexpected element (a filter holds <condition> and <filter>)")
    return Filter("and" if kind == "and" else "or", tuple(items))


def _parse_link(elem: ET.Element, path: _Path) -> LinkEntity:
    _no_text(elem, path)
    name = _name_attr(elem, path, "name")
    from_attr = _name_attr(elem, path, "from")
    to_attr = _name_attr(elem, path, "to")
    raw_type = (elem.get("link-type") or "inner").strip().lower()
    link_type = next((t for t in _LINK_TYPES if t == raw_type), None)
    if link_type is None:
        raise path.error(f"link-type must be one of {', '.join(_LINK_TYPES)}, got {raw_type!r}")
    alias = elem.get("alias")
    if alias is not None and not _NAME.match(alias):
        raise path.error(f"alias is not a name: {alias[:80]!r}")
    flt: Filter | None = None
    for child in elem:
        cpath = path.child(elem, child)
        if child.tag in ("attribute", "all-attributes", "order"):
            continue
        if child.tag == "filter":
            if flt is not None:
                raise cpath.error("a link-entity takes one <filter> (nest filters inside it)")
            flt = _parse_filter(child, cpath, None, 1)
        elif child.tag == "link-entity":
            raise cpath.error("nested link-entity is not supported")
        else:
            raise cpath.error("unexpected element in link-entity")
    return LinkEntity(name, from_attr, to_attr, link_type, alias, flt)


def _parse_entity(elem: ET.Element, path: _Path) -> FetchQuery:
    _no_text(elem, path)
    entity = _name_attr(elem, path, "name")
    attributes: list[str] = []
    all_attributes = False
    filters: list[tuple[ET.Element, _Path]] = []
    links: list[LinkEntity] = []
    for child in elem:
        cpath = path.child(elem, child)
        if child.tag == "attribute":
            attributes.append(_name_attr(child, cpath, "name"))
        elif child.tag == "all-attributes":
            all_attributes = True
        elif child.tag == "order":
            continue
        elif child.tag == "filter":
            filters.append((child, cpath))
        elif child.tag == "link-entity":
            links.append(_parse_link(child, cpath))
        else:
            raise cpath.error("unexpected element in entity")
    names = [lk.alias or lk.name for lk in links]
    if len(set(names)) != len(names):
        raise path.error("two link-entities share an alias")
    aliases = frozenset(names)
    parsed = [_parse_filter(f, p, aliases, 1) for f, p in filters]
    flt = parsed[0] if len(parsed) == 1 else (Filter("and", tuple(parsed)) if parsed else None)
    return FetchQuery(entity, tuple(attributes), all_attributes, flt, tuple(links))


def parse_fetchxml(text: str, *, table: str | None = None) -> FetchQuery:
    """Parse FetchXML ``text``; with ``table``, its entity must be that table.

    Raises :class:`FetchXmlError` (a ``ValueError``) naming the element path and the reason.
    """
    if not isinstance(text, str):
        raise FetchXmlError("<document>", f"expected text, got {type(text).__name__}")
    if len(text) > MAX_FETCHXML_CHARS:
        raise FetchXmlError("<document>", f"larger than {MAX_FETCHXML_CHARS} characters")
    if not text.strip():
        raise FetchXmlError("<document>", "empty")
    if re.search(r"<!(DOCTYPE|ENTITY)", text, re.IGNORECASE):
        raise FetchXmlError("<document>", "DOCTYPE and ENTITY declarations are not allowed")
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        line, column = exc.position
        raise FetchXmlError(
            "<document>", f"not well-formed XML at line {line}, column {column + 1}"
        ) from None
    path = _Path(root.tag)
    if root.tag != "fetch":
        raise path.error("the root element must be <fetch>")
    _no_text(root, path)
    entities = [c for c in root if c.tag == "entity"]
    for child in root:
        if child.tag != "entity":
            raise path.child(root, child).error("unexpected element (fetch holds one <entity>)")
    if len(entities) != 1:
        raise path.error(f"fetch must hold exactly one <entity>, found {len(entities)}")
    query = _parse_entity(entities[0], path.child(root, entities[0]))
    if table is not None and query.entity != table.lower():
        raise FetchXmlError(
            f"{root.tag}/entity", f"entity {query.entity!r} does not match table {table!r}"
        )
    return query
