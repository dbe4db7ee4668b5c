"""Callers and access checks: the application user, or an impersonated systemuser."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .config import is_guid
from .errors import PRIVILEGE_DENIED, ApiError, bad_request, not_found
from .metadata import Table
from .store import Row, Store


@dataclass(frozen=True)
class Caller:
    """Who a request runs as."""

    user_id: str
    impersonated: bool


def resolve_caller(headers: Mapping[str, str], store: Store, app_user_id: str) -> Caller:
    """The caller from ``CallerObjectId`` / ``MSCRMCallerID``, else the application user."""
    object_id = headers.get("CallerObjectId")
    caller_id = headers.get("MSCRMCallerID")
    if object_id is not None and caller_id is not None:
        raise bad_request(
            "Only one of the CallerObjectId and MSCRMCallerID headers may be given.",
            code="0x80040203",
        )
    if object_id is not None:
        value = object_id.strip().lower()
        if not is_guid(value):
            raise bad_request(
                f"The CallerObjectId header value '{object_id[:80]}' is not a valid GUID.",
                code="0x80040203",
            )
        for user in store.rows["systemuser"].values():
            if user.values.get("azureactivedirectoryobjectid") == value:
                return _enabled(user, app_user_id)
        raise ApiError(
            404,
            "0x80040217",
            f"systemuser With azureactivedirectoryobjectid = {value} Does Not Exist",
        )
    if caller_id is not None:
        value = caller_id.strip().lower()
        if not is_guid(value):
            raise bad_request(
                f"The MSCRMCallerID header value '{caller_id[:80]}' is not a valid GUID.",
                code="0x80040203",
            )
        found = store.get("systemuser", value)
        if found is None:
            raise not_found("systemuser", value)
        return _enabled(found, app_user_id)
    return Caller(app_user_id, impersonated=False)


def _enabled(user: Row, app_user_id: str) -> Caller:
    if user.id == app_user_id:
        return Caller(app_user_id, impersonated=False)
    if user.values.get("isdisabled"):
        raise ApiError(
            403,
            "0x8004a104",
            f"The user with SystemUserId={user.id} is disabled and cannot be impersonated.",
        )
    return Caller(user.id, impersonated=True)


def denied(caller: Caller, table: Table, privilege: str, row_id: str | None) -> ApiError:
    """403 worded like the service's missing-privilege fault."""
    where = f" on record {row_id}" if row_id else ""
    return ApiError(
        403,
        PRIVILEGE_DENIED,
        f"Principal user (Id={caller.user_id}, type=8) is missing prv{privilege}"
        f"{table.schema_name} privilege{where} of entity '{table.logical}'.",
    )


def check_create(caller: Caller, table: Table) -> None:
    """Impersonated users may create only user-owned rows."""
    if caller.impersonated and not table.user_owned:
        raise denied(caller, table, "Create", None)


def check_modify(
    caller: Caller, store: Store, table: Table, row: Row, privilege: str = "Write"
) -> None:
    """Impersonated users may change only rows they own or rows shared with them."""
    if not caller.impersonated:
        return
    if not table.user_owned:
        raise denied(caller, table, privilege, row.id)
    if row.values.get("_ownerid_value") == caller.user_id:
        return
    if store.is_shared(table.logical, row.id, caller.user_id):
        return
    raise denied(caller, table, privilege, row.id)
