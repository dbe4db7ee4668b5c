"""``/users``: provisioning and reading mailboxes."""

from __future__ import annotations

import base64
import re
from typing import Any

from .errors import GraphError
from .odata import parse_query, project
from .routing import Context, Request, Response, Router

_USER_FIELDS = frozenset(
    {"id", "userPrincipalName", "mail", "displayName", "accountEnabled", "createdDateTime"}
)
_USERS_PAGE = 100
_MAX_USERS_PAGE = 999
_UPN = re.compile(r"^[^@\s/]+@[^@\s/]+\.[^@\s/]+$")
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def _text(body: dict[str, Any], key: str, required: bool) -> str | None:
    value = body.get(key)
    if value is None:
        if required:
            raise GraphError(400, "Request_BadRequest", f"Property '{key}' is required for a user.")
        return None
    if not isinstance(value, str) or not value.strip():
        raise GraphError(
            400,
            "Request_BadRequest",
            f"Invalid value specified for property '{key}' of resource 'User'.",
        )
    return value


async def create_user(ctx: Context, req: Request, params: dict[str, str]) -> Response:
    body = req.json()
    if not isinstance(body, dict):
        raise GraphError(400, "BadRequest", "The request body must be a JSON object.")
    upn = _text(body, "userPrincipalName", True) or ""
    if not _UPN.match(upn):
        raise GraphError(
            400, "Request_BadRequest", "Invalid value specified for property 'userPrincipalName'."
        )
    mail = _text(body, "mail", False) or upn
    if not _UPN.match(mail):
        raise GraphError(400, "Request_BadRequest", "Invalid value specified for property 'mail'.")
    name = _text(body, "displayName", False) or upn.split("@")[0]
    user_id = _text(body, "id", False)
    if user_id is not None and not _GUID.match(user_id):
        raise GraphError(400, "Request_BadRequest", "Property 'id' must be a GUID.")
    mailbox = ctx.store.add_user(upn, mail, name, user_id)
    out = {"@odata.context": f"{req.base}/$metadata#users/$entity", **mailbox.user_json()}
    return Response(201, out, {"Location": f"{req.base}/users/{mailbox.id}"})


async def get_user(ctx: Context, req: Request, params: dict[str, str]) -> Response:
    query = parse_query(req.query, _USER_FIELDS)
    mailbox = ctx.store.user(params["u"])
    out = {"@odata.context": f"{req.base}/$metadata#users/$entity"}
    out.update(project(mailbox.user_json(), query.select))
    return Response(200, out)


def _skiptoken(text: str) -> int:
    """The offset an opaque ``$skiptoken`` of this emulator stands for."""
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        raw = ""
    if not raw.startswith("users:") or not raw[6:].isdigit():
        raise GraphError(400, "Request_BadRequest", "The specified page token value is invalid.")
    return int(raw[6:])


async def list_users(ctx: Context, req: Request, params: dict[str, str]) -> Response:
    """Directory paging: ``$top`` (1-999, default 100) and ``$skiptoken``; no ``$skip``."""
    if "$skip" in req.query:
        raise GraphError(400, "Request_BadRequest", "'$skip' is not supported by the service.")
    query = parse_query(req.query, _USER_FIELDS, max_top=_MAX_USERS_PAGE)
    users = [m.user_json() for m in ctx.store.mailboxes.values()]
    if query.filter is not None:
        condition = query.filter
        users = [u for u in users if condition(u, {})]
    offset = _skiptoken(req.query["$skiptoken"]) if "$skiptoken" in req.query else 0
    size = query.top or _USERS_PAGE
    body: dict[str, Any] = {
        "@odata.context": f"{req.base}/$metadata#users",
        "value": [project(u, query.select) for u in users[offset : offset + size]],
    }
    if offset + size < len(users):
        token = base64.urlsafe_b64encode(f"users:{offset + size}".encode()).decode().rstrip("=")
        link = {k: v for k, v in req.query.items() if k != "$skiptoken"}
        body["@odata.nextLink"] = req.link(req.path, {**link, "$skiptoken": token})
    return Response(200, body)


async def delete_user(ctx: Context, req: Request, params: dict[str, str]) -> Response:
    """``DELETE /users/{id | userPrincipalName}``: the user, its mailbox and its subscriptions
    go; every later request for it answers 404 until a user is created under its name again
    (a new id, a new To Do list, nothing of the old mailbox)."""
    mailbox = ctx.store.delete_user(params["u"])
    ctx.subscriptions.drop_mailbox(mailbox.id)
    return Response(204)


def register(router: Router) -> None:
    """Add the user routes."""
    router.add("POST", "/users", create_user)
    router.add("GET", "/users", list_users)
    router.add("GET", "/users/{u}", get_user)
    router.add("DELETE", "/users/{u}", delete_user)
