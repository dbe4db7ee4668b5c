"""``EntityDefinitions``: table and column definitions, derived from the emulator's catalogue.

Serves ``EntityDefinitions``, ``EntityDefinitions(LogicalName='x')`` (or by ``MetadataId``),
``…/Attributes``, ``…/Attributes(LogicalName='y')``, casts such as
``…/Attributes/Microsoft.Dynamics.CRM.PicklistAttributeMetadata`` and the ``OptionSet``
navigation of choice, state, status and yes/no columns. ``$select``, ``$filter`` (enum literals
as ``Microsoft.Dynamics.CRM.AttributeTypeCode'Picklist'``, managed properties as
``RequiredLevel/Value``) and ``$expand`` (``Attributes``, ``OptionSet``, ``GlobalOptionSet``);
no paging, as the service has none for definitions. Ids are stable UUIDs derived from names.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import RESOURCE_NOT_FOUND, ApiError, bad_request
from .messages import ApiResponse
from .metadata import Catalog, ColType, Column, Lookup, Table
from .query import split_top_level

NS = "Microsoft.Dynamics.CRM"
ENTITY_NOT_FOUND = "0x80041102"
ATTRIBUTE_NOT_FOUND = "0x80041103"
_IDS = uuid.UUID("6d1f1a52-3b0e-4c55-9d0c-64796e617379")
_PATH = re.compile(
    r"^EntityDefinitions(?:\((?P<ekey>[^()]*)\))?"
    r"(?:/(?P<attrs>Attributes)(?:\((?P<akey>[^()]*)\))?"
    r"(?:/(?P<cast>[A-Za-z][A-Za-z0-9.]*))?"
    r"(?:/(?P<nav>[A-Za-z]+))?)?$"
)
_KEY = re.compile(r"^\s*LogicalName\s*=\s*'(?P<name>[^']*)'\s*$")
_GUID = re.compile(r"^[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
_UNSUPPORTED = ("$top", "$skip", "$orderby", "$count", "$skiptoken", "$deltatoken", "$search")

ENTITY_PROPS = (
    "MetadataId",
    "LogicalName",
    "SchemaName",
    "EntitySetName",
    "LogicalCollectionName",
    "CollectionSchemaName",
    "PrimaryIdAttribute",
    "PrimaryNameAttribute",
    "ObjectTypeCode",
    "OwnershipType",
    "IsActivity",
    "IsActivityParty",
    "HasActivities",
    "IsCustomEntity",
    "IsManaged",
    "IsIntersect",
    "IsValidForAdvancedFind",
    "ChangeTrackingEnabled",
    "DisplayName",
    "DisplayCollectionName",
    "Description",
    "IsCustomizable",
    "CanCreateAttributes",
    "IntroducedVersion",
)
ATTRIBUTE_PROPS = (
    "MetadataId",
    "LogicalName",
    "SchemaName",
    "EntityLogicalName",
    "AttributeType",
    "AttributeTypeName",
    "ColumnNumber",
    "DisplayName",
    "Description",
    "IsPrimaryId",
    "IsPrimaryName",
    "IsValidForCreate",
    "IsValidForUpdate",
    "IsValidForRead",
    "IsCustomAttribute",
    "IsManaged",
    "IsLogical",
    "AttributeOf",
    "RequiredLevel",
    "IsCustomizable",
    "IntroducedVersion",
)
#: Cast type → its own properties (on top of ATTRIBUTE_PROPS).
TYPE_PROPS: Mapping[str, tuple[str, ...]] = {
    "StringAttributeMetadata": ("MaxLength", "DatabaseLength", "Format", "FormatName"),
    "MemoAttributeMetadata": ("MaxLength", "DatabaseLength", "Format", "FormatName"),
    "IntegerAttributeMetadata": ("MinValue", "MaxValue", "Format"),
    "BigIntAttributeMetadata": ("MinValue", "MaxValue"),
    "DecimalAttributeMetadata": ("MinValue", "MaxValue", "Precision"),
    "BooleanAttributeMetadata": ("DefaultValue",),
    "DateTimeAttributeMetadata": ("Format", "DateTimeBehavior", "CanChangeDateTimeBehavior"),
    "UniqueIdentifierAttributeMetadata": (),
    "LookupAttributeMetadata": ("Targets", "Format"),
    "PicklistAttributeMetadata": ("DefaultFormValue",),
    "StateAttributeMetadata": ("DefaultFormValue",),
    "StatusAttributeMetadata": ("DefaultFormValue",),
}
_CHOICE_TYPES = frozenset(
    {
        "PicklistAttributeMetadata",
        "StateAttributeMetadata",
        "StatusAttributeMetadata",
        "BooleanAttributeMetadata",
    }
)
#: Enum-typed properties, usable in ``$filter`` only with their enum literal.
ENUMS: Mapping[str, str] = {
    "OwnershipType": "OwnershipTypes",
    "AttributeType": "AttributeTypeCode",
    "RequiredLevel/Value": "AttributeRequiredLevel",
}
_LABELS = frozenset({"DisplayName", "DisplayCollectionName", "Description"})
_SIMPLE = {
    ColType.STRING: ("String", "StringAttributeMetadata"),
    ColType.MEMO: ("Memo", "MemoAttributeMetadata"),
    ColType.INT: ("Integer", "IntegerAttributeMetadata"),
    ColType.BIGINT: ("BigInt", "BigIntAttributeMetadata"),
    ColType.DECIMAL: ("Decimal", "DecimalAttributeMetadata"),
    ColType.BOOL: ("Boolean", "BooleanAttributeMetadata"),
    ColType.DATETIME: ("DateTime", "DateTimeAttributeMetadata"),
    ColType.DATE: ("DateTime", "DateTimeAttributeMetadata"),
    ColType.GUID: ("Uniqueidentifier", "UniqueIdentifierAttributeMetadata"),
}
_EMAIL = re.compile(r"^(?:internal)?emailaddress\d?$")
_URL = re.compile(r"^(?:website|ftpsite)url$")
_PHONE = re.compile(
    r"^(?:telephone\d|mobilephone|fax|pager|business2|home2|callback|assistantphone|"
    r"phonenumber|faxnumber)$"
)


def metadata_id(*parts: str) -> str:
    """A stable MetadataId for a definition named by ``parts``."""
    return str(uuid.uuid5(_IDS, "/".join(parts)))


def _label(text: str, *key: str) -> dict[str, Any]:
    one = {
        "Label": text,
        "LanguageCode": 1033,
        "IsManaged": True,
        "MetadataId": metadata_id("label", *key),
        "HasChanged": None,
    }
    return {"LocalizedLabels": [one], "UserLocalizedLabel": dict(one)}


def _no_label() -> dict[str, Any]:
    return {"LocalizedLabels": [], "UserLocalizedLabel": None}


def _managed(value: Any, name: str) -> dict[str, Any]:
    return {"Value": value, "CanBeChanged": False, "ManagedPropertyLogicalName": name}


def _schema_name(logical: str) -> str:
    return logical[:1].upper() + logical[1:]


def _plural(name: str) -> str:
    if name.endswith("y"):
        return name[:-1] + "ies"
    return name + ("es" if name.endswith("x") else "s")


@dataclass(frozen=True)
class Attribute:
    """One column's definition: its JSON and, for choice columns, its option set."""

    logical: str
    cast: str
    body: dict[str, Any]
    option_set: dict[str, Any] | None = None


