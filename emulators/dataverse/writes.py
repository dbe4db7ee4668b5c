"""Write payloads (columns, ``@odata.bind`` lookups, inline activity parties) and row changes."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from .config import is_guid
from .errors import DIRECT_LOOKUP_UPDATE, ApiError, bad_request, not_found
from .metadata import Catalog, Table
from .security import Caller, check_create, check_modify
from .store import Row, Store
from .values import coerce, now_iso

BIND = "@odata.bind"
_BIND_VALUE = re.compile(r"^(?:.*/)?(?P<set>[A-Za-z_][A-Za-z0-9_]*)\((?P<id>[0-9a-fA-F-]{36})\)$")
_IGNORED_READ_ONLY = {"versionnumber", "createdon", "modifiedon", "activitytypecode"}


@dataclass(frozen=True)
class PartySpec:
    """An activity party to create inline."""

    mask: int
    party: tuple[str, str] | None
    address: str | None


@dataclass
class Changes:
    """What a create/update payload asks for."""

    values: dict[str, Any] = field(default_factory=dict)
    lookups: dict[str, tuple[str, str] | None] = field(default_factory=dict)
    parties: list[PartySpec] | None = None
    body_id: str | None = None


ContentIdResolver = Callable[[str], tuple[str, str] | None]


def parse_json_object(body: bytes) -> dict[str, Any]:
    """The request body as a JSON object, or 400."""
    if not body.strip():
        raise bad_request("The request body is empty; a JSON object was expected.")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise bad_request(f"The request body is not valid JSON: {exc.msg}.") from None
    if not isinstance(data, dict):
        raise bad_request("The request body must be a JSON object.")
    return data


def _undeclared(table: Table, name: str) -> ApiError:
    return bad_request(
        f"An undeclared property '{name}' which only has property annotations in the payload "
        "but no property value was found in the payload. In OData, only declared navigation "
        "properties and declared named streams can be represented as properties without values."
    )


def _no_such_property(table: Table, name: str) -> ApiError:
    return bad_request(
        f"The property '{name}' does not exist on type 'Microsoft.Dynamics.CRM.{table.logical}'. "
        "Make sure to only use property names that are defined by the type or mark the type as "
        "open type."
    )


class PayloadParser:
    """Turns a JSON payload into Changes, checking names and types strictly."""

    def __init__(self, catalog: Catalog, resolve_content_id: ContentIdResolver) -> None:
        self.catalog = catalog
        self.resolve_content_id = resolve_content_id

    def parse(self, table: Table, payload: Mapping[str, Any]) -> Changes:
        changes = Changes()
        for key, value in payload.items():
            if "@" in key:
                self._annotation(table, key, value, changes)
            elif key == table.party_navigation and key is not None:
                changes.parties = self._parties(value)
            elif key == table.primary_key:
                col = table.columns[key]
                changes.body_id = coerce(col, value)
            elif key in table.columns:
                col = table.columns[key]
                if col.read_only or key in _IGNORED_READ_ONLY:
                    continue
                changes.values[key] = coerce(col, value)
            elif key in table.lookup_by_value:
                raise bad_request(
                    "CRM do not support direct update of Entity Reference properties, "
                    "Use Navigation properties insted.",
                    code=DIRECT_LOOKUP_UPDATE,
                )
            elif key in table.navigations:
                raise bad_request(
                    f"Deep insert through the single-valued navigation property '{key}' is not "
                    f"supported; bind an existing row with '{key}{BIND}'."
                )
            else:
                raise _no_such_property(table, key)
        return changes

    def _annotation(self, table: Table, key: str, value: Any, changes: Changes) -> None:
        prop, _, annotation = key.partition("@")
        if not prop:
            return  # instance annotations such as @odata.type
        if "@" + annotation != BIND:
            if prop in table.columns or prop in table.navigations:
                return
            raise _undeclared(table, prop)
        nav = table.navigations.get(prop)
        if nav is None or not nav[0].bindable:
            raise _undeclared(table, prop)
        lookup, target = nav
        if value is None:
            changes.lookups[lookup.attribute] = None
            return
        changes.lookups[lookup.attribute] = (target, self.bind_target(prop, target, value))

    def bind_target(self, nav: str, target: str, value: Any) -> str:
        """The id a bind value points at, checked against the navigation's target table."""
        if not isinstance(value, str):
            raise bad_request(f"The value of '{nav}{BIND}' must be a string URL.")
        if value.startswith("$"):
            resolved = self.resolve_content_id(value)
            if resolved is None:
                raise bad_request(f"The Content-ID reference '{value}' was not found.")
            entity_set, row_id = resolved
            if entity_set != self.catalog.table(target).entity_set:
                raise bad_request(
                    f"The reference '{value}' points into '{entity_set}'; '{nav}' needs a {target}."
                )
            return row_id
        match = _BIND_VALUE.match(value.strip())
        if match is None or not is_guid(match.group("id")):
            raise bad_request(
                f"The value '{value[:120]}' of '{nav}{BIND}' is not a valid entity reference URL "
                "such as /contacts(00000000-0000-0000-0000-000000000000)."
            )
        expected = self.catalog.table(target).entity_set
        if match.group("set") != expected:
            raise bad_request(
                f"The entity set '{match.group('set')}' of '{nav}{BIND}' does not match the "
                f"navigation property's target; expected '{expected}'."
            )
        return match.group("id").lower()

    def _parties(self, value: Any) -> list[PartySpec]:
        party_table = self.catalog.table("activityparty")
        if not isinstance(value, list):
            raise bad_request("Activity parties must be given as a JSON array of objects.")
        result: list[PartySpec] = []
        for item in value:
            if not isinstance(item, dict):
                raise bad_request("Each activity party must be a JSON object.")
            mask: int | None = None
            party: tuple[str, str] | None = None
            address: str | None = None
            for key, val in item.items():
                if key == "participationtypemask":
                    mask = coerce(party_table.columns[key], val)
                elif key == "addressused":
                    address = coerce(party_table.columns[key], val)
                elif key.endswith(BIND):
                    nav = key[: -len(BIND)]
                    found = party_table.navigations.get(nav)
                    if found is None or not found[0].bindable:
                        raise _undeclared(party_table, nav)
                    if party is not None:
                        raise bad_request("An activity party may bind only one partyid.")
                    party = (found[1], self.bind_target(nav, found[1], val))
                elif key.startswith("@"):
                    continue
                else:
                    raise _no_such_property(party_table, key)
            if mask is None:
                raise bad_request("Each activity party needs a participationtypemask (1-12).")
            if party is None and not address:
                raise bad_request(
                    "Each activity party needs a partyid_<table>@odata.bind or an addressused."
                )
            result.append(PartySpec(mask, party, address))
        return result


