"""Mail folders, messages, move and sendMail."""

from __future__ import annotations

import base64
import binascii
import html
import os
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import getaddresses
from typing import Any

from . import crud
from .delta import delta_response, entity_collector
from .errors import GraphError
from .ids import iso_z, new_item_id, utc_now
from .routing import Context, Handler, Request, Response, Router
from .schema import Invalid, boolean, validate_body
from .store import Entity, Mailbox


def _folders_ctx(mailbox: Mailbox) -> str:
    return f"users('{mailbox.id}')/mailFolders"


def _messages_ctx(mailbox: Mailbox, folder: Entity | None = None) -> str:
    if folder is None:
        return f"users('{mailbox.id}')/messages"
    return f"users('{mailbox.id}')/mailFolders('{folder.id}')/messages"


async def list_folders(ctx: Context, req: Request, p: dict[str, str]) -> Response:
    mailbox = ctx.store.user(p["u"])
    query = crud.query_for(ctx, req, "mailFolder")
    parent = mailbox.mail_folder(p["f"]).id if "f" in p else None
    folders = [f for f in mailbox.children("mailFolder", None) if f.parent == parent]
    return crud.list_response(ctx, req, mailbox, folders, _folders_ctx(mailbox), query)


async def create_folder(ctx: Context, req: Request, p: dict[str, str]) -> Response:
    mailbox = ctx.store.user(p["u"])
    parent = mailbox.mail_folder(p["f"]).id if "f" in p else None
    props = validate_body("mailFolder", req.json())
    name = props.get("displayName")
    if not isinstance(name, str) or not name.strip():
        raise GraphError(400, "ErrorInvalidRequest", "displayName is required.")
    for sibling in mailbox.children("mailFolder", None):
        if sibling.parent == parent and str(sibling.props.get("displayName", "")).lower() == (
            name.lower()
        ):
            raise GraphError(
                409, "ErrorFolderExists", "A folder with the specified name already exists."
            )
    folder = ctx.store.create(mailbox, "mailFolder", parent, props)
    query = crud.query_for(ctx, req, "mailFolder")
    return crud.item_response(req, mailbox, folder, _folders_ctx(mailbox), query, 201)


async def get_folder(ctx: Context, req: Request, p: dict[str, str]) -> Response:
    mailbox = ctx.store.user(p["u"])
    folder = mailbox.mail_folder(p["f"])
    query = crud.query_for(ctx, req, "mailFolder")
    return crud.item_response(req, mailbox, folder, _folders_ctx(mailbox), query)


async def update_folder(ctx: Context, req: Request, p: dict[str, str]) -> Response:
    mailbox = ctx.store.user(p["u"])
    folder = mailbox.mail_folder(p["f"])
    props = validate_body("mailFolder", req.json())
    ctx.store.update(mailbox, folder, props)
    query = crud.query_for(ctx, req, "mailFolder")
    return crud.item_response(req, mailbox, folder, _folders_ctx(mailbox), query)


async def delete_folder(ctx: Context, req: Request, p: dict[str, str]) -> Response:
    mailbox = ctx.store.user(p["u"])
    folder = mailbox.mail_folder(p["f"])
    if "wellKnownName" in folder.internal:
        raise GraphError(
            403, "ErrorDeleteDistinguishedFolder", "Distinguished folders cannot be deleted."
        )
    ctx.store.delete(mailbox, folder)
    return crud.no_content()


async def list_messages(ctx: Context, req: Request, p: dict[str, str]) -> Response:
    mailbox = ctx.store.user(p["u"])
    query = crud.query_for(ctx, req, "message")
    folder = mailbox.mail_folder(p["f"]) if "f" in p else None
    items = mailbox.children("message", folder.id if folder else None)
    if not query.orderby:
        items.sort(key=lambda e: str(e.props.get("receivedDateTime") or e.created), reverse=True)
    return crud.list_response(ctx, req, mailbox, items, _messages_ctx(mailbox, folder), query)


def _new_message_props(mailbox: Mailbox, props: dict[str, Any]) -> dict[str, Any]:
    out = dict(props)
    out.setdefault("internetMessageId", f"<{os.urandom(12).hex()}@{mailbox.mail.split('@')[1]}>")
    out.setdefault("conversationId", new_item_id())
    return out


