"""The Outlook writer: applies WriteCommands to one mailbox's contacts, events, To Do tasks and
mail through Graph ``$batch`` (≤ 20 requests per call, per mailbox).

Creates are idempotent: every created item carries the command's correlation id (a named
extended property; ``linkedResources`` on tasks), and no create is written while an item with
its stamp may exist. A backlog (a first sync) learns what exists from one listing of the
collection's stamped items (:mod:`connectors.graph.inventory`) and then creates without a
lookup per item; a lone create with no listing, or one whose stamp a listing holds, is looked
up first. Updates and deletes send ``If-Match``; a 412 becomes a ``conflict`` outcome.
Requests the service refused for load (429/503/504) go round again, a create after its lookup
where its outcome is unknown, so a retry never duplicates. ``send`` is looked up in Sent Items
by its stamp, so a retried sendMail never sends twice. A task's open extension
(percentcomplete, regarding) goes inline on create and, on update, through ``…/extensions``
after the If-Match-checked PATCH (the outcome's version is read afterwards).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import quote

from connectors.base import outcome_for
from connectors.errors import ConnectorError, InvalidResponseError
from connectors.graph.inventory import Found, StampInventory
from connectors.graph.mapping import (
    CORRELATION_PROPERTY_ID,
    correlation_id_of,
    correlation_stamp,
    projection_to_graph,
)
from connectors.graph.reader import PREFER_HEADERS
from connectors.graph.transport import GraphTransport
from connectors.http import parse_retry_after
from schemas.fields import MappingError
from schemas.models import OutcomeStatus, WriteCommand, WriteOutcome
from schemas.types import Kind

log = logging.getLogger(__name__)

MAX_BATCH = 20
#: Creates of one collection in one round from which the writer lists the collection's stamped
#: items once instead of looking each create up (one GET per item).
LIST_AT = 2
#: Items per page of such a listing.
LIST_PAGE = 500
#: Statuses that say the service is busy or broken for now: the request goes round again
#: (a create after its lookup), never parks the item.
_RETRY_STATUS = frozenset({429, 500, 502, 503, 504})


def _again(status: int) -> bool:
    """Whether a sub-request's status is transient (throttled, a 5xx, a failed dependency)."""
    return status in _RETRY_STATUS or status >= 500 or status == 424


_COLLECTION: dict[Kind, str] = {"contact": "contacts", "appointment": "events", "email": "messages"}


def if_match_value(version: str) -> str:
    """An If-Match header value for a changeKey or an etag."""
    return version if version.startswith(('W/"', '"')) else f'W/"{version}"'


def _version(body: dict[str, Any] | None) -> str | None:
    if not body:
        return None
    key = body.get("changeKey")
    if isinstance(key, str) and key:
        return key
    etag = body.get("@odata.etag")
    return etag if isinstance(etag, str) and etag else None


def _odata_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


_STAMP_EXPAND = (
    f"singleValueExtendedProperties($filter=id eq {_odata_literal(CORRELATION_PROPERTY_ID)})"
)


@dataclass(slots=True)
class _Sub:
    """One sub-request of a ``$batch`` and what came back."""

    method: str
    url: str
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    status: int = 0
    response: dict[str, Any] | None = None
    retry_after: float | None = None
    extension: dict[str, Any] | None = None


