"""To Do: task lists, tasks (with delta) and linkedResources."""

from __future__ import annotations

from typing import Any

from . import crud, ext_body
from .delta import delta_response, entity_collector
from .errors import GraphError
from .ids import iso_z, new_guid, utc_now
from .render import render
from .routing import Context, Request, Response, Router
from .schema import validate_body
from .store import Entity, Mailbox


def _lists_ctx(mailbox: Mailbox) -> str:
    return f"users('{mailbox.id}')/todo/lists"


def _tasks_ctx(mailbox: Mailbox, task_list: Entity) -> str:
    return f"users('{mailbox.id}')/todo/lists('{task_list.id}')/tasks"


async def list_lists(ctx: Context, req: Request, p: dict[str, str]) -> Response:
    mailbox = ctx.store.user(p["u"])
    query = crud.query_for(ctx, req, "todoTaskList")
    lists = mailbox.children("todoTaskList", None)
    return crud.list_response(ctx, req, mailbox, lists, _lists_ctx(mailbox), query)


async def create_list(ctx: Context, req: Request, p: dict[str, str]) -> Response:
    mailbox = ctx.store.user(p["u"])
    props = validate_body("todoTaskList", req.json())
    if not isinstance(props.get("displayName"), str) or not props["displayName"].strip():
        raise GraphError(400, "invalidRequest", "displayName is required.")
    task_list = ctx.store.create(mailbox, "todoTaskList", None, props)
    query = crud.query_for(ctx, req, "todoTaskList")
    return crud.item_response(req, mailbox, task_list, _lists_ctx(mailbox), query, 201)


async def get_list(ctx: Context, req: Request, p: dict[str, str]) -> Response:
    mailbox = ctx.store.user(p["u"])
    query = crud.query_for(ctx, req, "todoTaskList")
    task_list = mailbox.get(p["l"], "todoTaskList")
    return crud.item_response(req, mailbox, task_list, _lists_ctx(mailbox), query)


async def update_list(ctx: Context, req: Request, p: dict[str, str]) -> Response:
    mailbox = ctx.store.user(p["u"])
    task_list = mailbox.get(p["l"], "todoTaskList")
    ctx.store.update(mailbox, task_list, validate_body("todoTaskList", req.json()))
    query = crud.query_for(ctx, req, "todoTaskList")
    return crud.item_response(req, mailbox, task_list, _lists_ctx(mailbox), query)


async def delete_list(ctx: Context, req: Request, p: dict[str, str]) -> Response:
    mailbox = ctx.store.user(p["u"])
    task_list = mailbox.get(p["l"], "todoTaskList")
    if task_list.id == mailbox.default_list:
        raise GraphError(400, "invalidRequest", "The default list cannot be deleted.")
    ctx.store.delete(mailbox, task_list)
    return crud.no_content()


def _task(mailbox: Mailbox, p: dict[str, str]) -> tuple[Entity, Entity]:
    task_list = mailbox.get(p["l"], "todoTaskList")
    task = mailbox.get(p["t"], "todoTask")
    if task.parent != task_list.id:
        raise GraphError(
            404, "ErrorItemNotFound", "The specified object was not found in the store."
        )
    return task_list, task


def _completion(props: dict[str, Any], previous: str | None) -> None:
    status = props.get("status")
    if status == "completed" and previous != "completed" and "completedDateTime" not in props:
        now = utc_now().strftime("%Y-%m-%dT%H:%M:%S.0000000")
        props["completedDateTime"] = {"dateTime": now, "timeZone": "UTC"}
    elif status is not None and status != "completed":
        props.setdefault("completedDateTime", None)


async def list_tasks(ctx: Context, req: Request, p: dict[str, str]) -> Response:
    mailbox = ctx.store.user(p["u"])
    task_list = mailbox.get(p["l"], "todoTaskList")
    query = crud.query_for(ctx, req, "todoTask")
    tasks = mailbox.children("todoTask", task_list.id)
    return crud.list_response(ctx, req, mailbox, tasks, _tasks_ctx(mailbox, task_list), query)


