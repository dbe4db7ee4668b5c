"""Graph delta streams as ChangeSources: messages per mail folder, contacts, a calendarView
window, To Do tasks per list. Each follows ``@odata.nextLink`` until ``@odata.deltaLink``,
validates every page at the edge and normalises items with ``graph_to_projection``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from connectors.base import ChangeBatch
from connectors.errors import InvalidResponseError, NotFoundError
from connectors.graph.mapping import (
    DEFAULT_TOKEN_FORMAT,
    correlation_id_of,
    expand_for,
    graph_to_projection,
    outlook_attributes,
)
from connectors.graph.transport import GraphTransport
from schemas.fields import MappingError
from schemas.models import ItemChange, Origin
from schemas.token import TrackingTokenFormat
from schemas.types import Kind

#: Every id read or written is the item's immutable id: a REST id changes when the item moves
#: (and differs from the immutable id even before), so the writer asks for them too. Event
#: times are asked for in UTC: an event kept in any Windows or IANA zone reads the same way,
#: with no zone table to keep up to date (Graph converts; without the header it also answers in
#: UTC, but saying so keeps a service default from deciding it).
PREFER_HEADERS = 'IdType="ImmutableId", outlook.timezone="UTC"'


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True)
class DeltaStream:
    """One delta stream of one mailbox: what it reads and where its first request goes."""

    mailbox_id: str
    kind: Kind
    name: str
    path: str
    params: Mapping[str, str] = field(default_factory=dict)
    expand: bool = True
    expand_value: str | None = None
    """``$expand`` to send instead of ``expand_for(kind)`` (a service lacking some navigation)."""
    missing_ok: bool = False
    """A 404 means the stream's container is gone (a tracked folder deleted in Outlook), not
    the mailbox: the reader skips the stream instead of failing the mailbox."""


#: What e-mail tracking reads of a message; ``internetMessageHeaders`` (In-Reply-To) comes only
#: when selected.
MESSAGE_SELECT = ",".join(
    (
        "id",
        "changeKey",
        "subject",
        "body",
        "from",
        "toRecipients",
        "ccRecipients",
        "bccRecipients",
        "sentDateTime",
        "internetMessageId",
        "internetMessageHeaders",
        "importance",
        "conversationId",
        "parentFolderId",
        "categories",
    )
)


def messages_stream(mailbox_id: str, folder: str, *, missing_ok: bool = False) -> DeltaStream:
    """Messages of one mail folder (a folder id or a well-known name like ``inbox``)."""
    return DeltaStream(
        mailbox_id,
        "email",
        f"messages:{folder}",
        f"users/{mailbox_id}/mailFolders/{folder}/messages/delta",
        {"$select": MESSAGE_SELECT},
        missing_ok=missing_ok,
    )


def folders_read(folders: tuple[str, ...], tracked: tuple[str, ...]) -> tuple[str, ...]:
    """The mail folders a mailbox's streams read: ``folders``, then the tracked ones not
    among them, each once."""
    return tuple(dict.fromkeys((*folders, *tracked)))


def message_folders(sources: Iterable[GraphDeltaSource]) -> tuple[str, ...]:
    """The mail folders ``sources`` read, in order."""
    return tuple(s.stream.name.partition(":")[2] for s in sources if s.stream.kind == "email")


def contacts_stream(mailbox_id: str, folder: str | None = None) -> DeltaStream:
    """Contacts of the default contacts folder, or of ``folder``."""
    path = (
        f"users/{mailbox_id}/contacts/delta"
        if folder is None
        else f"users/{mailbox_id}/contactFolders/{folder}/contacts/delta"
    )
    return DeltaStream(mailbox_id, "contact", f"contacts:{folder or 'default'}", path)


def calendar_stream(mailbox_id: str, start: str, end: str) -> DeltaStream:
    """Events (occurrences expanded) of the calendarView window [start, end)."""
    return DeltaStream(
        mailbox_id,
        "appointment",
        "calendarView",
        f"users/{mailbox_id}/calendarView/delta",
        {"startDateTime": start, "endDateTime": end},
    )


def tasks_stream(mailbox_id: str, list_id: str) -> DeltaStream:
    """Tasks of one To Do list (To Do has no app-only webhooks: polled)."""
    return DeltaStream(
        mailbox_id,
        "task",
        f"todo:{list_id}",
        f"users/{mailbox_id}/todo/lists/{list_id}/tasks/delta",
    )


async def todo_lists(transport: GraphTransport, mailbox_id: str) -> list[str]:
    """The ids of the mailbox's To Do lists (each one a polled delta stream)."""
    resp = await transport.request(mailbox_id, "GET", f"users/{mailbox_id}/todo/lists")
    items = (resp.body or {}).get("value")
    if not isinstance(items, list):
        raise InvalidResponseError("GET todo/lists: no value array")
    ids = [i.get("id") for i in items if isinstance(i, dict)]
    if not all(isinstance(i, str) and i for i in ids):
        raise InvalidResponseError("GET todo/lists: a list has no id")
    return [str(i) for i in ids]


