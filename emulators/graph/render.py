"""Graph JSON for stored entities (defaults, computed and read-only properties)."""

from __future__ import annotations

import copy
from typing import Any

from .ids import etag_of
from .schema import READ_ONLY, SCHEMAS
from .store import Entity, Mailbox

SELECT_ONLY = {"message": frozenset({"internetMessageHeaders"})}

_EXTRA = {
    "message": {"bodyPreview", "hasAttachments", "webLink", "conversationIndex"},
    "event": {
        "type",
        "seriesMasterId",
        "iCalUId",
        "isOrganizer",
        "originalStart",
        "responseStatus",
        "originalStartTimeZone",
        "originalEndTimeZone",
        "onlineMeetingUrl",
        "onlineMeeting",
        "webLink",
        "hasAttachments",
        "bodyPreview",
    },
    "todoTask": {"hasAttachments", "bodyLastModifiedDateTime"},
    "todoTaskList": {"isOwner", "isShared", "wellknownListName"},
}


DEFAULT_MEETING_PROVIDER = "teamsForBusiness"
_JOIN_BASE = {
    "teamsForBusiness": "https://teams.microsoft.com/l/meetup-join/",
    "skypeForBusiness": "https://meet.lync.com/",
    "skypeForConsumer": "https://join.skype.com/",
}


def join_url(provider: str, entity: Entity) -> str:
    """A stable join URL for an online meeting (Graph makes one when the event goes online)."""
    base = _JOIN_BASE.get(provider, _JOIN_BASE[DEFAULT_MEETING_PROVIDER])
    return base + str(entity.internal.get("iCalUId", entity.id))


def known_properties(kind: str) -> frozenset[str]:
    """Property names usable in ``$select``, ``$filter`` and ``$orderby`` for ``kind``."""
    return frozenset(SCHEMAS[kind]) | READ_ONLY | _EXTRA.get(kind, set())


def _preview(body: Any) -> str:
    if isinstance(body, dict) and isinstance(body.get("content"), str):
        return " ".join(body["content"].split())[:255]
    return ""