async def create_task(ctx: Context, req: Request, p: dict[str, str]) -> Response:
    mailbox = ctx.store.user(p["u"])
    task_list = mailbox.get(p["l"], "todoTaskList")
    props = validate_body("todoTask", req.json())
    if not isinstance(props.get("title"), str):
        raise GraphError(400, "invalidRequest", "title is required.")
    linked = props.pop("linkedResources", None) or []
    extensions = props.pop("extensions", None) or []
    _completion(props, None)
    task = ctx.store.create(mailbox, "todoTask", task_list.id, props)
    for resource in linked:
        ctx.store.create(mailbox, "linkedResource", task.id, resource, notify=False)
    for extension in extensions:
        name, data = ext_body.parse(extension)
        body = {"extensionName": name, **data}
        ctx.store.create(mailbox, ext_body.KIND, task.id, body, notify=False)
    query = crud.query_for(ctx, req, "todoTask")
    query.expand.setdefault("linkedResources", None)
    if extensions:
        query.expand.setdefault("extensions", None)
    return crud.item_response(req, mailbox, task, _tasks_ctx(mailbox, task_list), query, 201)


async def get_task(ctx: Context, req: Request, p: dict[str, str]) -> Response:
    mailbox = ctx.store.user(p["u"])
    task_list, task = _task(mailbox, p)
    query = crud.query_for(ctx, req, "todoTask")
    return crud.item_response(req, mailbox, task, _tasks_ctx(mailbox, task_list), query)


async def update_task(ctx: Context, req: Request, p: dict[str, str]) -> Response:
    mailbox = ctx.store.user(p["u"])
    task_list, task = _task(mailbox, p)
    crud.check_if_match(req, task)
    props = validate_body("todoTask", req.json())
    for navigation in ("linkedResources", "extensions"):
        if navigation in props:
            raise GraphError(
                400, "invalidRequest", f"{navigation} are changed through their own endpoint."
            )
    _completion(props, task.props.get("status"))
    ctx.store.update(mailbox, task, props)
    query = crud.query_for(ctx, req, "todoTask")
    return crud.item_response(req, mailbox, task, _tasks_ctx(mailbox, task_list), query)


async def delete_task(ctx: Context, req: Request, p: dict[str, str]) -> Response:
    mailbox = ctx.store.user(p["u"])
    _, task = _task(mailbox, p)
    crud.check_if_match(req, task)
    ctx.store.delete(mailbox, task)
    return crud.no_content()


async def tasks_delta(ctx: Context, req: Request, p: dict[str, str]) -> Response:
    mailbox = ctx.store.user(p["u"])
    task_list = mailbox.get(p["l"], "todoTaskList")
    query = crud.query_for(ctx, req, "todoTask")
    list_id = task_list.id
    collect = entity_collector(mailbox, "todoTask", lambda e: e.parent == list_id, list_id, query)
    return delta_response(ctx, req, mailbox, f"todoTask:{list_id}", "todoTask", collect)


def _resources_ctx(mailbox: Mailbox, task: Entity) -> str:
    return f"users('{mailbox.id}')/todo/lists('{task.parent}')/tasks('{task.id}')/linkedResources"


async def list_resources(ctx: Context, req: Request, p: dict[str, str]) -> Response:
    mailbox = ctx.store.user(p["u"])
    _, task = _task(mailbox, p)
    query = crud.query_for(ctx, req, "linkedResource")
    items = mailbox.children("linkedResource", task.id)
    return crud.list_response(ctx, req, mailbox, items, _resources_ctx(mailbox, task), query)


