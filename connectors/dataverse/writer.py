"""The Dataverse writer (a CommandSink): write commands → ``$batch`` changesets.

Every operation is idempotent, so a whole ``$batch`` may be sent again after a timeout:
creates are upserts (PATCH) to a deterministic key (uuid5 over org, table and correlation id),
updates carry ``If-Match`` (the command's version, or ``*`` so a missing row is not re-created),
deletes are by key. Commands of one user (``run_as``, impersonated with the caller header) go in
one changeset of at most 1,000 operations; changesets are atomic, so when one operation fails
its outcome is recorded and the rest are sent again without it. Outcomes carry the row id and
the versionnumber read back with ``Prefer: return=representation``.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from connectors.base import outcome_for
from connectors.dataverse.batch import (
    MAX_BATCH_OPERATIONS,
    BatchOperation,
    BatchResponse,
    build_batch,
    parse_batch_response,
)
from connectors.dataverse.client import DataverseClient
from connectors.dataverse.errors import error_for
from connectors.dataverse.ids import crm_row_id
from connectors.dataverse.mapping import (
    BIND,
    EMAIL_STATE,
    REGARDING_TARGETS,
    PartyResolver,
    entity_set,
    kind_of,
    primary_key,
    projection_to_row,
)
from connectors.errors import (
    ForbiddenError,
    InvalidResponseError,
    NotFoundError,
    PreconditionFailedError,
)
from schemas.fields import MappingError
from schemas.models import OutcomeStatus, WriteCommand, WriteOutcome
from schemas.types import CrmTable, Kind, Projection

DEFAULT_TABLE: Final[dict[Kind, CrmTable]] = {
    "contact": "contact",
    "appointment": "appointment",
    "task": "task",
    "email": "email",
}
_GUID: Final = re.compile(
    r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
)
#: Email statuscode "Sent", set by ``mark_sent``.
EMAIL_SENT: Final = 3


def etag_of(version: str) -> str:
    """The If-Match value of a version (a versionnumber, or an etag already)."""
    return version if version.startswith(("W/", '"')) or version == "*" else f'W/"{version}"'


def email_regarding(lookup: Any) -> dict[str, Any]:
    """The regarding bind of an e-mail (the projection has no such field: tracking sets it)."""
    if lookup is None:
        return {f"regardingobjectid_{t}_email{BIND}": None for t in REGARDING_TARGETS}
    if (
        not isinstance(lookup, dict)
        or lookup.get("table") not in REGARDING_TARGETS
        or not isinstance(lookup.get("id"), str)
        or not _GUID.match(lookup["id"])
    ):
        raise MappingError(
            "regardingobjectid", lookup, f"expected {{table: {REGARDING_TARGETS}, id: guid}}"
        )
    target = lookup["table"]
    return {f"regardingobjectid_{target}_email{BIND}": f"/{entity_set(target)}({lookup['id']})"}


@dataclass(frozen=True, slots=True)
class _Planned:
    """A command turned into one batch operation."""

    index: int
    command: WriteCommand
    table: CrmTable
    row_id: str
    op: BatchOperation
    written: Projection


class DataverseWriter:
    """Applies WriteCommands to one organisation."""

    def __init__(
        self,
        client: DataverseClient,
        *,
        org_id: str,
        resolver: PartyResolver | None = None,
        max_operations: int = MAX_BATCH_OPERATIONS,
    ) -> None:
        if not 1 <= max_operations <= MAX_BATCH_OPERATIONS:
            raise ValueError(f"max_operations must be 1..{MAX_BATCH_OPERATIONS}")
        self._client = client
        self.org_id = org_id
        self._resolver = resolver
        self._max = max_operations

    async def apply(self, commands: Sequence[WriteCommand]) -> list[WriteOutcome]:
        outcomes: list[WriteOutcome | None] = [None] * len(commands)
        by_user: dict[str | None, list[_Planned]] = {}
        for index, cmd in enumerate(commands):
            planned = self._plan(index, cmd)
            if isinstance(planned, WriteOutcome):
                outcomes[index] = planned
            else:
                by_user.setdefault(cmd.run_as, []).append(planned)
        groups = [
            self._run_user(run_as, ops[i : i + self._max])
            for run_as, ops in by_user.items()
            for i in range(0, len(ops), self._max)
        ]
        for done in await asyncio.gather(*groups):
            for index, outcome in done:
                outcomes[index] = outcome
        assert all(o is not None for o in outcomes)
        return [o for o in outcomes if o is not None]

    def _plan(self, index: int, cmd: WriteCommand) -> _Planned | WriteOutcome:
        if cmd.target != "crm":
            return self._outcome(cmd, "failed", None, code="wrong_side", message="not a CRM write")
        if cmd.org_id != self.org_id:
            return self._outcome(cmd, "failed", None, code="wrong_org", message=cmd.org_id)
        table = cmd.table or DEFAULT_TABLE[cmd.kind]
        try:
            if kind_of(table) != cmd.kind:
                raise MappingError("table", table, f"is not a {cmd.kind} table")
            return self._operation(index, cmd, table)
        except (MappingError, ValueError) as exc:
            return self._outcome(cmd, "failed", None, code="invalid_command", message=str(exc))

    def _operation(self, index: int, cmd: WriteCommand, table: CrmTable) -> _Planned | WriteOutcome:
        if cmd.action in ("send", "set_categories"):
            return self._outcome(
                cmd, "skipped", None, code="not_supported", message=f"{cmd.action} is Outlook-only"
            )
        if cmd.action == "create":
            row_id = (cmd.target_id or crm_row_id(self.org_id, cmd.correlation_id, table)).lower()
        elif cmd.target_id:
            row_id = cmd.target_id.lower()
        else:
            raise ValueError(f"{cmd.action} needs a target_id")
        pk = primary_key(table)
        url = f"{entity_set(table)}({row_id})"
        cid = str(index + 1)
        headers = dict(self._client.caller_headers(cmd.run_as))
        if cmd.action == "delete":
            if cmd.if_match:
                headers["If-Match"] = etag_of(cmd.if_match)
            op = BatchOperation("DELETE", self._client.url(url), cid, None, headers)
            return _Planned(index, cmd, table, row_id, op, {})
        written: Projection = {}
        if cmd.action == "mark_sent":
            if table != "email":
                raise ValueError("mark_sent applies to emails only")
            body: dict[str, Any] = {"statecode": EMAIL_STATE[EMAIL_SENT], "statuscode": EMAIL_SENT}
            sent_id = cmd.fields.get("messageid")
            if sent_id is not None:
                if not isinstance(sent_id, str) or not 0 < len(sent_id) <= 320:
                    raise ValueError("mark_sent: messageid must be a string of 1-320 characters")
                body["messageid"] = written["messageid"] = sent_id
        else:
            fields = dict(cmd.fields)
            regarding = fields.pop("regardingobjectid", None) if table == "email" else None
            payload = projection_to_row(table, fields, resolve=self._resolver)
            body = payload.body
            if table == "email" and "regardingobjectid" in cmd.fields:
                body.update(email_regarding(regarding))
            written = dict(cmd.fields)
            for name in payload.truncated:
                if isinstance(body.get(name), str):
                    written[name] = body[name]
        if cmd.action != "create":
            headers["If-Match"] = etag_of(cmd.if_match) if cmd.if_match else "*"
        headers["Prefer"] = "return=representation"
        select = f"?$select={pk},versionnumber"
        op = BatchOperation("PATCH", self._client.url(url + select), cid, body, headers)
        return _Planned(index, cmd, table, row_id, op, written)

    async def _run_user(
        self, run_as: str | None, planned: list[_Planned]
    ) -> list[tuple[int, WriteOutcome]]:
        done: list[tuple[int, WriteOutcome]] = []
        pending = list(planned)
        while pending:
            replies = await self._send(run_as, pending)
            by_cid = {p.op.content_id: p for p in pending}
            if len(replies) == 1 and replies[0].status >= 400:
                failed = by_cid.get(replies[0].content_id or "")
                if failed is None:
                    if len(pending) != 1:
                        raise InvalidResponseError("a failed changeset names no operation")
                    failed = pending[0]
                done.append((failed.index, self._failure(failed, replies[0])))
                pending = [p for p in pending if p is not failed]
                continue
            if len(replies) != len(pending):
                raise InvalidResponseError(
                    f"$batch answered {len(replies)} responses for {len(pending)} operations"
                )
            for plan, reply in zip(pending, replies, strict=True):
                if reply.content_id not in (None, plan.op.content_id):
                    raise InvalidResponseError("$batch responses are out of order")
                done.append((plan.index, self._success(plan, reply)))
            pending = []
        return done

    async def _send(self, run_as: str | None, planned: list[_Planned]) -> list[BatchResponse]:
        body, content_type = build_batch([[p.op for p in planned]])
        resp = await self._client.request(
            "POST",
            "$batch",
            body=body,
            headers={"Content-Type": content_type, "Prefer": "odata.continue-on-error"},
            run_as=run_as,
            safe=True,  # every operation is idempotent (keyed upsert, If-Match, delete by key)
            what="$batch",
        )
        replies = parse_batch_response(resp.body, resp.headers.get("content-type", ""))
        for reply in replies:
            if reply.status >= 500 or reply.status == 429:
                raise error_for(reply.status, reply.headers, reply.body, "$batch operation")
        return replies

    def _success(self, plan: _Planned, reply: BatchResponse) -> WriteOutcome:
        if not 200 <= reply.status < 300:
            raise InvalidResponseError(f"$batch operation answered HTTP {reply.status}")
        cmd = plan.command
        if cmd.action == "delete":
            return self._outcome(cmd, "applied", plan.row_id, version=None)
        version: str | None = None
        if reply.body:
            row = reply.json()
            got = row.get("versionnumber")
            if isinstance(got, bool) or not isinstance(got, int | str):
                raise InvalidResponseError("written row has no versionnumber")
            version = str(got)
        else:
            tag = reply.headers.get("etag", "")
            if tag.startswith('W/"') and tag.endswith('"'):
                version = tag[3:-1]
        return self._outcome(cmd, "applied", plan.row_id, version=version, written=plan.written)

    def _failure(self, plan: _Planned, reply: BatchResponse) -> WriteOutcome:
        err = error_for(
            reply.status, reply.headers, reply.body, f"{plan.command.action} {plan.table}"
        )
        status: OutcomeStatus = "failed"
        if isinstance(err, PreconditionFailedError):
            status = "conflict"
        elif isinstance(err, ForbiddenError):
            status = "forbidden"
        elif isinstance(err, NotFoundError) and plan.command.action != "create":
            status = "not_found"
        return self._outcome(
            plan.command,
            status,
            plan.row_id,
            code=err.code or str(reply.status),
            message=str(err),
            retriable=err.retriable,
        )

    def _outcome(
        self,
        cmd: WriteCommand,
        status: OutcomeStatus,
        target_id: str | None,
        *,
        version: str | None = None,
        written: Projection | None = None,
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