async def create_message(ctx: Context, req: Request, p: dict[str, str]) -> Response:
    mailbox = ctx.store.user(p["u"])
    folder = mailbox.mail_folder(p.get("f", "drafts"))
    props, ext = crud.read_write_body(req, "message")
    message = ctx.store.create(
        mailbox, "message", folder.id, _new_message_props(mailbox, props), ext=ext
    )
    query = crud.query_for(ctx, req, "message")
    return crud.item_response(req, mailbox, message, _messages_ctx(mailbox, folder), query, 201)


def _message(mailbox: Mailbox, p: dict[str, str]) -> Entity:
    message = mailbox.get(p["m"], "message")
    if "f" in p and message.parent != mailbox.mail_folder(p["f"]).id:
        raise GraphError(
            404, "ErrorItemNotFound", "The specified object was not found in the store."
        )
    return message


async def get_message(ctx: Context, req: Request, p: dict[str, str]) -> Response:
    mailbox = ctx.store.user(p["u"])
    query = crud.query_for(ctx, req, "message")
    return crud.item_response(req, mailbox, _message(mailbox, p), _messages_ctx(mailbox), query)


async def update_message(ctx: Context, req: Request, p: dict[str, str]) -> Response:
    mailbox = ctx.store.user(p["u"])
    message = _message(mailbox, p)
    crud.check_if_match(req, message)
    props, ext = crud.read_write_body(req, "message")
    ctx.store.update(mailbox, message, props, crud.merge_ext(message, ext))
    query = crud.query_for(ctx, req, "message")
    return crud.item_response(req, mailbox, message, _messages_ctx(mailbox), query)


async def delete_message(ctx: Context, req: Request, p: dict[str, str]) -> Response:
    """Like Graph: moves the message to Deleted Items; from Deleted Items it is gone."""
    mailbox = ctx.store.user(p["u"])
    message = _message(mailbox, p)
    crud.check_if_match(req, message)
    deleted_items = mailbox.well_known["deleteditems"]
    if message.parent == deleted_items:
        ctx.store.delete(mailbox, message)
    else:
        ctx.store.move(mailbox, message, deleted_items)
    return crud.no_content()


async def permanent_delete(ctx: Context, req: Request, p: dict[str, str]) -> Response:
    """``POST …/permanentDelete``: removed from every folder at once."""
    mailbox = ctx.store.user(p["u"])
    message = _message(mailbox, p)
    if req.body.strip():
        raise GraphError(400, "BadRequest", "permanentDelete takes no request body.")
    ctx.store.delete(mailbox, message)
    return crud.no_content()


async def move_message(ctx: Context, req: Request, p: dict[str, str]) -> Response:
    mailbox = ctx.store.user(p["u"])
    message = _message(mailbox, p)
    body = _action_body(req.json())
    target = body.get("destinationid")
    if not isinstance(target, str) or not target:
        raise GraphError(400, "ErrorInvalidIdMalformed", "destinationId is required.")
    folder = mailbox.mail_folder(target)
    ctx.store.move(mailbox, message, folder.id)
    query = crud.query_for(ctx, req, "message")
    return crud.item_response(req, mailbox, message, _messages_ctx(mailbox), query, 201)


async def copy_message(ctx: Context, req: Request, p: dict[str, str]) -> Response:
    """``POST …/messages/{id}/copy``: a copy (a new item, a new id) in ``destinationId``."""
    mailbox = ctx.store.user(p["u"])
    message = _message(mailbox, p)
    body = _action_body(req.json())
    target = body.get("destinationid")
    if not isinstance(target, str) or not target:
        raise GraphError(400, "ErrorInvalidIdMalformed", "destinationId is required.")
    folder = mailbox.mail_folder(target)
    copy = ctx.store.create(mailbox, "message", folder.id, message.props, ext=dict(message.ext))
    query = crud.query_for(ctx, req, "message")
    return crud.item_response(req, mailbox, copy, _messages_ctx(mailbox), query, 201)


_ANSWER_PARAMS = {
    "createReply": {"comment", "message"},
    "createReplyAll": {"comment", "message"},
    "createForward": {"comment", "message", "torecipients"},
}
_PREFIX = {"createReply": "RE: ", "createReplyAll": "RE: ", "createForward": "FW: "}