async def create_resource(ctx: Context, req: Request, p: dict[str, str]) -> Response:
    mailbox = ctx.store.user(p["u"])
    _, task = _task(mailbox, p)
    props = validate_body("linkedResource", req.json())
    resource = ctx.store.create(mailbox, "linkedResource", task.id, props, notify=False)
    ctx.store.touch(mailbox, task)
    query = crud.query_for(ctx, req, "linkedResource")
    return crud.item_response(req, mailbox, resource, _resources_ctx(mailbox, task), query, 201)


def _resource(mailbox: Mailbox, p: dict[str, str]) -> tuple[Entity, Entity]:
    _, task = _task(mailbox, p)
    resource = mailbox.get(p["r"], "linkedResource")
    if resource.parent != task.id:
        raise GraphError(
            404, "ErrorItemNotFound", "The specified object was not found in the store."
        )
    return task, resource


async def get_resource(ctx: Context, req: Request, p: dict[str, str]) -> Response:
    mailbox = ctx.store.user(p["u"])
    task, resource = _resource(mailbox, p)
    query = crud.query_for(ctx, req, "linkedResource")
    return crud.item_response(req, mailbox, resource, _resources_ctx(mailbox, task), query)


async def update_resource(ctx: Context, req: Request, p: dict[str, str]) -> Response:
    mailbox = ctx.store.user(p["u"])
    task, resource = _resource(mailbox, p)
    resource.props.update(validate_body("linkedResource", req.json()))
    ctx.store.touch(mailbox, task)
    query = crud.query_for(ctx, req, "linkedResource")
    return crud.item_response(req, mailbox, resource, _resources_ctx(mailbox, task), query)


async def delete_resource(ctx: Context, req: Request, p: dict[str, str]) -> Response:
    mailbox = ctx.store.user(p["u"])
    task, resource = _resource(mailbox, p)
    mailbox.entities.pop(resource.id, None)
    ctx.store.touch(mailbox, task)
    return crud.no_content()


async def lists_delta(ctx: Context, req: Request, p: dict[str, str]) -> Response:
    """``GET /users/{id}/todo/lists/delta``: task lists added, changed or removed."""
    mailbox = ctx.store.user(p["u"])
    query = crud.query_for(ctx, req, "todoTaskList")
    collect = entity_collector(mailbox, "todoTaskList", lambda e: True, None, query)
    return delta_response(ctx, req, mailbox, "todoTaskList", "todoTaskList", collect)


def _checklist_ctx(mailbox: Mailbox, task: Entity) -> str:
    return f"users('{mailbox.id}')/todo/lists('{task.parent}')/tasks('{task.id}')/checklistItems"


def _checked(props: dict[str, Any], was_checked: bool) -> dict[str, Any]:
    """``checkedDateTime`` follows ``isChecked`` unless the body sets it."""
    checked = props.get("isChecked")
    if checked is True and not was_checked and "checkedDateTime" not in props:
        props["checkedDateTime"] = iso_z(utc_now())
    elif checked is False:
        props["checkedDateTime"] = None
    return props


def _checklist_item(mailbox: Mailbox, p: dict[str, str]) -> tuple[Entity, Entity]:
    _, task = _task(mailbox, p)
    item = mailbox.get(p["i"], "checklistItem")
    if item.parent != task.id:
        raise GraphError(
            404, "ErrorItemNotFound", "The specified object was not found in the store."
        )
    return task, item


def _checklist_view(mailbox: Mailbox, entity: Entity) -> dict[str, Any]:
    view = render(mailbox, entity)
    if view.get("checkedDateTime") is None:
        view.pop("checkedDateTime", None)
    return view


async def list_checklist(ctx: Context, req: Request, p: dict[str, str]) -> Response:
    mailbox = ctx.store.user(p["u"])
    _, task = _task(mailbox, p)
    query = crud.query_for(ctx, req, "checklistItem")
    items = mailbox.children("checklistItem", task.id)
    return crud.list_response(
        ctx, req, mailbox, items, _checklist_ctx(mailbox, task), query, _checklist_view
    )