async def mailbox_streams(
    transport: GraphTransport,
    mailbox_id: str,
    *,
    folders: tuple[str, ...] = ("inbox", "sentitems"),
    tracked_folders: tuple[str, ...] = (),
    window: tuple[datetime, datetime] | None = None,
    todo: bool = True,
) -> list[DeltaStream]:
    """The delta streams of one mailbox: synced mail folders, then its tracked folders (one
    that is gone is skipped), contacts, a calendarView window (default: 30 days back, 365
    ahead), and one per To Do list."""
    start, end = window or (
        datetime.now(UTC) - timedelta(days=30),
        datetime.now(UTC) + timedelta(days=365),
    )
    fmt = "%Y-%m-%dT%H:%M:%SZ"
    streams = [
        messages_stream(mailbox_id, f, missing_ok=f not in folders)
        for f in folders_read(folders, tracked_folders)
    ]
    streams.append(contacts_stream(mailbox_id))
    streams.append(calendar_stream(mailbox_id, start.strftime(fmt), end.strftime(fmt)))
    if todo:
        streams.extend(
            tasks_stream(mailbox_id, lst) for lst in await todo_lists(transport, mailbox_id)
        )
    return streams


def _version(item: Mapping[str, Any]) -> str:
    key = item.get("changeKey")
    if isinstance(key, str) and key:
        return key
    etag = item.get("@odata.etag")
    if isinstance(etag, str) and etag:
        return etag
    raise InvalidResponseError(f"item {str(item.get('id'))[:80]!r} has neither changeKey nor etag")


