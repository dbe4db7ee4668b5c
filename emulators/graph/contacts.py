"""Contacts and contact folders, with per-folder delta."""

from __future__ import annotations

from . import crud
from .delta import delta_response, entity_collector
from .errors import GraphError
from .routing import Context, Request, Response, Router
from .schema import validate_body
from .store import Entity, Mailbox


def _folder(mailbox: Mailbox, p: dict[str, str]) -> Entity:
    return mailbox.get(p["f"], "contactFolder") if "f" in p else mailbox.get(mailbox.contacts_root)


def _ctx(mailbox: Mailbox) -> str:
    return f"users('{mailbox.id}')/contacts"


async def list_folders(ctx: Context, req: Request, p: dict[str, str]) -> Response:
    mailbox = ctx.store.user(p["u"])
    query = crud.query_for(ctx, req, "contactFolder")
    parent = p.get("f", mailbox.contacts_root)
    folders = mailbox.children("contactFolder", parent)
    return crud.list_response(
        ctx, req, mailbox, folders, f"users('{mailbox.id}')/contactFolders", query
    )


async def create_folder(ctx: Context, req: Request, p: dict[str, str]) -> Response:
    mailbox = ctx.store.user(p["u"])
    parent = _folder(mailbox, p)
    props = validate_body("contactFolder", req.json())
    if not isinstance(props.get("displayName"), str) or not props["displayName"].strip():
        raise GraphError(400, "ErrorInvalidRequest", "displayName is required.")
    folder = ctx.store.create(mailbox, "contactFolder", parent.id, props)
    query = crud.query_for(ctx, req, "contactFolder")
    return crud.item_response(
        req, mailbox, folder, f"users('{mailbox.id}')/contactFolders", query, 201
    )


async def get_folder(ctx: Context, req: Request, p: dict[str, str]) -> Response:
    mailbox = ctx.store.user(p["u"])
    query = crud.query_for(ctx, req, "contactFolder")
    return crud.item_response(
        req, mailbox, _folder(mailbox, p), f"users('{mailbox.id}')/contactFolders", query
    )


async def update_folder(ctx: Context, req: Request, p: dict[str, str]) -> Response:
    mailbox = ctx.store.user(p["u"])
    folder = _folder(mailbox, p)
    ctx.store.update(mailbox, folder, validate_body("contactFolder", req.json()))
    query = crud.query_for(ctx, req, "contactFolder")
    return crud.item_response(req, mailbox, folder, f"users('{mailbox.id}')/contactFolders", query)


async def delete_folder(ctx: Context, req: Request, p: dict[str, str]) -> Response:
    mailbox = ctx.store.user(p["u"])
    folder = _folder(mailbox, p)
    if folder.id == mailbox.contacts_root:
        raise GraphError(
            403, "ErrorDeleteDistinguishedFolder", "Distinguished folders cannot be deleted."
        )
    ctx.store.delete(mailbox, folder)
    return crud.no_content()


async def list_contacts(ctx: Context, req: Request, p: dict[str, str]) -> Response:
    mailbox = ctx.store.user(p["u"])
    query = crud.query_for(ctx, req, "contact")
    items = mailbox.children("contact", _folder(mailbox, p).id)
    return crud.list_response(ctx, req, mailbox, items, _ctx(mailbox), query)


async def create_contact(ctx: Context, req: Request, p: dict[str, str]) -> Response:
    mailbox = ctx.store.user(p["u"])
    folder = _folder(mailbox, p)
    props, ext = crud.read_write_body(req, "contact")
    contact = ctx.store.create(mailbox, "contact", folder.id, props, ext=ext)
    query = crud.query_for(ctx, req, "contact")
    return crud.item_response(req, mailbox, contact, _ctx(mailbox), query, 201)


def _contact(mailbox: Mailbox, p: dict[str, str]) -> Entity:
    contact = mailbox.get(p["c"], "contact")
    if "f" in p and contact.parent != p["f"]:
        raise GraphError(
            404, "ErrorItemNotFound", "The specified object was not found in the store."
        )
    return contact


async def get_contact(ctx: Context, req: Request, p: dict[str, str]) -> Response:
    mailbox = ctx.store.user(p["u"])
    query = crud.query_for(ctx, req, "contact")
    return crud.item_response(req, mailbox, _contact(mailbox, p), _ctx(mailbox), query)


async def update_contact(ctx: Context, req: Request, p: dict[str, str]) -> Response:
    mailbox = ctx.store.user(p["u"])
    contact = _contact(mailbox, p)
    crud.check_if_match(req, contact)
    props, ext = crud.read_write_body(req, "contact")
    ctx.store.update(mailbox, contact, props, crud.merge_ext(contact, ext))
    query = crud.query_for(ctx, req, "contact")
    return crud.item_response(req, mailbox, contact, _ctx(mailbox), query)


async def delete_contact(ctx: Context, req: Request, p: dict[str, str]) -> Response:
    mailbox = ctx.store.user(p["u"])
    contact = _contact(mailbox, p)
    crud.check_if_match(req, contact)
    ctx.store.delete(mailbox, contact)
    return crud.no_content()


async def contacts_delta(ctx: Context, req: Request, p: dict[str, str]) -> Response:
    mailbox = ctx.store.user(p["u"])
    folder_id = _folder(mailbox, p).id
    query = crud.query_for(ctx, req, "contact")
    collect = entity_collector(
        mailbox, "contact", lambda e: e.parent == folder_id, folder_id, query
    )
    return delta_response(ctx, req, mailbox, f"contact:{folder_id}", "contact", collect)


def register(router: Router) -> None:
    """Add the contact routes."""
    u = "/users/{u}"
    router.add("GET", f"{u}/contactFolders", list_folders)
    router.add("POST", f"{u}/contactFolders", create_folder)
    router.add("GET", f"{u}/contactFolders/{{f}}", get_folder)
    router.add("PATCH", f"{u}/contactFolders/{{f}}", update_folder)
    router.add("DELETE", f"{u}/contactFolders/{{f}}", delete_folder)
    router.add("GET", f"{u}/contactFolders/{{f}}/childFolders", list_folders)
    router.add("POST", f"{u}/contactFolders/{{f}}/childFolders", create_folder)
    for prefix in (f"{u}/contactFolders/{{f}}/contacts", f"{u}/contacts"):
        router.add("GET", f"{prefix}/delta", contacts_delta)
        router.add("GET", prefix, list_contacts)
        router.add("POST", prefix, create_contact)
        router.add("GET", f"{prefix}/{{c}}", get_contact)
        router.add("PATCH", f"{prefix}/{{c}}", update_contact)
        router.add("DELETE", f"{prefix}/{{c}}", delete_contact)