class Writer:
    """Applies Changes to the Store: creates, updates, deletes."""

    def __init__(self, store: Store, catalog: Catalog, clock: Callable[[], datetime]) -> None:
        self.store = store
        self.catalog = catalog
        self.clock = clock

    def create(self, table: Table, changes: Changes, caller: Caller, row_id: str | None) -> Row:
        check_create(caller, table)
        new_id = (row_id or changes.body_id or str(uuid.uuid4())).lower()
        if row_id and changes.body_id and changes.body_id != row_id.lower():
            raise bad_request(f"The {table.primary_key} in the body does not match the URL key.")
        if self.store.get(table.logical, new_id) is not None:
            raise ApiError(412, "0x80040237", "A record with matching key values already exists.")
        stamp = now_iso(self.clock())
        values: dict[str, Any] = dict.fromkeys(table.readable_properties())
        values[table.primary_key] = new_id
        values["statecode"], values["statuscode"] = table.default_state
        values["createdon"] = stamp
        if "activitytypecode" in table.columns:
            values["activitytypecode"] = table.logical
        row = Row(new_id, values)
        if table.user_owned:
            values["_ownerid_value"] = caller.user_id
            row.targets["ownerid"] = "systemuser"
        for attr in ("createdby", "modifiedby"):
            if attr in table.lookups:
                values[f"_{attr}_value"] = caller.user_id
                row.targets[attr] = "systemuser"
        self._apply(table, row, changes, caller, stamp, existed=False)
        return row

    def update(self, table: Table, current: Row, changes: Changes, caller: Caller) -> Row:
        check_modify(caller, self.store, table, current)
        if changes.body_id is not None and changes.body_id != current.id:
            raise bad_request(f"The {table.primary_key} in the body does not match the URL key.")
        row = current.copy()
        if "modifiedby" in table.lookups:
            row.values["_modifiedby_value"] = caller.user_id
        self._apply(table, row, changes, caller, now_iso(self.clock()), existed=True)
        return row

    def delete(self, table: Table, row: Row, caller: Caller) -> None:
        check_modify(caller, self.store, table, row, privilege="Delete")
        if table.party_navigation is not None:
            for party in self.store.parties_of(row.id):
                self.store.delete("activityparty", party.id)
        self.store.delete(table.logical, row.id)

    def _apply(
        self, table: Table, row: Row, changes: Changes, caller: Caller, stamp: str, existed: bool
    ) -> None:
        row.values.update(changes.values)
        for attr, ref in changes.lookups.items():
            lookup = table.lookups[attr]
            if ref is None:
                row.values[lookup.value_name] = None
                row.targets.pop(attr, None)
                continue
            target, target_id = ref
            if self.store.get(target, target_id) is None:
                raise not_found(target, target_id)
            row.values[lookup.value_name] = target_id
            row.targets[attr] = target
        if table.computed_fullname:
            parts = [row.values.get("firstname"), row.values.get("lastname")]
            row.values["fullname"] = " ".join(p for p in parts if p) or None
        row.values["modifiedon"] = stamp
        row.values["versionnumber"] = self.store.next_version()
        self.store.put(table.logical, row)
        if changes.parties is not None:
            self._replace_parties(table, row, changes.parties, stamp, existed)

    def _replace_parties(
        self, table: Table, row: Row, specs: list[PartySpec], stamp: str, existed: bool
    ) -> None:
        party_table = self.catalog.table("activityparty")
        for old in self.store.parties_of(row.id) if existed else []:
            self.store.delete("activityparty", old.id)
        for spec in specs:
            party_id = str(uuid.uuid4())
            values: dict[str, Any] = dict.fromkeys(party_table.readable_properties())
            values.update(
                activitypartyid=party_id,
                participationtypemask=spec.mask,
                addressused=spec.address,
                ispartydeleted=False,
                createdon=stamp,
                modifiedon=stamp,
                statecode=0,
                statuscode=1,
                _activityid_value=row.id,
                versionnumber=self.store.next_version(),
            )
            party = Row(party_id, values, {"activityid": table.logical})
            if spec.party is not None:
                target, target_id = spec.party
                target_row = self.store.get(target, target_id)
                if target_row is None:
                    raise not_found(target, target_id)
                values["_partyid_value"] = target_id
                party.targets["partyid"] = target
                if spec.address is None:
                    email = target_row.values.get("emailaddress1") or target_row.values.get(
                        "internalemailaddress"
                    )
                    values["addressused"] = email
            self.store.put("activityparty", party)