class GraphDeltaSource:
    """ChangeSource over one DeltaStream. Its cursor is the deltaLink; nothing else is kept."""

    def __init__(
        self,
        transport: GraphTransport,
        stream: DeltaStream,
        *,
        org_id: str,
        groups: frozenset[str] = frozenset(),
        owner_address: str | None = None,
        sent_folder_ids: frozenset[str] = frozenset(),
        token_format: TrackingTokenFormat = DEFAULT_TOKEN_FORMAT,
        page_size: int = 50,
    ) -> None:
        self._t = transport
        self.stream = stream
        self._org = org_id
        self._groups = groups
        self._owner = owner_address
        self._sent = sent_folder_ids
        self.token_format = token_format
        self._page = page_size
        self._origin = urlsplit(transport.base_url)._replace(path="", query="", fragment="")

    @property
    def stream_id(self) -> str:
        return f"graph:{self.stream.mailbox_id}:{self.stream.name}"

    def _check_link(self, link: Any, name: str) -> str:
        if not isinstance(link, str) or not link:
            raise InvalidResponseError(f"{self.stream_id}: {name} is not a string")
        parts = urlsplit(link)
        if (parts.scheme, parts.netloc) != (self._origin.scheme, self._origin.netloc):
            raise InvalidResponseError(f"{self.stream_id}: {name} points to another host")
        return link

    def _headers(self) -> dict[str, str]:
        return {"Prefer": f"odata.maxpagesize={self._page}, {PREFER_HEADERS}"}

    async def read(self, cursor: str | None) -> AsyncIterator[ChangeBatch]:
        """Yield one batch per page from ``cursor`` (a deltaLink) or from a full sync."""
        full = cursor is None
        params: dict[str, str] | None = None
        if cursor is None:
            url = self._t.url(self.stream.path)
            params = dict(self.stream.params)
            if self.stream.expand:
                params["$expand"] = self.stream.expand_value or expand_for(self.stream.kind)
        else:
            url = self._check_link(cursor, "cursor")
        while True:
            resp = await self._t.request(
                self.stream.mailbox_id, "GET", url, headers=self._headers(), params=params
            )
            params = None
            body = resp.body
            if body is None or not isinstance(body.get("value"), list):
                raise InvalidResponseError(f"{self.stream_id}: delta page without a value array")
            changes = tuple(self._change(item, full) for item in body["value"])
            if self.stream.kind == "appointment":
                changes = tuple([await self._still_there(c) for c in changes])
            next_link, delta_link = body.get("@odata.nextLink"), body.get("@odata.deltaLink")
            if (next_link is None) == (delta_link is None):
                raise InvalidResponseError(
                    f"{self.stream_id}: a delta page needs exactly one of nextLink / deltaLink"
                )
            if next_link is not None:
                url = self._check_link(next_link, "@odata.nextLink")
                yield ChangeBatch(changes, None, full_sync=full)
                continue
            yield ChangeBatch(
                changes, self._check_link(delta_link, "@odata.deltaLink"), full_sync=full
            )
            return

    async def _still_there(self, change: ItemChange) -> ItemChange:
        """A calendarView delta reports an event moved outside its window as ``@removed``:
        read the event, and only if it is gone is it a delete; otherwise an upsert."""
        if change.op != "delete":
            return change
        path = f"users/{self.stream.mailbox_id}/events/{change.item_id}"
        params = {"$expand": self.stream.expand_value or expand_for("appointment")}
        try:
            resp = await self._t.request(
                self.stream.mailbox_id, "GET", path, headers=self._headers(), params=params
            )
        except NotFoundError:
            return change
        if not isinstance(resp.body, dict) or resp.body.get("id") != change.item_id:
            raise InvalidResponseError(f"{self.stream_id}: GET event returned another item")
        return self._change(resp.body, change.origin == "full_sync")

    def _change(self, item: Any, full: bool) -> ItemChange:
        if not isinstance(item, dict):
            raise InvalidResponseError(f"{self.stream_id}: a delta item is not an object")
        item_id = item.get("id")
        if not isinstance(item_id, str) or not item_id or len(item_id) > 512:
            raise InvalidResponseError(f"{self.stream_id}: a delta item has no valid id")
        kind = self.stream.kind
        origin: Origin = "full_sync" if full else "delta"
        if "@removed" in item:
            return ItemChange(
                change_id=f"outlook:{item_id}:deleted",
                side="outlook",
                org_id=self._org,
                kind=kind,
                op="delete",
                item_id=item_id,
                version="",
                observed_at=_now(),
                mailbox_id=self.stream.mailbox_id,
                origin=origin,
            )
        version = _version(item)
        try:
            projection = graph_to_projection(
                kind,
                item,
                groups=self._groups,
                mailbox=self._owner,
                sent_folder_ids=self._sent,
                token_format=self.token_format,
            )
            attributes = outlook_attributes(kind, item, token_format=self.token_format)
            correlation = correlation_id_of(kind, item)
        except MappingError as exc:
            raise InvalidResponseError(f"{self.stream_id}: item {item_id[:60]}: {exc}") from None
        return ItemChange(
            change_id=f"outlook:{item_id}:{version}",
            side="outlook",
            org_id=self._org,
            kind=kind,
            op="upsert",
            item_id=item_id,
            version=version,
            observed_at=_now(),
            mailbox_id=self.stream.mailbox_id,
            correlation_id=correlation,
            projection=projection,
            outlook=attributes,
            origin=origin,
        )