def render(mailbox: Mailbox, entity: Entity) -> dict[str, Any]:
    """The full Graph representation of ``entity`` (no extended properties)."""
    props = copy.deepcopy(entity.props)
    props.pop("singleValueExtendedProperties", None)
    base: dict[str, Any] = {"@odata.etag": etag_of(entity.change_key), "id": entity.id}
    stamps = {
        "createdDateTime": entity.created,
        "lastModifiedDateTime": entity.modified,
        "changeKey": entity.change_key,
    }
    kind = entity.kind
    if kind == "message":
        out = {
            **base,
            **stamps,
            "categories": [],
            "receivedDateTime": entity.created,
            "sentDateTime": entity.created,
            "hasAttachments": False,
            "internetMessageId": None,
            "subject": "",
            "bodyPreview": _preview(props.get("body")),
            "importance": "normal",
            "parentFolderId": entity.parent,
            "conversationId": None,
            "isDeliveryReceiptRequested": False,
            "isReadReceiptRequested": False,
            "isRead": False,
            "isDraft": True,
            "webLink": f"https://outlook.office365.com/owa/?ItemID={entity.id}",
            "inferenceClassification": "focused",
            "body": {"contentType": "text", "content": ""},
            "sender": None,
            "from": None,
            "toRecipients": [],
            "ccRecipients": [],
            "bccRecipients": [],
            "replyTo": [],
            "flag": {"flagStatus": "notFlagged"},
            "internetMessageHeaders": [],
        }
    elif kind == "contact":
        out = {
            **base,
            **stamps,
            "categories": [],
            "parentFolderId": entity.parent,
            "birthday": None,
            "fileAs": "",
            "displayName": " ".join(p for p in (props.get("givenName"), props.get("surname")) if p),
            "givenName": None,
            "initials": None,
            "middleName": None,
            "nickName": None,
            "surname": None,
            "title": None,
            "generation": None,
            "imAddresses": [],
            "jobTitle": None,
            "companyName": None,
            "department": None,
            "officeLocation": None,
            "profession": None,
            "businessHomePage": None,
            "assistantName": None,
            "manager": None,
            "homePhones": [],
            "mobilePhone": None,
            "businessPhones": [],
            "spouseName": None,
            "personalNotes": "",
            "children": [],
            "emailAddresses": [],
            "homeAddress": {},
            "businessAddress": {},
            "otherAddress": {},
        }
    elif kind == "event":
        owner = {"emailAddress": {"name": mailbox.display_name, "address": mailbox.mail}}
        out = {
            **base,
            **stamps,
            "categories": [],
            "transactionId": None,
            "originalStartTimeZone": (props.get("start") or {}).get("timeZone", "UTC"),
            "originalEndTimeZone": (props.get("end") or {}).get("timeZone", "UTC"),
            "iCalUId": entity.internal.get("iCalUId", entity.id),
            "reminderMinutesBeforeStart": 15,
            "isReminderOn": True,
            "hasAttachments": False,
            "subject": "",
            "bodyPreview": _preview(props.get("body")),
            "importance": "normal",
            "sensitivity": "normal",
            "isAllDay": False,
            "isCancelled": False,
            "isOrganizer": True,
            "responseRequested": True,
            "seriesMasterId": entity.internal.get("seriesMasterId"),
            "showAs": "busy",
            "type": entity.internal.get("type", "singleInstance"),
            "webLink": f"https://outlook.office365.com/owa/?itemid={entity.id}",
            "onlineMeetingUrl": None,
            "isOnlineMeeting": False,
            "onlineMeetingProvider": "unknown",
            "onlineMeeting": None,
            "allowNewTimeProposals": True,
            "hideAttendees": False,
            "responseStatus": {"response": "organizer", "time": "0001-01-01T00:00:00Z"},
            "body": {"contentType": "html", "content": ""},
            "start": None,
            "end": None,
            "location": {"displayName": "", "locationType": "default"},
            "locations": [],
            "recurrence": None,
            "attendees": [],
            "organizer": owner,
        }
        if "originalStart" in entity.internal:
            out["originalStart"] = entity.internal["originalStart"]
        if props.get("isOnlineMeeting"):
            provider = props.get("onlineMeetingProvider") or "unknown"
            if provider == "unknown":
                provider = DEFAULT_MEETING_PROVIDER
            props["onlineMeetingProvider"] = provider
            out["onlineMeeting"] = {"joinUrl": join_url(provider, entity)}
    elif kind == "todoTask":
        out = {
            **base,
            "importance": "normal",
            "isReminderOn": False,
            "status": "notStarted",
            "title": "",
            "createdDateTime": entity.created,
            "lastModifiedDateTime": entity.modified,
            "hasAttachments": False,
            "categories": [],
            "id": entity.id,
            "body": {"content": "", "contentType": "text"},
        }
        props.pop("linkedResources", None)
    elif kind == "todoTaskList":
        out = {
            **base,
            "displayName": "",
            "isOwner": True,
            "isShared": False,
            "wellknownListName": entity.internal.get("wellknownListName", "none"),
        }
    elif kind == "mailFolder":
        children = mailbox.children("mailFolder", entity.id)
        messages = mailbox.children("message", entity.id)
        out = {
            "id": entity.id,
            "displayName": "",
            "parentFolderId": entity.parent or f"{mailbox.id}-msgfolderroot",
            "childFolderCount": len(children),
            "unreadItemCount": sum(1 for m in messages if not m.props.get("isRead", False)),
            "totalItemCount": len(messages),
            "isHidden": False,
        }
        if "wellKnownName" in entity.internal:
            out["wellKnownName"] = entity.internal["wellKnownName"]
    elif kind == "contactFolder":
        out = {
            "id": entity.id,
            "displayName": "",
            "parentFolderId": entity.parent or f"{mailbox.id}-contactsroot",
        }
    elif kind == "linkedResource":
        out = {"id": entity.id}
    elif kind == "checklistItem":
        out = {"displayName": "", "createdDateTime": entity.created, "isChecked": False}
        out["id"] = entity.id
    else:
        out = dict(base)
    out.update(props)
    return out


def extended(entity: Entity) -> list[dict[str, str]]:
    """``singleValueExtendedProperties`` of ``entity`` as Graph lists them."""
    return [{"id": key, "value": value} for key, value in entity.ext.items()]
