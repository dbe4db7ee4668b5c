"""GraphWriter against the Graph emulator process: sendMail (looked up in Sent Items first, so
a retry never sends twice), set_categories, If-Match updates of events and tasks, and the task
open extension (percentcomplete, regarding) read back by the delta reader."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from connectors.graph.mapping import TASK_EXTENSION_NAME
from connectors.graph.reader import GraphDeltaSource, tasks_stream, todo_lists
from connectors.graph.transport import GraphTransport
from connectors.graph.writer import GraphWriter
from schemas.models import CommandAction, WriteCommand
from schemas.types import Kind, Projection
from tests.contract.graph_connector.emulator import TOKEN, GraphEmulator, start_emulator


@pytest.fixture(scope="module")
def emulator() -> Iterator[GraphEmulator]:
    yield from start_emulator()


async def _token() -> str:
    return TOKEN


@dataclass
class Env:
    emulator: GraphEmulator
    transport: GraphTransport
    writer: GraphWriter
    mailbox: str
    task_list: str

    def cmd(
        self,
        kind: Kind,
        action: CommandAction,
        fields: Projection | None = None,
        *,
        correlation_id: str | None = None,
        target_id: str | None = None,
        if_match: str | None = None,
    ) -> WriteCommand:
        return WriteCommand(
            command_id=uuid.uuid4().hex,
            mailbox_id=self.mailbox,
            org_id="org",
            target="outlook",
            kind=kind,
            action=action,
            correlation_id=correlation_id or f"corr-{uuid.uuid4().hex}",
            caused_by="writer-test",
            issued_at="2026-01-01T00:00:00Z",
            target_id=target_id,
            if_match=if_match,
            fields=fields or {},
        )

    async def get(self, path: str) -> dict[str, Any]:
        resp = await self.emulator.call("GET", f"users/{self.mailbox}/{path}")
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert isinstance(body, dict)
        return body


@pytest.fixture
async def env(emulator: GraphEmulator) -> AsyncIterator[Env]:
    mailbox = await emulator.new_mailbox()
    async with httpx.AsyncClient() as http:
        transport = GraphTransport(http, emulator.base, _token)
        lists = await todo_lists(transport, mailbox)
        yield Env(emulator, transport, GraphWriter(transport), mailbox, lists[0])


def _task(n: int, percent: int | None, status: int = 3) -> Projection:
    return {
        "subject": f"Task {n}",
        "statecode": 0 if status != 5 else 1,
        "statuscode": status,
        "percentcomplete": percent,
        "regardingobjectid": {"table": "account", "id": f"00000000-0000-4000-8000-{n:012d}"},
    }


async def _read_task(env: Env, task_id: str) -> Projection:
    source = GraphDeltaSource(
        env.transport,
        tasks_stream(env.mailbox, env.task_list),
        org_id="org",
        groups=frozenset({"percentcomplete"}),
    )
    found: Projection | None = None
    async for batch in source.read(None):
        for change in batch.changes:
            if change.item_id == task_id:
                found = change.projection
    assert found is not None, "the task is in the delta"
    return found


async def test_task_update_writes_extension_with_if_match(env: Env) -> None:
    (created,) = await env.writer.apply([env.cmd("task", "create", _task(1, 10))])
    assert created.status == "applied" and created.target_id and created.version
    read = await _read_task(env, created.target_id)
    assert read["percentcomplete"] == 10
    assert read["regardingobjectid"] == _task(1, 10)["regardingobjectid"]
    update = env.cmd(
        "task",
        "update",
        _task(2, 70),
        correlation_id=created.correlation_id,
        target_id=created.target_id,
        if_match=created.version,
    )
    (outcome,) = await env.writer.apply([update])
    assert outcome.status == "applied", outcome
    current = await env.get(f"todo/lists/{env.task_list}/tasks/{created.target_id}")
    assert outcome.version == current["@odata.etag"], "the version is read after the extension"
    read = await _read_task(env, created.target_id)
    assert read["subject"] == "Task 2" and read["percentcomplete"] == 70
    assert read["regardingobjectid"] == _task(2, 70)["regardingobjectid"]
    stale = env.cmd(
        "task",
        "update",
        _task(3, 90),
        correlation_id=created.correlation_id,
        target_id=created.target_id,
        if_match=created.version,
    )
    (conflict,) = await env.writer.apply([stale])
    assert conflict.status == "conflict" and conflict.error_code == "ErrorIrresolvableConflict"
    read = await _read_task(env, created.target_id)
    assert read["percentcomplete"] == 70, "a refused update writes no extension either"


async def test_task_update_adds_a_missing_extension(env: Env) -> None:
    (created,) = await env.writer.apply([env.cmd("task", "create", {"subject": "plain"})])
    assert created.status == "applied" and created.target_id
    exts = await env.get(f"todo/lists/{env.task_list}/tasks/{created.target_id}/extensions")
    assert exts["value"] == []
    (outcome,) = await env.writer.apply(
        [
            env.cmd(
                "task",
                "update",
                _task(4, 30),
                target_id=created.target_id,
                if_match=created.version,
            )
        ]
    )
    assert outcome.status == "applied", outcome
    exts = await env.get(f"todo/lists/{env.task_list}/tasks/{created.target_id}/extensions")
    assert [e["id"] for e in exts["value"]] == [TASK_EXTENSION_NAME]
    assert exts["value"][0]["percentComplete"] == 30


def _event(subject: str) -> Projection:
    return {
        "subject": subject,
        "scheduledstart": "2030-05-01T09:00:00Z",
        "scheduledend": "2030-05-01T09:30:00Z",
    }


async def test_event_update_with_if_match(env: Env) -> None:
    (created,) = await env.writer.apply([env.cmd("appointment", "create", _event("Kickoff"))])
    assert created.status == "applied" and created.target_id and created.version
    (updated,) = await env.writer.apply(
        [
            env.cmd(
                "appointment",
                "update",
                {"subject": "Kickoff (moved)"},
                target_id=created.target_id,
                if_match=created.version,
            )
        ]
    )
    assert updated.status == "applied" and updated.version != created.version
    event = await env.get(f"events/{created.target_id}")
    assert event["subject"] == "Kickoff (moved)" and event["changeKey"] == updated.version
    (stale,) = await env.writer.apply(
        [
            env.cmd(
                "appointment",
                "update",
                {"subject": "lost"},
                target_id=created.target_id,
                if_match=created.version,
            )
        ]
    )
    assert stale.status == "conflict"
    assert (await env.get(f"events/{created.target_id}"))["subject"] == "Kickoff (moved)"


async def test_set_categories_with_if_match(env: Env) -> None:
    made = await env.emulator.call(
        "POST", f"users/{env.mailbox}/mailFolders/inbox/messages", {"subject": "hello"}
    )
    assert made.status_code == 201
    message = made.json()
    cats = ["Tracked to Dynamics 365"]
    (outcome,) = await env.writer.apply(
        [
            env.cmd(
                "email",
                "set_categories",
                {"categories": cats},
                target_id=message["id"],
                if_match=message["changeKey"],
            )
        ]
    )
    assert outcome.status == "applied", outcome
    assert (await env.get(f"messages/{message['id']}"))["categories"] == cats
    (stale,) = await env.writer.apply(
        [
            env.cmd(
                "email",
                "set_categories",
                {"categories": []},
                target_id=message["id"],
                if_match=message["changeKey"],
            )
        ]
    )
    assert stale.status == "conflict"
    (bad,) = await env.writer.apply(
        [env.cmd("email", "set_categories", {"categories": "x"}, target_id=message["id"])]
    )
    assert bad.status == "failed" and bad.error_code == "invalid_fields"


async def test_send_mail_is_looked_up_in_sent_items_so_a_retry_sends_once(
    env: Env, emulator: GraphEmulator
) -> None:
    recipient = await emulator.new_mailbox()
    to = (await emulator.call("GET", f"users/{recipient}")).json()["mail"]
    fields: Projection = {
        "subject": "Quote",
        "description": "<p>Here it is</p>",
        "to": [{"email": to, "name": "Rec"}],
    }
    send = env.cmd("email", "send", fields)
    (first,) = await env.writer.apply([send])
    assert first.status == "applied", first
    # the same command again (a retry after a crash lost the outcome), then a duplicate in a batch
    (again,) = await env.writer.apply([send])
    twice = await env.writer.apply([send, send])
    assert again.status == "applied" and again.target_id
    assert [o.status for o in twice] == ["applied", "applied"]
    assert {o.target_id for o in twice} == {again.target_id}
    sent = await env.get("mailFolders/sentitems/messages")
    assert [m["subject"] for m in sent["value"]] == ["Quote"]
    assert sent["value"][0]["id"] == again.target_id
    inbox = await emulator.call("GET", f"users/{recipient}/mailFolders/inbox/messages")
    assert [m["subject"] for m in inbox.json()["value"]] == ["Quote"]


@pytest.mark.parametrize("status", [500, 503, 429])
async def test_a_create_whose_lookup_meets_an_outage_is_retriable_and_then_applied_once(
    env: Env, status: int
) -> None:
    """A 5xx or 429 on the correlation lookup is transient: a retriable outcome (the writer
    stage waits and tries again), never an error that parks the create; once the service is
    back the create is applied exactly once."""
    writer = GraphWriter(env.transport, max_rounds=2, sleep_cap_s=0.05)
    cmd = env.cmd("contact", "create", {"firstname": "Outage", "lastname": f"L{status}"})
    await env.emulator.control(
        "faults", {"status": status, "rate": 1.0, "retry_after": 0, "mailbox": env.mailbox}
    )
    try:
        (during,) = await writer.apply([cmd])
    finally:
        async with httpx.AsyncClient() as http:
            (await http.delete(f"{env.emulator.url}/_emulator/faults")).raise_for_status()
    assert (during.status, during.retriable) == ("failed", True), during
    (first,) = await writer.apply([cmd])
    (again,) = await writer.apply([cmd])
    assert first.status == again.status == "applied", (first, again)
    assert first.target_id == again.target_id
    contacts = (await env.get(f"contacts?$filter=surname eq 'L{status}'"))["value"]
    assert [c["id"] for c in contacts] == [first.target_id]


# ------------------------------------------------------------------ request economy


async def _requests(env: Env) -> dict[str, int]:
    """Requests the emulator counted for the test's mailbox, by method."""
    stats = await env.emulator.stats()
    return {"total": int(stats["by_mailbox"].get(env.mailbox, 0))}