@dataclass(frozen=True)
class Entity:
    """One table's definition."""

    table: Table
    body: dict[str, Any]
    attributes: list[Attribute] = field(default_factory=list)


def _option(value: int, label: str, key: tuple[str, ...], **extra: Any) -> dict[str, Any]:
    return {
        "Value": value,
        "Label": _label(label, *key, str(value)),
        "Description": _no_label(),
        "Color": None,
        "IsManaged": True,
        "ExternalValue": None,
        "MetadataId": None,
        "HasChanged": None,
        **extra,
    }


def _option_set(table: Table, column: Column, kind: str) -> dict[str, Any]:
    key = (table.logical, column.name)
    base: dict[str, Any] = {
        "MetadataId": metadata_id("optionset", *key),
        "Name": f"{table.logical}_{column.name}",
        "DisplayName": _label(_schema_name(column.name), "optionset", *key),
        "Description": _no_label(),
        "IsCustomOptionSet": False,
        "IsGlobal": False,
        "IsManaged": True,
        "IntroducedVersion": "5.0.0.0",
        "HasChanged": None,
    }
    if kind == "Boolean":
        false_label, true_label = column.bool_labels
        base["OptionSetType"] = "Boolean"
        base["TrueOption"] = _option(1, true_label, key)
        base["FalseOption"] = _option(0, false_label, key)
        return base
    if kind == "State":
        options = [
            _option(
                s.value,
                s.label,
                key,
                **{
                    "@odata.type": f"#{NS}.StateOptionMetadata",
                    "DefaultStatus": s.default_status,
                    "InvariantName": s.invariant,
                },
            )
            for s in table.states
        ]
    elif kind == "Status":
        options = [
            _option(
                value,
                label,
                key,
                **{
                    "@odata.type": f"#{NS}.StatusOptionMetadata",
                    "State": s.value,
                    "TransitionData": None,
                },
            )
            for s in table.states
            for value, label in s.statuses
        ]
    else:
        options = [_option(value, label, key) for value, label in column.options]
    base["OptionSetType"] = kind
    base["Options"] = options
    return base