def _answer_params(req: Request, action: str) -> dict[str, Any]:
    """The JSON parameters of a createReply/createReplyAll/createForward (all optional), or
    the fields of a base64 MIME body (``Content-Type: text/plain``)."""
    if not req.body.strip():
        return {}
    content_type = (req.header("Content-Type") or "").lower()
    if content_type.startswith("text/plain"):
        return {"message": _from_mime(req.body)}
    body = _action_body(req.json())
    allowed = _ANSWER_PARAMS[action]
    for key in body:
        if key not in allowed:
            raise GraphError(
                400, "RequestBodyRead", f"The parameter '{key}' is not valid for {action}."
            )
    comment = body.get("comment")
    if comment is not None and not isinstance(comment, str):
        raise GraphError(
            400, "RequestBodyRead", f"Cannot convert the literal '{comment}' to 'Edm.String'."
        )
    out: dict[str, Any] = {"comment": comment}
    if body.get("message") is not None:
        out["message"] = validate_body("message", body["message"])
    if body.get("torecipients") is not None:
        out["toRecipients"] = validate_body("message", {"toRecipients": body["torecipients"]})[
            "toRecipients"
        ]
    message = out.get("message") or {}
    if comment is not None and "body" in message:
        raise GraphError(
            400,
            "ErrorInvalidRequest",
            "Specify either a comment or the body property of the message parameter, not both.",
        )
    if "toRecipients" in out and "toRecipients" in message:
        raise GraphError(
            400,
            "ErrorInvalidRequest",
            "Specify either the toRecipients parameter or the toRecipients property of the "
            "message parameter, not both.",
        )
    return out


def _from_mime(raw: bytes) -> dict[str, Any]:
    """Message properties from base64 MIME content (Graph's 400 when it is not base64)."""
    try:
        data = base64.b64decode(b"".join(raw.split()), validate=True)
    except (binascii.Error, ValueError):
        raise GraphError(
            400, "ErrorMimeContentInvalidBase64String", "Invalid base64 string for MIME content."
        ) from None
    mime = BytesParser(policy=policy.default).parsebytes(data)
    props: dict[str, Any] = {}
    if mime["Subject"] is not None:
        props["subject"] = str(mime["Subject"])
    for header, field in (("To", "toRecipients"), ("Cc", "ccRecipients"), ("Bcc", "bccRecipients")):
        values = [str(v) for v in mime.get_all(header) or []]
        if values:
            props[field] = [
                {"emailAddress": {"name": name or address, "address": address}}
                for name, address in getaddresses(values)
                if address
            ]
    part = (
        mime.get_body(preferencelist=("html", "plain")) if isinstance(mime, EmailMessage) else None
    )
    if part is not None and isinstance(part, EmailMessage):
        kind = "html" if part.get_content_subtype() == "html" else "text"
        props["body"] = {"contentType": kind, "content": str(part.get_content())}
    return props


def _same_address(a: dict[str, Any], b: str) -> bool:
    address = ((a or {}).get("emailAddress") or {}).get("address")
    return isinstance(address, str) and address.lower() == b.lower()