class GraphWriter:
    """CommandSink for one Graph tenant; commands carry their mailbox."""

    def __init__(
        self,
        transport: GraphTransport,
        *,
        max_rounds: int = 6,
        sleep_cap_s: float = 30.0,
        inventory: StampInventory | None = None,
    ) -> None:
        self._t = transport
        self._max_rounds = max_rounds
        self._sleep_cap = sleep_cap_s
        self._task_lists: dict[str, str] = {}
        self._inventory = inventory or StampInventory()

    def forget(self, mailbox_id: str) -> None:
        """Drop what is cached of ``mailbox_id`` (its listings, its To Do list id): another
        worker may write it next (:class:`connectors.base.MailboxMemory`)."""
        self._inventory.forget(mailbox_id)
        self._task_lists.pop(mailbox_id, None)

    # ---------------------------------------------------------------- batch plumbing

    async def _batch(self, mailbox: str, subs: Sequence[_Sub]) -> None:
        """Send ``subs`` in ``$batch`` calls of at most 20; fill each one's status and body."""
        for start in range(0, len(subs), MAX_BATCH):
            chunk = subs[start : start + MAX_BATCH]
            requests = []
            for i, sub in enumerate(chunk):
                req: dict[str, Any] = {"id": str(i + 1), "method": sub.method, "url": sub.url}
                headers = {"Prefer": PREFER_HEADERS, **sub.headers}
                if sub.body is not None:
                    headers["Content-Type"] = "application/json"
                    req["body"] = sub.body
                if headers:
                    req["headers"] = headers
                requests.append(req)
            try:
                resp = await self._t.request(
                    mailbox, "POST", "$batch", json={"requests": requests}, safe=False
                )
            except BaseException:
                # what the batch did is unknown: its creates may exist, so listings are stale
                self._inventory.forget(mailbox)
                raise
            self._read_batch(resp.body, chunk)

    def _read_batch(self, body: dict[str, Any] | None, chunk: Sequence[_Sub]) -> None:
        responses = (body or {}).get("responses")
        if not isinstance(responses, list):
            raise InvalidResponseError("POST $batch: response has no responses array")
        seen = set()
        for item in responses:
            if not isinstance(item, dict):
                raise InvalidResponseError("POST $batch: a response is not an object")
            rid, status = item.get("id"), item.get("status")
            if not isinstance(rid, str) or not rid.isdigit() or not isinstance(status, int):
                raise InvalidResponseError("POST $batch: a response lacks id or status")
            index = int(rid) - 1
            if not 0 <= index < len(chunk) or index in seen:
                raise InvalidResponseError(f"POST $batch: unexpected response id {rid[:20]!r}")
            seen.add(index)
            sub = chunk[index]
            sub.status = status
            rbody = item.get("body")
            sub.response = rbody if isinstance(rbody, dict) else None
            headers = item.get("headers")
            if isinstance(headers, dict):
                lowered = {str(k).lower(): str(v) for k, v in headers.items()}
                sub.retry_after = parse_retry_after(lowered.get("retry-after"))
        if len(seen) != len(chunk):
            raise InvalidResponseError("POST $batch: some requests got no response")

    # ---------------------------------------------------------------- paths

    async def _task_list(self, mailbox: str) -> str:
        cached = self._task_lists.get(mailbox)
        if cached is not None:
            return cached
        resp = await self._t.request(mailbox, "GET", f"users/{mailbox}/todo/lists")
        lists = (resp.body or {}).get("value")
        if not isinstance(lists, list):
            raise InvalidResponseError("GET todo/lists: no value array")
        for item in lists:
            if isinstance(item, dict) and item.get("wellknownListName") == "defaultList":
                list_id = item.get("id")
                if isinstance(list_id, str) and list_id:
                    self._task_lists[mailbox] = list_id
                    return list_id
        raise InvalidResponseError("GET todo/lists: the mailbox has no default To Do list")

    async def _collection(self, cmd: WriteCommand) -> str:
        if cmd.kind == "task":
            return (
                f"/users/{cmd.mailbox_id}/todo/lists/{await self._task_list(cmd.mailbox_id)}/tasks"
            )
        return f"/users/{cmd.mailbox_id}/{_COLLECTION[cmd.kind]}"

    async def _list_stamped(self, mailbox: str, collection: str, kind: Kind) -> dict[str, Found]:
        """Correlation id -> (item id, version) of every stamped item of ``collection``: one
        paged GET returning only stamped items (tasks: every task, ``linkedResources``
        expanded, as To Do cannot filter on them)."""
        if kind == "task":
            query = "$expand=linkedResources"
        else:
            stamped = (
                "singleValueExtendedProperties/Any(ep: ep/id eq "
                f"{_odata_literal(CORRELATION_PROPERTY_ID)} and ep/value ne '')"
            )
            query = (
                f"$select=id,changeKey&$filter={quote(stamped)}"
                f"&$expand={quote(_STAMP_EXPAND)}&$top={LIST_PAGE}"
            )
        out: dict[str, Found] = {}
        url: str | None = f"{collection.lstrip('/')}?{query}"
        while url is not None:
            resp = await self._t.request(mailbox, "GET", url, headers={"Prefer": PREFER_HEADERS})
            body = resp.body or {}
            items = body.get("value")
            if not isinstance(items, list):
                raise InvalidResponseError(f"GET {kind} listing: no value array")
            for item in items:
                if not isinstance(item, dict) or not isinstance(item.get("id"), str):
                    continue
                try:
                    cid = correlation_id_of(kind, item)
                except MappingError:
                    continue
                if cid is not None:
                    out[cid] = (item["id"], _version(item))
            link = body.get("@odata.nextLink")
            if link is not None and not (
                isinstance(link, str) and link.startswith(self._t.base_url + "/")
            ):
                raise InvalidResponseError(f"GET {kind} listing: bad @odata.nextLink")
            url = link
        return out

    async def _lookup_url(self, cmd: WriteCommand) -> str:
        folder = (
            f"/users/{cmd.mailbox_id}/mailFolders/sentitems/messages"
            if cmd.action == "send"
            else await self._collection(cmd)
        )
        filt = (
            "singleValueExtendedProperties/Any(ep: ep/id eq "
            f"{_odata_literal(CORRELATION_PROPERTY_ID)} and ep/value eq "
            f"{_odata_literal(cmd.correlation_id)})"
        )
        return f"{folder}?$filter={quote(filt)}&$expand={quote(_STAMP_EXPAND)}"

    # ---------------------------------------------------------------- apply

    async def apply(self, commands: Sequence[WriteCommand]) -> list[WriteOutcome]:
        """Apply commands (grouped per mailbox, in order); one outcome per command, in order."""
        outcomes: dict[int, WriteOutcome] = {}
        by_mailbox: dict[str, list[int]] = {}
        for i, cmd in enumerate(commands):
            by_mailbox.setdefault(cmd.mailbox_id, []).append(i)
        for mailbox, indexes in by_mailbox.items():
            await self._apply_mailbox(mailbox, [(i, commands[i]) for i in indexes], outcomes)
        return [outcomes[i] for i in range(len(commands))]

    async def _apply_mailbox(
        self,
        mailbox: str,
        todo: list[tuple[int, WriteCommand]],
        outcomes: dict[int, WriteOutcome],
    ) -> None:
        created: dict[tuple[Kind, str], WriteOutcome] = {}
        for round_no in range(1, self._max_rounds + 1):
            if not todo:
                return
            retry, wait = await self._round(mailbox, todo, outcomes, created)
            todo = retry
            if todo and round_no < self._max_rounds:
                await asyncio.sleep(min(wait, self._sleep_cap))
        for i, cmd in todo:
            outcomes[i] = self._outcome(
                cmd, "failed", code="throttled", message="still throttled", retriable=True
            )

    async def _check_creates(
        self,
        mailbox: str,
        todo: list[tuple[int, WriteCommand]],
        created: dict[tuple[Kind, str], WriteOutcome],
    ) -> tuple[dict[int, _Sub], dict[int, Found]]:
        """Lookups still to send (index -> GET) and creates found in a listing taken in this
        round (index -> item). A create in neither is absent from the mailbox: written as is.

        A collection with ``LIST_AT`` creates in the round (a backlog, a first sync) and no
        listing is listed once; a single create with no listing is looked up; a create whose
        id an older listing holds is looked up again (its item may have been deleted since).
        """
        started = self._inventory.now()
        lookups: dict[int, _Sub] = {}
        stamped: dict[int, Found] = {}
        by_collection: dict[str, list[tuple[int, WriteCommand]]] = {}
        for i, cmd in todo:
            if cmd.action not in ("create", "send") or (cmd.kind, cmd.correlation_id) in created:
                continue
            if cmd.action == "send":  # Sent Items is not listed: sends are few
                lookups[i] = _Sub("GET", await self._lookup_url(cmd))
                continue
            by_collection.setdefault(await self._collection(cmd), []).append((i, cmd))
        for collection, creates in by_collection.items():
            kind = creates[0][1].kind
            listing = self._inventory.get(mailbox, collection)
            if kind == "task":  # linkedResources cannot be filtered on: no single lookup
                held = listing is not None and any(
                    listing.holds(c.correlation_id) for _, c in creates
                )
                if listing is None or held:
                    listing = None
            if listing is None and (kind == "task" or len(creates) >= LIST_AT):
                try:
                    items = await self._list_stamped(mailbox, collection, kind)
                except ConnectorError as exc:
                    if not exc.retriable or kind == "task":
                        raise
                    # throttled or down: look each create up in the round's $batch instead
                    log.debug("%s: listing %s failed, looking up: %s", mailbox, collection, exc)
                else:
                    listing = self._inventory.put(mailbox, collection, items)
            for i, cmd in creates:
                if listing is None:
                    lookups[i] = _Sub("GET", await self._lookup_url(cmd))
                elif not listing.holds(cmd.correlation_id):
                    continue
                elif listing.taken >= started:
                    stamped[i] = listing.items[cmd.correlation_id]
                else:
                    lookups[i] = _Sub("GET", await self._lookup_url(cmd))
        return lookups, stamped

    async def _round(
        self,
        mailbox: str,
        todo: list[tuple[int, WriteCommand]],
        outcomes: dict[int, WriteOutcome],
        created: dict[tuple[Kind, str], WriteOutcome],
    ) -> tuple[list[tuple[int, WriteCommand]], float]:
        retry: list[tuple[int, WriteCommand]] = []
        wait = 0.5
        # 1. which creates/sends exist already: from the collection's listing, else looked up
        lookups, stamped = await self._check_creates(mailbox, todo, created)
        await self._batch(mailbox, list(lookups.values()))
        # 2. build the writes
        writes: dict[int, _Sub] = {}
        leaders: dict[tuple[Kind, str], int] = {}
        followers: dict[int, int] = {}
        for i, cmd in todo:
            key = (cmd.kind, cmd.correlation_id)
            hit = stamped.get(i)
            if hit is not None and cmd.action == "create" and key not in created:
                item_id, version = hit
                outcomes[i] = created[key] = self._outcome(
                    cmd, "applied", target_id=item_id, version=version, written=cmd.fields
                )
                continue
            sub = lookups.get(i)
            if sub is not None:
                if _again(sub.status):
                    retry.append((i, cmd))
                    wait = max(wait, sub.retry_after or 0.5)
                    continue
                found = self._found(cmd, sub)
                if found is not None:
                    outcomes[i] = found
                    if found.status == "applied":
                        created[key] = found
                        await self._remember(mailbox, cmd, found)
                    continue
            if cmd.action in ("create", "send") and key in created:
                outcomes[i] = self._replay(cmd, created[key])
                continue
            if cmd.action in ("create", "send") and key in leaders:
                followers[i] = leaders[key]  # the same create twice: write it once
                continue
            try:
                write = await self._write(cmd)
            except (MappingError, ValueError) as exc:
                outcomes[i] = self._outcome(cmd, "failed", code="invalid_fields", message=str(exc))
                continue
            if write is None:
                outcomes[i] = self._outcome(cmd, "skipped", message="not an Outlook action")
                continue
            writes[i] = write
            if cmd.action in ("create", "send"):
                leaders[key] = i
        # keep per-item order: a request touching an item already in the round waits for it
        await self._batch_ordered(mailbox, writes)
        await self._write_extensions(mailbox, list(writes.values()))
        # 3. read the results
        for i, cmd in todo:
            sub = writes.get(i)
            if sub is None:
                continue
            if _again(sub.status):
                retry.append((i, cmd))
                wait = max(wait, sub.retry_after or 0.5)
                if cmd.action in ("create", "send") and sub.status >= 500:
                    self._inventory.forget(mailbox)  # a 5xx create may have happened
                continue
            outcome = self._result(cmd, sub)
            outcomes[i] = outcome
            if cmd.action in ("create", "send") and outcome.status == "applied":
                created[(cmd.kind, cmd.correlation_id)] = outcome
            await self._remember(mailbox, cmd, outcome)
        retrying = {i for i, _ in retry}
        for i, cmd in todo:
            leader = followers.get(i)
            if leader is None:
                continue
            if leader in retrying:
                retry.append((i, cmd))
            elif outcomes[leader].status == "applied":
                outcomes[i] = self._replay(cmd, outcomes[leader])
            else:
                outcomes[i] = replace(outcomes[leader], command_id=cmd.command_id)
        retry.sort(key=lambda pair: pair[0])
        return retry, wait

    async def _remember(self, mailbox: str, cmd: WriteCommand, outcome: WriteOutcome) -> None:
        """Keep the listings current with what this writer created and deleted."""
        if outcome.status != "applied" or cmd.action not in ("create", "delete"):
            return
        collection = await self._collection(cmd)
        if cmd.action == "create" and outcome.target_id:
            found = (outcome.target_id, outcome.version)
            self._inventory.created(mailbox, collection, cmd.correlation_id, found)
        elif cmd.action == "delete" and cmd.target_id:
            self._inventory.deleted(mailbox, collection, cmd.target_id)

    async def _batch_ordered(self, mailbox: str, writes: dict[int, _Sub]) -> None:
        pending = list(writes.values())
        while pending:
            wave: list[_Sub] = []
            later: list[_Sub] = []
            targets: set[str] = set()
            for sub in pending:
                target = sub.url.split("?")[0]
                if target in targets and sub.method != "POST":
                    later.append(sub)
                    continue
                targets.add(target)
                wave.append(sub)
            await self._batch(mailbox, wave)
            pending = later

    async def _write_extensions(self, mailbox: str, subs: Sequence[_Sub]) -> None:
        """After a task PATCH went through, upsert its open extension and re-read the task.

        Graph takes a task's open extension only through ``…/extensions``; the extension is
        written after the If-Match-checked PATCH, retried here on 429/503/504 (never by
        re-sending the PATCH, whose If-Match would now be stale).
        """
        pending = [s for s in subs if s.extension is not None and 200 <= s.status < 300]
        for round_no in range(1, self._max_rounds + 1):
            if not pending:
                return
            item_urls = [s.url.split("?")[0] for s in pending]
            patches = [
                _Sub("PATCH", f"{u}/extensions/{quote(_extension_name(s))}", s.extension)
                for u, s in zip(item_urls, pending, strict=True)
            ]
            await self._batch(mailbox, patches)
            posts = {
                i: _Sub("POST", f"{item_urls[i]}/extensions", pending[i].extension)
                for i, p in enumerate(patches)
                if p.status == 404
            }
            await self._batch(mailbox, list(posts.values()))
            reads = [_Sub("GET", u) for u in item_urls]
            await self._batch(mailbox, reads)
            retry: list[_Sub] = []
            wait = 0.5
            for i, sub in enumerate(pending):
                step = posts.get(i, patches[i])
                if _again(step.status) or _again(reads[i].status):
                    retry.append(sub)
                    wait = max(wait, step.retry_after or reads[i].retry_after or 0.5)
                elif not 200 <= step.status < 300:
                    sub.status, sub.response = step.status, step.response
                elif 200 <= reads[i].status < 300 and reads[i].response:
                    sub.response = reads[i].response
            pending = retry
            if pending and round_no < self._max_rounds:
                await asyncio.sleep(min(wait, self._sleep_cap))
        for sub in pending:
            sub.status = 500  # a failed, retriable outcome; not re-sent with a stale If-Match
            sub.response = {"error": {"code": "throttled", "message": "extension not written"}}

    def _found(self, cmd: WriteCommand, sub: _Sub) -> WriteOutcome | None:
        """The item a create's lookup found (applied), a permanent failure of the lookup (its
        outcome, like the write's would be), or None: nothing found, write it."""
        if sub.status == 404:
            return None
        if not 200 <= sub.status < 300:
            failed = self._result(cmd, sub)
            return replace(failed, error_message=f"correlation lookup: {failed.error_message}")
        items = (sub.response or {}).get("value")
        if not isinstance(items, list):
            raise InvalidResponseError("correlation lookup: no value array")
        for item in items:
            if not isinstance(item, dict):
                continue
            try:
                cid = correlation_id_of(cmd.kind, item)
            except MappingError:
                continue
            if cid == cmd.correlation_id and isinstance(item.get("id"), str):
                return self._outcome(
                    cmd, "applied", target_id=item["id"], version=_version(item), written=cmd.fields
                )
        return None

    async def _write(self, cmd: WriteCommand) -> _Sub | None:
        if cmd.action == "create":
            body = projection_to_graph(cmd.kind, cmd.fields)
            stamp = correlation_stamp(cmd.kind, cmd.correlation_id)
            for key, value in stamp.items():
                body[key] = [*body.get(key, []), *value]
            return _Sub("POST", await self._collection(cmd), body)
        if cmd.action == "send":
            message = projection_to_graph("email", cmd.fields)
            for key, value in correlation_stamp("email", cmd.correlation_id).items():
                message[key] = [*message.get(key, []), *value]
            return _Sub(
                "POST",
                f"/users/{cmd.mailbox_id}/sendMail",
                {"message": message, "saveToSentItems": True},
            )
        if cmd.action == "mark_sent":
            return None
        if not cmd.target_id:
            raise ValueError(f"{cmd.action} needs a target_id")
        url = f"{await self._collection(cmd)}/{cmd.target_id}"
        headers = {"If-Match": if_match_value(cmd.if_match)} if cmd.if_match else {}
        if cmd.action == "delete":
            return _Sub("DELETE", url, headers=headers)
        if cmd.action == "set_categories":
            cats = cmd.fields.get("categories")
            if not isinstance(cats, list) or not all(isinstance(c, str) for c in cats):
                raise ValueError("set_categories needs fields.categories, a list of strings")
            return _Sub("PATCH", url, {"categories": cats}, headers)
        body = projection_to_graph(cmd.kind, cmd.fields)
        extensions = body.pop("extensions", None) if cmd.kind == "task" else None
        sub = _Sub("PATCH", url, body, headers)
        if extensions:
            sub.extension = extensions[0]
        return sub

    def _result(self, cmd: WriteCommand, sub: _Sub) -> WriteOutcome:
        status = sub.status
        if 200 <= status < 300:
            body = sub.response
            target = cmd.target_id
            if body and isinstance(body.get("id"), str):
                target = body["id"]
            if cmd.action == "delete":
                return self._outcome(cmd, "applied", target_id=cmd.target_id)
            return self._outcome(
                cmd, "applied", target_id=target, version=_version(body), written=cmd.fields
            )
        code, message = _error(sub.response)
        if status == 412:
            return self._outcome(cmd, "conflict", code=code, message=message)
        if status == 404:
            if cmd.action == "delete":
                return self._outcome(cmd, "not_found", target_id=cmd.target_id)
            return self._outcome(cmd, "not_found", code=code, message=message)
        if status == 403:
            return self._outcome(cmd, "forbidden", code=code, message=message)
        return self._outcome(
            cmd, "failed", code=code or f"http_{status}", message=message, retriable=status >= 500
        )

    def _replay(self, cmd: WriteCommand, first: WriteOutcome) -> WriteOutcome:
        return self._outcome(
            cmd, "applied", target_id=first.target_id, version=first.version, written=cmd.fields
        )

    def _outcome(
        self,
        cmd: WriteCommand,
        status: OutcomeStatus,
        *,
        target_id: str | None = None,
        version: str | None = None,
        written: dict[str, Any] | None = None,
        code: str | None = None,
        message: str | None = None,
        retriable: bool = False,
    ) -> WriteOutcome:
        return outcome_for(
            cmd,
            status,
            target_id=target_id,
            version=version,
            written=written,
            error_code=code,
            error_message=message,
            retriable=retriable,
        )


def _extension_name(sub: _Sub) -> str:
    name = (sub.extension or {}).get("extensionName")
    if not isinstance(name, str) or not name:
        raise ValueError("an open extension needs an extensionName")
    return name


def _error(body: dict[str, Any] | None) -> tuple[str | None, str | None]:
    err = (body or {}).get("error")
    if not isinstance(err, dict):
        return None, None
    code, message = err.get("code"), err.get("message")
    return (
        code if isinstance(code, str) else None,
        message if isinstance(message, str) else None,
    )