async def create_checklist_item(ctx: Context, req: Request, p: dict[str, str]) -> Response:
    mailbox = ctx.store.user(p["u"])
    _, task = _task(mailbox, p)
    props = validate_body("checklistItem", req.json())
    if not isinstance(props.get("displayName"), str) or not props["displayName"].strip():
        raise GraphError(400, "invalidRequest", "displayName is required.")
    item = ctx.store.create(
        mailbox, "checklistItem", task.id, _checked(props, False), item_id=new_guid(), notify=False
    )
    ctx.store.touch(mailbox, task)
    query = crud.query_for(ctx, req, "checklistItem")
    return crud.item_response(
        req, mailbox, item, _checklist_ctx(mailbox, task), query, 201, _checklist_view
    )


async def get_checklist_item(ctx: Context, req: Request, p: dict[str, str]) -> Response:
    mailbox = ctx.store.user(p["u"])
    task, item = _checklist_item(mailbox, p)
    query = crud.query_for(ctx, req, "checklistItem")
    return crud.item_response(
        req, mailbox, item, _checklist_ctx(mailbox, task), query, renderer=_checklist_view
    )


async def update_checklist_item(ctx: Context, req: Request, p: dict[str, str]) -> Response:
    mailbox = ctx.store.user(p["u"])
    task, item = _checklist_item(mailbox, p)
    props = validate_body("checklistItem", req.json())
    if "displayName" in props and not str(props["displayName"] or "").strip():
        raise GraphError(400, "invalidRequest", "displayName cannot be empty.")
    was = bool(item.props.get("isChecked"))
    item.props.update(_checked(props, was))
    ctx.store.touch(mailbox, task)
    query = crud.query_for(ctx, req, "checklistItem")
    return crud.item_response(
        req, mailbox, item, _checklist_ctx(mailbox, task), query, renderer=_checklist_view
    )


async def delete_checklist_item(ctx: Context, req: Request, p: dict[str, str]) -> Response:
    mailbox = ctx.store.user(p["u"])
    task, item = _checklist_item(mailbox, p)
    mailbox.entities.pop(item.id, None)
    ctx.store.touch(mailbox, task)
    return crud.no_content()


def register(router: Router) -> None:
    """Add the To Do routes."""
    lists = "/users/{u}/todo/lists"
    router.add("GET", f"{lists}/delta", lists_delta)
    router.add("GET", lists, list_lists)
    router.add("POST", lists, create_list)
    router.add("GET", f"{lists}/{{l}}", get_list)
    router.add("PATCH", f"{lists}/{{l}}", update_list)
    router.add("DELETE", f"{lists}/{{l}}", delete_list)
    tasks = f"{lists}/{{l}}/tasks"
    router.add("GET", f"{tasks}/delta", tasks_delta)
    router.add("GET", tasks, list_tasks)
    router.add("POST", tasks, create_task)
    router.add("GET", f"{tasks}/{{t}}", get_task)
    router.add("PATCH", f"{tasks}/{{t}}", update_task)
    router.add("DELETE", f"{tasks}/{{t}}", delete_task)
    res = f"{tasks}/{{t}}/linkedResources"
    router.add("GET", res, list_resources)
    router.add("POST", res, create_resource)
    router.add("GET", f"{res}/{{r}}", get_resource)
    router.add("PATCH", f"{res}/{{r}}", update_resource)
    router.add("DELETE", f"{res}/{{r}}", delete_resource)
    checklist = f"{tasks}/{{t}}/checklistItems"
    router.add("GET", checklist, list_checklist)
    router.add("POST", checklist, create_checklist_item)
    router.add("GET", f"{checklist}/{{i}}", get_checklist_item)
    router.add("PATCH", f"{checklist}/{{i}}", update_checklist_item)
    router.add("DELETE", f"{checklist}/{{i}}", delete_checklist_item)