def _common(table: Table, logical: str, number: int, kind: str, type_name: str) -> dict[str, Any]:
    return {
        "@odata.type": f"#{NS}.{type_name}",
        "MetadataId": metadata_id("attribute", table.logical, logical),
        "LogicalName": logical,
        "SchemaName": _schema_name(logical),
        "EntityLogicalName": table.logical,
        "AttributeType": kind,
        "AttributeTypeName": {"Value": f"{kind}Type"},
        "ColumnNumber": number,
        "DisplayName": _label(_schema_name(logical), "attribute", table.logical, logical),
        "Description": _no_label(),
        "IsPrimaryId": logical == table.primary_key,
        "IsPrimaryName": logical == table.primary_name,
        "IsValidForRead": True,
        "IsCustomAttribute": False,
        "IsManaged": True,
        "IsLogical": False,
        "AttributeOf": None,
        "IsCustomizable": _managed(True, "iscustomizable"),
        "IntroducedVersion": "5.0.0.0",
    }


def _column_attribute(table: Table, column: Column, number: int) -> Attribute:
    if column.name == "statecode":
        kind, type_name = "State", "StateAttributeMetadata"
    elif column.name == "statuscode":
        kind, type_name = "Status", "StatusAttributeMetadata"
    elif column.options:
        kind, type_name = "Picklist", "PicklistAttributeMetadata"
    else:
        kind, type_name = _SIMPLE[column.type]
    body = _common(table, column.name, number, kind, type_name)
    primary = column.name == table.primary_key
    required = "SystemRequired" if primary or column.name == "statecode" else "None"
    body["RequiredLevel"] = _managed(required, "canmodifyrequirementlevelsettings")
    body["IsValidForCreate"] = not column.read_only
    body["IsValidForUpdate"] = not column.read_only and not primary
    if type_name in ("StringAttributeMetadata", "MemoAttributeMetadata"):
        length = column.max_length or 100
        text = "TextArea" if kind == "Memo" else _string_format(column.name)
        body.update(
            {
                "MaxLength": length,
                "DatabaseLength": length * 2,
                "Format": text,
                "FormatName": {"Value": text},
            }
        )
    elif kind == "Integer":
        low = column.min_value if column.min_value is not None else -2_147_483_648
        high = column.max_value if column.max_value is not None else 2_147_483_647
        body.update({"MinValue": low, "MaxValue": high, "Format": "None"})
    elif kind == "BigInt":
        body.update({"MinValue": -(2**63), "MaxValue": 2**63 - 1})
    elif kind == "Decimal":
        body.update({"MinValue": -100_000_000_000, "MaxValue": 100_000_000_000, "Precision": 2})
    elif kind == "Boolean":
        body["DefaultValue"] = False
    elif kind == "DateTime":
        only_date = column.type == ColType.DATE
        body.update(
            {
                "Format": "DateOnly" if only_date else "DateAndTime",
                "DateTimeBehavior": {"Value": "DateOnly" if only_date else "UserLocal"},
                "CanChangeDateTimeBehavior": _managed(False, "canchangedatetimebehavior"),
            }
        )
    elif kind in ("Picklist", "State", "Status"):
        body["DefaultFormValue"] = -1 if kind == "Picklist" else None
    option_set = _option_set(table, column, kind) if type_name in _CHOICE_TYPES else None
    return Attribute(column.name, type_name, body, option_set)