async def _contacts(env: Env, surname: str) -> list[dict[str, Any]]:
    body = await env.get(f"contacts?$filter=surname eq '{surname}'&$top=999")
    value = body["value"]
    assert isinstance(value, list)
    return value


async def test_a_backlog_of_creates_costs_one_listing_then_one_request_per_item(
    env: Env,
) -> None:
    """A first sync's backlog: one listing of the stamped contacts, then 20 creates with no
    lookup each; a lone create afterwards needs no lookup either (the listing knows)."""
    surname = f"Bulk{uuid.uuid4().hex[:6]}"
    commands = [
        env.cmd("contact", "create", {"firstname": f"F{n}", "lastname": surname}) for n in range(20)
    ]
    before = (await _requests(env))["total"]
    outcomes = await env.writer.apply(commands)
    assert [o.status for o in outcomes] == ["applied"] * 20
    assert (await _requests(env))["total"] - before == 21  # 1 listing + 20 creates
    lone = env.cmd("contact", "create", {"firstname": "Lone", "lastname": surname})
    before = (await _requests(env))["total"]
    (outcome,) = await env.writer.apply([lone])
    assert outcome.status == "applied"
    assert (await _requests(env))["total"] - before == 1
    assert len(await _contacts(env, surname)) == 21


async def test_a_lone_create_without_a_listing_is_looked_up_first(env: Env) -> None:
    surname = f"Lone{uuid.uuid4().hex[:6]}"
    before = (await _requests(env))["total"]
    (outcome,) = await env.writer.apply(
        [env.cmd("contact", "create", {"firstname": "A", "lastname": surname})]
    )
    assert outcome.status == "applied"
    assert (await _requests(env))["total"] - before == 2  # lookup + create