def _unique(recipients: list[dict[str, Any]], me: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for recipient in recipients:
        address = ((recipient or {}).get("emailAddress") or {}).get("address")
        if not isinstance(address, str) or address.lower() in seen or _same_address(recipient, me):
            continue
        seen.add(address.lower())
        out.append(recipient)
    return out


def _quoted(original: dict[str, Any], comment: str | None) -> dict[str, Any]:
    old = original.get("body") or {}
    text = str(old.get("content") or "")
    if old.get("contentType") != "html":
        text = html.escape(text).replace("\n", "<br>")
    sender = ((original.get("from") or {}).get("emailAddress") or {}).get("address") or ""
    lead = f"<div>{html.escape(comment)}</div>" if comment else ""
    return {
        "contentType": "html",
        "content": f"<html><body>{lead}<hr><div><b>From:</b> {html.escape(sender)}<br>"
        f"<b>Subject:</b> {html.escape(str(original.get('subject') or ''))}</div>"
        f"<div>{text}</div></body></html>",
    }


def _answer(action: str) -> Handler:
    """``POST …/messages/{id}/createReply|createReplyAll|createForward``: a draft in Drafts."""

    async def run(ctx: Context, req: Request, p: dict[str, str]) -> Response:
        mailbox = ctx.store.user(p["u"])
        original = _message(mailbox, p).props
        params = _answer_params(req, action)
        given: dict[str, Any] = dict(params.get("message") or {})
        subject = str(original.get("subject") or "")
        draft: dict[str, Any] = {
            "subject": _PREFIX[action] + subject,
            "body": _quoted(original, params.get("comment")),
            "conversationId": original.get("conversationId"),
            "isDraft": True,
        }
        sender = list(original.get("replyTo") or [])
        if not sender and original.get("from"):
            sender = [original["from"]]
        if action == "createReply":
            draft["toRecipients"] = _unique(sender, "")
        elif action == "createReplyAll":
            everyone = list(sender) + list(original.get("toRecipients") or [])
            draft["toRecipients"] = _unique(everyone, mailbox.mail)
            draft["ccRecipients"] = _unique(list(original.get("ccRecipients") or []), mailbox.mail)
        else:
            draft["toRecipients"] = params.get("toRecipients") or []
        draft.update(given)
        props = _new_message_props(mailbox, draft)
        made = ctx.store.create(mailbox, "message", mailbox.well_known["drafts"], props)
        query = crud.query_for(ctx, req, "message")
        return crud.item_response(req, mailbox, made, _messages_ctx(mailbox), query, 201)

    return run


def _action_body(body: Any) -> dict[str, Any]:
    """Action parameters, whose names Graph matches case-insensitively."""
    if not isinstance(body, dict):
        raise GraphError(400, "BadRequest", "The request body must be a JSON object.")
    return {str(k).lower(): v for k, v in body.items()}


def _addresses(props: dict[str, Any], *fields: str) -> list[str]:
    out: list[str] = []
    for name in fields:
        for recipient in props.get(name) or []:
            address = ((recipient or {}).get("emailAddress") or {}).get("address")
            if isinstance(address, str) and address:
                out.append(address)
    return out


def _check_headers(props: dict[str, Any]) -> None:
    for header in props.get("internetMessageHeaders") or []:
        name = str(header.get("name") or "")
        if not (name.lower().startswith("x-") or name.lower() in ("in-reply-to", "references")):
            raise GraphError(
                400,
                "InvalidInternetMessageHeader",
                f"The internet message header name '{name}' should start with 'x-' or 'X-'.",
            )


def deliver(
    ctx: Context,
    sender: Mailbox,
    props: dict[str, Any],
    save: bool,
    ext: dict[str, str] | None = None,
    draft: Entity | None = None,
) -> None:
    """Put a sent message into Sent Items (with its extended properties ``ext``) and into
    every emulated recipient's Inbox (without them: they do not travel with the mail).

    The Sent Items copy of a ``draft`` keeps the draft's immutable id (as Graph documents for
    sending a draft) and, having changed folder, gets a new REST id."""
    if not _addresses(props, "toRecipients", "ccRecipients", "bccRecipients"):
        raise GraphError(
            400,
            "ErrorInvalidRecipients",
            "At least one recipient is not valid., A message "
            "can't be sent because it contains no recipients.",
        )
    _check_headers(props)
    now = iso_z(utc_now())
    me = {"emailAddress": {"name": sender.display_name, "address": sender.mail}}
    sent = _new_message_props(sender, props)
    sent.update({"from": me, "sender": me, "isDraft": False, "isRead": True, "sentDateTime": now})
    sent.setdefault("receivedDateTime", now)
    in_reply_to = next(
        (
            h.get("value")
            for h in sent.get("internetMessageHeaders") or []
            if str(h.get("name", "")).lower() == "in-reply-to"
        ),
        None,
    )
    if in_reply_to and "conversationId" not in props:
        for entity in sender.children("message", None):
            if entity.props.get("internetMessageId") == in_reply_to:
                sent["conversationId"] = entity.props.get("conversationId")
    if save:
        ctx.store.create(
            sender,
            "message",
            sender.well_known["sentitems"],
            sent,
            ext=ext,
            item_id=draft.id if draft is not None else None,
            moved=draft is not None,
        )
    seen: set[str] = set()
    for address in _addresses(props, "toRecipients", "ccRecipients", "bccRecipients"):
        target = ctx.store.user_by_address(address)
        if target is None or target.id in seen:
            continue
        seen.add(target.id)
        received = {k: v for k, v in sent.items() if k != "bccRecipients"}
        received.update({"isRead": False, "receivedDateTime": now})
        ctx.store.create(target, "message", target.well_known["inbox"], received)


async def send_mail(ctx: Context, req: Request, p: dict[str, str]) -> Response:
    mailbox = ctx.store.user(p["u"])
    body = _action_body(req.json())
    if not isinstance(body.get("message"), dict):
        raise GraphError(400, "ErrorInvalidRequest", "The 'message' property is required.")
    try:
        save = boolean(body.get("savetosentitems", True))
    except Invalid as exc:
        raise GraphError(400, "RequestBodyRead", str(exc)) from None
    extra = set(body) - {"message", "savetosentitems"}
    if extra:
        raise GraphError(
            400, "RequestBodyRead", f"The property '{sorted(extra)[0]}' does not exist on sendMail."
        )
    props = validate_body("message", body["message"])
    ext = {}
    for entry in props.pop("singleValueExtendedProperties", None) or []:
        if not entry.get("id") or entry.get("value") is None:
            raise GraphError(
                400, "ErrorInvalidProperty", "A singleValueExtendedProperty needs 'id' and 'value'."
            )
        ext[entry["id"]] = entry["value"]
    deliver(ctx, mailbox, props, save, ext)
    return Response(202)


async def send_draft(ctx: Context, req: Request, p: dict[str, str]) -> Response:
    mailbox = ctx.store.user(p["u"])
    draft = _message(mailbox, p)
    if not draft.props.get("isDraft", True):
        raise GraphError(400, "ErrorInvalidOperation", "Only drafts can be sent.")
    props, ext = dict(draft.props), dict(draft.ext)
    ctx.store.delete(mailbox, draft)
    deliver(ctx, mailbox, props, True, ext, draft)
    return Response(202)


async def messages_delta(ctx: Context, req: Request, p: dict[str, str]) -> Response:
    mailbox = ctx.store.user(p["u"])
    folder = mailbox.mail_folder(p["f"])
    query = crud.query_for(ctx, req, "message")
    folder_id = folder.id
    collect = entity_collector(
        mailbox, "message", lambda e: e.parent == folder_id, folder_id, query
    )
    return delta_response(ctx, req, mailbox, f"message:{folder_id}", "message", collect)


def register(router: Router) -> None:
    """Add the mail routes."""
    u = "/users/{u}"
    router.add("GET", f"{u}/mailFolders", list_folders)
    router.add("POST", f"{u}/mailFolders", create_folder)
    router.add("GET", f"{u}/mailFolders/{{f}}", get_folder)
    router.add("PATCH", f"{u}/mailFolders/{{f}}", update_folder)
    router.add("DELETE", f"{u}/mailFolders/{{f}}", delete_folder)
    router.add("GET", f"{u}/mailFolders/{{f}}/childFolders", list_folders)
    router.add("POST", f"{u}/mailFolders/{{f}}/childFolders", create_folder)
    router.add("GET", f"{u}/mailFolders/{{f}}/messages/delta", messages_delta)
    for prefix in (f"{u}/mailFolders/{{f}}/messages", f"{u}/messages"):
        router.add("GET", prefix, list_messages)
        router.add("POST", prefix, create_message)
        router.add("GET", f"{prefix}/{{m}}", get_message)
        router.add("PATCH", f"{prefix}/{{m}}", update_message)
        router.add("DELETE", f"{prefix}/{{m}}", delete_message)
        router.add("POST", f"{prefix}/{{m}}/move", move_message)
        router.add("POST", f"{prefix}/{{m}}/copy", copy_message)
        for action in _ANSWER_PARAMS:
            router.add("POST", f"{prefix}/{{m}}/{action}", _answer(action))
        router.add("POST", f"{prefix}/{{m}}/send", send_draft)
        router.add("POST", f"{prefix}/{{m}}/permanentDelete", permanent_delete)
    router.add("POST", f"{u}/sendMail", send_mail)