def _string_format(name: str) -> str:
    if _EMAIL.match(name):
        return "Email"
    if _URL.match(name):
        return "Url"
    if _PHONE.match(name):
        return "Phone"
    return "Text"


def _lookup_attribute(table: Table, lookup: Lookup, number: int) -> Attribute:
    targets = sorted(set(lookup.targets.values()))
    if lookup.attribute == "ownerid":
        kind = "Owner"
    elif targets == ["account", "contact"]:
        kind = "Customer"
    else:
        kind = "Lookup"
    body = _common(table, lookup.attribute, number, kind, "LookupAttributeMetadata")
    required = "SystemRequired" if kind == "Owner" else "None"
    body["RequiredLevel"] = _managed(required, "canmodifyrequirementlevelsettings")
    body["IsValidForCreate"] = lookup.bindable
    body["IsValidForUpdate"] = lookup.bindable
    body.update({"Targets": targets, "Format": "None"})
    return Attribute(lookup.attribute, "LookupAttributeMetadata", body)


def _entity(catalog: Catalog, table: Table) -> Entity:
    if table.user_owned:
        ownership = "UserOwned"
    elif table.logical == "systemuser":
        ownership = "BusinessOwned"
    else:
        ownership = "OrganizationOwned"
    party = table.logical in ("systemuser", "contact", "account", "lead")
    body = {
        "MetadataId": metadata_id("entity", table.logical),
        "LogicalName": table.logical,
        "SchemaName": table.schema_name,
        "EntitySetName": table.entity_set,
        "LogicalCollectionName": table.entity_set,
        "CollectionSchemaName": _plural(table.schema_name),
        "PrimaryIdAttribute": table.primary_key,
        "PrimaryNameAttribute": table.primary_name,
        "ObjectTypeCode": table.object_type_code,
        "OwnershipType": ownership,
        "IsActivity": table.party_navigation is not None,
        "IsActivityParty": party,
        "HasActivities": table.logical in ("contact", "account", "lead"),
        "IsCustomEntity": False,
        "IsManaged": True,
        "IsIntersect": False,
        "IsValidForAdvancedFind": True,
        "ChangeTrackingEnabled": True,
        "DisplayName": _label(table.display_name, "entity", table.logical),
        "DisplayCollectionName": _label(
            table.display_collection_name, "entity-collection", table.logical
        ),
        "Description": _no_label(),
        "IsCustomizable": _managed(True, "iscustomizable"),
        "CanCreateAttributes": _managed(True, "cancreateattributes"),
        "IntroducedVersion": "5.0.0.0",
    }
    attributes = [_column_attribute(table, c, n) for n, c in enumerate(table.columns.values())]
    offset = len(attributes)
    attributes += [
        _lookup_attribute(table, lk, offset + n) for n, lk in enumerate(table.lookups.values())
    ]
    return Entity(table, body, attributes)