@pytest.mark.parametrize("kind", ["contact", "task"])
async def test_creates_retried_by_a_new_worker_find_their_items_and_write_no_duplicate(
    env: Env, kind: Kind
) -> None:
    """A worker crashed after writing some creates; the next one (a new writer, nothing
    cached) gets them again with new ones: the written ones are found, the rest created."""
    name = f"Crash{uuid.uuid4().hex[:6]}"
    fields: list[Projection] = (
        [{"firstname": f"F{n}", "lastname": name} for n in range(8)]
        if kind == "contact"
        else [{"subject": f"{name} {n}"} for n in range(8)]
    )
    commands = [env.cmd(kind, "create", f) for f in fields]
    first = await env.writer.apply(commands[:5])
    assert [o.status for o in first] == ["applied"] * 5
    successor = GraphWriter(env.transport)
    again = await successor.apply(commands)
    assert [o.status for o in again] == ["applied"] * 8
    assert [o.target_id for o in again[:5]] == [o.target_id for o in first]
    if kind == "contact":
        ids = [c["id"] for c in await _contacts(env, name)]
    else:
        tasks = (await env.get(f"todo/lists/{env.task_list}/tasks?$top=999"))["value"]
        ids = [t["id"] for t in tasks if str(t.get("title", "")).startswith(name)]
    assert sorted(ids) == sorted(str(o.target_id) for o in again)


