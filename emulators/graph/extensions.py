"""Open extensions (``microsoft.graph.openTypeExtension``) on To Do tasks.

Stored as child entities of the task (kind ``openTypeExtension``); the extension's ``id`` is its
``extensionName``. Writes merge properties (Graph's update semantics) and mark the task changed.
"""

from __future__ import annotations

from typing import Any

from .errors import GraphError
from .ext_body import KIND, parse, render_extension
from .odata import parse_query
from .routing import Context, Request, Response, Router
from .store import Entity, Mailbox


def of(mailbox: Mailbox, parent: Entity) -> list[Entity]:
    """The open extensions of ``parent``."""
    return mailbox.children(KIND, parent.id)


def find(mailbox: Mailbox, parent: Entity, name: str) -> Entity | None:
    """The extension of ``parent`` with id/extensionName ``name`` (case-insensitive)."""
    for entity in of(mailbox, parent):
        if str(entity.props["extensionName"]).lower() == name.lower():
            return entity
    return None


def add(ctx: Context, mailbox: Mailbox, parent: Entity, body: Any) -> Entity:
    """Create an extension on ``parent``; 409 when one of that name exists."""
    name, data = parse(body)
    if find(mailbox, parent, name) is not None:
        raise GraphError(
            409, "NameAlreadyExists", f"An extension named '{name}' already exists on the item."
        )
    return ctx.store.create(mailbox, KIND, parent.id, {"extensionName": name, **data}, notify=False)


def _ctx(mailbox: Mailbox, task: Entity) -> str:
    return f"users('{mailbox.id}')/todo/lists('{task.parent}')/tasks('{task.id}')/extensions"


def _item(req: Request, mailbox: Mailbox, task: Entity, ext: Entity, status: int) -> Response:
    body: dict[str, Any] = {"@odata.context": f"{req.base}/$metadata#{_ctx(mailbox, task)}/$entity"}
    body.update(render_extension(ext))
    return Response(status, body)


def _task(mailbox: Mailbox, p: dict[str, str]) -> Entity:
    task_list = mailbox.get(p["l"], "todoTaskList")
    task = mailbox.get(p["t"], "todoTask")
    if task.parent != task_list.id:
        raise GraphError(
            404, "ErrorItemNotFound", "The specified object was not found in the store."
        )
    return task


def _existing(mailbox: Mailbox, task: Entity, name: str) -> Entity:
    found = find(mailbox, task, name)
    if found is None:
        raise GraphError(404, "ErrorItemNotFound", f"The extension '{name}' was not found.")
    return found


def _no_query(req: Request) -> None:
    if req.query:
        raise GraphError(
            400,
            "BadRequest",
            f"Unrecognized query argument specified: '{next(iter(req.query))}'.",
        )


async def list_extensions(ctx: Context, req: Request, p: dict[str, str]) -> Response:
    mailbox = ctx.store.user(p["u"])
    task = _task(mailbox, p)
    query = parse_query(req.query, {"id", "extensionName"}, max_top=ctx.config.max_top)
    items = [render_extension(e) for e in of(mailbox, task)]
    if query.filter is not None:
        condition = query.filter
        items = [i for i in items if condition(i, {})]
    body = {"@odata.context": f"{req.base}/$metadata#{_ctx(mailbox, task)}", "value": items}
    return Response(200, body)


async def create_extension(ctx: Context, req: Request, p: dict[str, str]) -> Response:
    mailbox = ctx.store.user(p["u"])
    task = _task(mailbox, p)
    _no_query(req)
    ext = add(ctx, mailbox, task, req.json())
    ctx.store.touch(mailbox, task)
    return _item(req, mailbox, task, ext, 201)


async def get_extension(ctx: Context, req: Request, p: dict[str, str]) -> Response:
    mailbox = ctx.store.user(p["u"])
    task = _task(mailbox, p)
    _no_query(req)
    return _item(req, mailbox, task, _existing(mailbox, task, p["x"]), 200)


async def update_extension(ctx: Context, req: Request, p: dict[str, str]) -> Response:
    mailbox = ctx.store.user(p["u"])
    task = _task(mailbox, p)
    ext = _existing(mailbox, task, p["x"])
    body = req.json()
    if isinstance(body, dict):
        body = {"extensionName": ext.props["extensionName"], **body}
    name, data = parse(body)
    if name.lower() != str(ext.props["extensionName"]).lower():
        raise GraphError(400, "BadRequest", "extensionName cannot be changed.")
    ext.props.update(data)
    ctx.store.touch(mailbox, task)
    return _item(req, mailbox, task, ext, 200)


async def delete_extension(ctx: Context, req: Request, p: dict[str, str]) -> Response:
    mailbox = ctx.store.user(p["u"])
    task = _task(mailbox, p)
    ext = _existing(mailbox, task, p["x"])
    mailbox.entities.pop(ext.id, None)
    ctx.store.touch(mailbox, task)
    return Response(204)


def register(router: Router) -> None:
    """Add the open-extension routes of To Do tasks."""
    base = "/users/{u}/todo/lists/{l}/tasks/{t}/extensions"
    router.add("GET", base, list_extensions)
    router.add("POST", base, create_extension)
    router.add("GET", f"{base}/{{x}}", get_extension)
    router.add("PATCH", f"{base}/{{x}}", update_extension)
    router.add("DELETE", f"{base}/{{x}}", delete_extension)