# -- $filter over definitions ------------------------------------------------------------------

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<punct>[(),])
  | (?P<enum>[A-Za-z_][A-Za-z0-9_.]*'[^']*')
  | (?P<string>'(?:[^']|'')*')
  | (?P<guid>[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}(?![\w-]))
  | (?P<number>-?\d+(?![\w.]))
  | (?P<path>[A-Za-z_][A-Za-z0-9_]*(?:/[A-Za-z_][A-Za-z0-9_]*)*)
    """,
    re.VERBOSE,
)
_OPS = {"eq", "ne", "gt", "ge", "lt", "le"}
Check = Callable[[Mapping[str, Any]], bool]


@dataclass(frozen=True)
class _Operand:
    path: list[str] | None = None
    value: Any = None
    enum: str | None = None


class _Filter:
    """A ``$filter`` over one definition type whose properties are ``props``."""

    def __init__(self, text: str, props: frozenset[str], type_name: str) -> None:
        self.text = text
        self.props = props
        self.type_name = type_name
        self.tokens: list[tuple[str, str]] = []
        pos = 0
        while pos < len(text):
            found = _TOKEN.match(text, pos)
            if found is None or found.lastgroup is None:
                raise bad_request(f"Syntax error at position {pos} in '{text}'.")
            if found.lastgroup != "ws":
                self.tokens.append((found.lastgroup, found.group()))
            pos = found.end()
        self.pos = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        token = self.peek()
        if token is None:
            raise bad_request(f"Unexpected end of the $filter expression '{self.text}'.")
        self.pos += 1
        return token

    def word(self, word: str) -> bool:
        token = self.peek()
        if token is not None and token[0] == "path" and token[1] == word:
            self.pos += 1
            return True
        return False

    def compile(self) -> Check:
        check = self.parse_or()
        if self.peek() is not None:
            raise bad_request(f"Syntax error: unexpected '{self.take()[1]}' in '{self.text}'.")
        return check

    def parse_or(self) -> Check:
        left = self.parse_and()
        while self.word("or"):
            right = self.parse_and()
            left = (lambda a, b: lambda item: a(item) or b(item))(left, right)
        return left

    def parse_and(self) -> Check:
        left = self.parse_not()
        while self.word("and"):
            right = self.parse_not()
            left = (lambda a, b: lambda item: a(item) and b(item))(left, right)
        return left

    def parse_not(self) -> Check:
        if self.word("not"):
            inner = self.parse_not()
            return lambda item: not inner(item)
        token = self.peek()
        if token == ("punct", "("):
            self.take()
            inner = self.parse_or()
            if self.take() != ("punct", ")"):
                raise bad_request(f"Syntax error: ')' expected in '{self.text}'.")
            return inner
        left = self.operand()
        op = self.take()
        if op[0] != "path" or op[1] not in _OPS:
            raise bad_request(f"Syntax error: an operator expected at '{op[1]}' in '{self.text}'.")
        right = self.operand()
        return _compare(op[1], left, right)

    def operand(self) -> _Operand:
        kind, text = self.take()
        if kind == "string":
            return _Operand(value=text[1:-1].replace("''", "'"))
        if kind == "enum":
            type_name, _, member = text[:-1].partition("'")
            return _Operand(value=member, enum=type_name)
        if kind == "guid":
            return _Operand(value=text.lower())
        if kind == "number":
            return _Operand(value=int(text))
        if kind == "path" and text in ("true", "false", "null"):
            return _Operand(value={"true": True, "false": False, "null": None}[text])
        if kind != "path":
            raise bad_request(f"Syntax error at '{text}' in '{self.text}'.")
        segments = text.split("/")
        if segments[0] not in self.props:
            raise _unknown(segments[0], self.type_name)
        if segments[0] in _LABELS:
            raise bad_request(f"The property '{segments[0]}' (a Label) cannot be used in $filter.")
        if len(segments) > 2 or (len(segments) == 2 and segments[1] != "Value"):
            raise _unknown("/".join(segments[1:]), f"{NS}.{segments[0]}")
        enum = ENUMS.get(text)
        return _Operand(path=segments, enum=enum)


def _compare(op: str, left: _Operand, right: _Operand) -> Check:
    for side, other in ((left, right), (right, left)):
        if side.path is not None and other.path is None:
            wanted = side.enum
            given = other.enum
            if wanted is not None and other.value is not None and given is None:
                raise bad_request(
                    "A binary operator with incompatible types was detected. Found operand types "
                    f"'{NS}.{wanted}' and 'Edm.String' for operator kind '{op}'."
                )
            if given is not None and given.removeprefix(f"{NS}.") != wanted:
                where = "/".join(side.path)
                raise bad_request(
                    f"The enum literal '{given}' does not match the type of '{where}'."
                )
    if op not in ("eq", "ne"):
        for side in (left, right):
            if side.path is None and not isinstance(side.value, int):
                raise bad_request(f"The operator '{op}' needs numbers on both sides.")

    def value(side: _Operand, item: Mapping[str, Any]) -> Any:
        if side.path is None:
            return side.value
        current: Any = item
        for seg in side.path:
            current = current.get(seg) if isinstance(current, dict) else None
        return current.lower() if isinstance(current, str) and _GUID.match(current) else current

    def check(item: Mapping[str, Any]) -> bool:
        a, b = value(left, item), value(right, item)
        if op == "eq":
            return bool(a == b)
        if op == "ne":
            return bool(a != b)
        if not isinstance(a, int) or not isinstance(b, int):
            return False
        return {"gt": a > b, "ge": a >= b, "lt": a < b, "le": a <= b}[op]

    return check


def _unknown(name: str, type_name: str) -> ApiError:
    return bad_request(f"Could not find a property named '{name}' on type '{type_name}'.")


# -- the resource --------------------------------------------------------------------------------


@dataclass
class _Options:
    select: list[str] | None = None
    filter: Check | None = None
    expand: dict[str, _Options | None] = field(default_factory=dict)


class Definitions:
    """Answers ``EntityDefinitions`` requests from the catalogue."""

    def __init__(self, catalog: Catalog) -> None:
        self.entities = [_entity(catalog, t) for t in catalog.by_logical.values()]
        self.by_logical = {e.table.logical: e for e in self.entities}
        self.by_id = {e.body["MetadataId"]: e for e in self.entities}

    @staticmethod
    def handles(path: str) -> bool:
        """Whether ``path`` is a definitions path."""
        return path == "EntityDefinitions" or path.startswith(
            ("EntityDefinitions(", "EntityDefinitions/")
        )

    def get(self, path: str, query: list[tuple[str, str]], root: str) -> ApiResponse:
        """One GET under ``EntityDefinitions``."""
        found = _PATH.match(path)
        if found is None:
            raise bad_request(f"The request URI segment '{path[:120]}' is not supported.")
        params = _params(query)
        base = f"{root}$metadata#EntityDefinitions"
        if found.group("ekey") is None:
            if found.group("attrs"):
                raise bad_request("Attributes can only be read from one table definition.")
            opts = _parse(params, frozenset(ENTITY_PROPS), f"{NS}.EntityMetadata", {"Attributes"})
            items = [e for e in self.entities if opts.filter is None or opts.filter(e.body)]
            value = [self._entity_json(e, opts) for e in items]
            return _ok({"@odata.context": base + _sel(opts), "value": value})
        entity = self._entity(found.group("ekey"))
        if not found.group("attrs"):
            opts = _parse(params, frozenset(ENTITY_PROPS), f"{NS}.EntityMetadata", {"Attributes"})
            body = {"@odata.context": f"{base}{_sel(opts)}/$entity"}
            body.update(self._entity_json(entity, opts))
            return _ok(body)
        cast = _cast(found.group("cast"))
        props, type_name = _attribute_props(cast)
        navs = {"OptionSet", "GlobalOptionSet"} if cast in _CHOICE_TYPES else set()
        context = f"{base}({entity.body['MetadataId']})/Attributes"
        akey = found.group("akey")
        nav = found.group("nav")
        if akey is None:
            if nav is not None:
                raise bad_request(f"The request URI segment '{nav}' is not supported here.")
            opts = _parse(params, props, type_name, navs)
            chosen = [
                a
                for a in entity.attributes
                if (cast is None or a.cast == cast) and (opts.filter is None or opts.filter(a.body))
            ]
            listed = [_attribute_json(a, opts, cast) for a in chosen]
            return _ok({"@odata.context": context + _cast_seg(cast) + _sel(opts), "value": listed})
        attribute = _attribute(entity, akey)
        if cast is not None and attribute.cast != cast:
            raise ApiError(
                404,
                RESOURCE_NOT_FOUND,
                f"The attribute '{attribute.logical}' is not a {NS}.{cast}.",
            )
        if nav is not None:
            if nav not in navs:
                raise _unknown(nav, type_name)
            opts = _parse(params, _OPTION_SET_PROPS, f"{NS}.OptionSetMetadataBase", set())
            item_ctx = (
                f"{base}({entity.body['MetadataId']})/Attributes({attribute.body['MetadataId']})"
            )
            body = {"@odata.context": f"{item_ctx}{_cast_seg(cast)}/{nav}{_sel(opts)}/$entity"}
            target = attribute.option_set if nav == "OptionSet" else None
            if target is None:
                return ApiResponse.empty(204)
            body.update(_project(target, opts.select))
            return _ok(body)
        opts = _parse(params, props, type_name, navs)
        body = {"@odata.context": f"{context}{_cast_seg(cast)}{_sel(opts)}/$entity"}
        body.update(_attribute_json(attribute, opts, cast))
        return _ok(body)

    def _entity(self, key: str) -> Entity:
        found = _KEY.match(key)
        if found is not None:
            entity = self.by_logical.get(found.group("name"))
            name = found.group("name")
        elif _GUID.match(key.strip()):
            entity = self.by_id.get(key.strip().lower())
            name = key.strip()
        else:
            raise bad_request(
                f"The key '{key[:80]}' is not valid: use LogicalName='<name>' or a MetadataId."
            )
        if entity is None:
            raise ApiError(
                404,
                ENTITY_NOT_FOUND,
                f"The entity with a name = '{name}' with namemapping = 'Logical' was not found "
                "in the MetadataCache.",
            )
        return entity

    def _entity_json(self, entity: Entity, opts: _Options) -> dict[str, Any]:
        out = _project(entity.body, opts.select)
        if "Attributes" in opts.expand:
            inner = opts.expand["Attributes"] or _Options()
            out["Attributes"] = [
                _attribute_json(a, inner, None)
                for a in entity.attributes
                if inner.filter is None or inner.filter(a.body)
            ]
        return out


_OPTION_SET_PROPS = frozenset(
    {
        "MetadataId",
        "Name",
        "DisplayName",
        "Description",
        "IsCustomOptionSet",
        "IsGlobal",
        "IsManaged",
        "IntroducedVersion",
        "OptionSetType",
        "Options",
        "TrueOption",
        "FalseOption",
        "HasChanged",
    }
)


def _attribute(entity: Entity, key: str) -> Attribute:
    found = _KEY.match(key)
    if found is not None:
        name = found.group("name")
        match = [a for a in entity.attributes if a.logical == name]
    elif _GUID.match(key.strip()):
        name = key.strip()
        match = [a for a in entity.attributes if a.body["MetadataId"] == name.lower()]
    else:
        raise bad_request(
            f"The key '{key[:80]}' is not valid: use LogicalName='<name>' or a MetadataId."
        )
    if not match:
        raise ApiError(
            404,
            ATTRIBUTE_NOT_FOUND,
            f"'{entity.table.logical}' entity doesn't contain attribute with Name = '{name}' "
            "and NameMapping = 'Logical'.",
        )
    return match[0]


def _cast(segment: str | None) -> str | None:
    if segment is None:
        return None
    if not segment.startswith(f"{NS}."):
        raise bad_request(f"The request URI segment '{segment}' is not supported.")
    name = segment[len(NS) + 1 :]
    if name not in TYPE_PROPS:
        raise bad_request(
            f"The type '{segment}' is not an attribute type this collection can be cast to."
        )
    return name


def _cast_seg(cast: str | None) -> str:
    return f"/{NS}.{cast}" if cast else ""


def _attribute_props(cast: str | None) -> tuple[frozenset[str], str]:
    if cast is None:
        return frozenset(ATTRIBUTE_PROPS), f"{NS}.AttributeMetadata"
    return frozenset(ATTRIBUTE_PROPS) | frozenset(TYPE_PROPS[cast]), f"{NS}.{cast}"


def _attribute_json(attribute: Attribute, opts: _Options, cast: str | None) -> dict[str, Any]:
    body = dict(attribute.body)
    if cast is not None:
        body.pop("@odata.type", None)
    out = _project(body, opts.select)
    for nav in ("OptionSet", "GlobalOptionSet"):
        if nav in opts.expand:
            inner = opts.expand[nav]
            target = attribute.option_set if nav == "OptionSet" else None
            out[nav] = None if target is None else _project(target, inner.select if inner else None)
    return out


def _project(body: Mapping[str, Any], select: list[str] | None) -> dict[str, Any]:
    if select is None:
        return dict(body)
    keep = set(select) | {"MetadataId", "@odata.type"}
    return {k: v for k, v in body.items() if k in keep}


def _sel(opts: _Options) -> str:
    names = [*(opts.select or []), *(n for n in opts.expand if opts.select is not None)]
    return f"({','.join(names)})" if opts.select is not None else ""


def _params(query: list[tuple[str, str]]) -> dict[str, str]:
    params: dict[str, str] = {}
    for key, value in query:
        if key in params:
            raise bad_request(f"Query option '{key}' was specified more than once.")
        if key in _UNSUPPORTED:
            raise bad_request(f"The query parameter {key} is not supported")
        if key == "LabelLanguages":
            if not re.fullmatch(r"\d+(?:,\d+)*", value):
                raise bad_request(f"Invalid LabelLanguages value '{value[:40]}'.")
            continue
        if key not in ("$select", "$filter", "$expand"):
            raise bad_request(f"The query parameter '{key}' is not supported.")
        params[key] = value
    return params


def _parse(
    params: Mapping[str, str], props: frozenset[str], type_name: str, navs: set[str]
) -> _Options:
    opts = _Options()
    if "$select" in params:
        names = [n.strip() for n in params["$select"].split(",")]
        for name in names:
            if name not in props:
                if name in navs:
                    raise bad_request(
                        f"The navigation property '{name}' cannot be used in $select; use $expand."
                    )
                raise _unknown(name, type_name)
        opts.select = names
    if "$filter" in params:
        opts.filter = _Filter(params["$filter"], props, type_name).compile()
    if "$expand" in params:
        for item in split_top_level(params["$expand"], ","):
            name, _, rest = item.strip().partition("(")
            name = name.strip()
            if name not in navs:
                raise _unknown(name, type_name)
            inner: _Options | None = None
            if rest:
                if not rest.endswith(")"):
                    raise bad_request(f"Syntax error in $expand item '{item}'.")
                nested = _nested(rest[:-1])
                if name == "Attributes":
                    inner = _parse(
                        nested, frozenset(ATTRIBUTE_PROPS), f"{NS}.AttributeMetadata", set()
                    )
                else:
                    inner = _parse(nested, _OPTION_SET_PROPS, f"{NS}.OptionSetMetadataBase", set())
            opts.expand[name] = inner
    return opts


def _nested(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in split_top_level(text, ";"):
        key, eq, value = part.strip().partition("=")
        if not eq or key not in ("$select", "$filter"):
            raise bad_request(f"The nested query option '{part.strip()[:40]}' is not supported.")
        out[key] = value
    return out


def _ok(body: dict[str, Any]) -> ApiResponse:
    return ApiResponse.json(200, body)