async def test_an_item_deleted_since_the_listing_is_looked_up_and_created_again(
    env: Env,
) -> None:
    """The listing holds an item its user deleted afterwards: a create of the same id is
    looked up (the listing is older than the round), found missing and written again."""
    surname = f"Gone{uuid.uuid4().hex[:6]}"
    commands = [
        env.cmd("contact", "create", {"firstname": f"F{n}", "lastname": surname}) for n in range(2)
    ]
    first = await env.writer.apply(commands)
    assert [o.status for o in first] == ["applied", "applied"]
    gone = await env.emulator.call("DELETE", f"users/{env.mailbox}/contacts/{first[0].target_id}")
    assert gone.status_code == 204, gone.text
    again = env.cmd(
        "contact", "create", commands[0].fields, correlation_id=commands[0].correlation_id
    )
    (outcome,) = await env.writer.apply([again])
    assert outcome.status == "applied" and outcome.target_id != first[0].target_id
    assert sorted(c["id"] for c in await _contacts(env, surname)) == sorted(
        [str(outcome.target_id), str(first[1].target_id)]
    )


async def test_a_writer_that_forgets_a_mailbox_sees_what_another_worker_created(
    env: Env,
) -> None:
    """While a mailbox's partition was elsewhere another worker created an item; once the
    writer forgot the mailbox (its partition was revoked) its create of that id finds it."""
    surname = f"Move{uuid.uuid4().hex[:6]}"
    warm = [
        env.cmd("contact", "create", {"firstname": f"W{n}", "lastname": surname}) for n in range(2)
    ]
    assert [o.status for o in await env.writer.apply(warm)] == ["applied", "applied"]
    moved = env.cmd("contact", "create", {"firstname": "Moved", "lastname": surname})
    (elsewhere,) = await GraphWriter(env.transport).apply([moved])
    env.writer.forget(env.mailbox)
    (outcome,) = await env.writer.apply([moved])
    assert outcome.status == "applied" and outcome.target_id == elsewhere.target_id
    assert len(await _contacts(env, surname)) == 3
