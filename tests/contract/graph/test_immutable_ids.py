"""Ids across a move, with and without ``Prefer: IdType="ImmutableId"`` (Graph's docs: by
default an item's id changes when it moves to another folder; the header, which applies to the
request it is sent with, asks for the immutable id, which does not)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from .conftest import Graph

ALICE = "users/alice@contoso.test"
IMMUTABLE = {"Prefer": 'IdType="ImmutableId"'}


async def _draft(graph: Graph, subject: str = "Move me") -> str:
    made = await graph.raw.post(f"{graph.api}/{ALICE}/messages", json={"subject": subject})
    assert made.status_code == 201
    return str(made.json()["id"])


async def _move(graph: Graph, item: str, folder: str, **headers: str) -> Any:
    return await graph.raw.post(
        f"{graph.api}/{ALICE}/messages/{item}/move", json={"destinationId": folder}, headers=headers
    )


async def test_a_move_without_the_header_gives_a_new_id_and_the_old_one_stops_working(
    graph: Graph,
) -> None:
    await graph.user("alice")
    first = await _draft(graph)
    moved = await _move(graph, first, "archive")
    assert moved.status_code == 201, moved.text
    second = moved.json()["id"]
    assert second != first
    archive = await graph.raw.get(f"{graph.api}/{ALICE}/mailFolders/archive")
    assert moved.json()["parentFolderId"] == archive.json()["id"]
    got = await graph.raw.get(f"{graph.api}/{ALICE}/messages/{second}")
    assert got.status_code == 200 and got.json()["id"] == second
    listed = await graph.raw.get(f"{graph.api}/{ALICE}/mailFolders/archive/messages")
    assert [m["id"] for m in listed.json()["value"]] == [second]
    again = await _move(graph, second, "inbox")
    third = again.json()["id"]
    assert third not in (first, second)
    stale = await graph.raw.get(f"{graph.api}/{ALICE}/messages/{second}")
    assert stale.status_code == 404 and stale.json()["error"]["code"] == "ErrorItemNotFound"
    assert (await graph.raw.get(f"{graph.api}/{ALICE}/messages/{third}")).status_code == 200


async def test_with_the_header_the_id_survives_moves(graph: Graph) -> None:
    await graph.user("alice")
    made = await graph.raw.post(
        f"{graph.api}/{ALICE}/messages", json={"subject": "Keep"}, headers=IMMUTABLE
    )
    item = made.json()["id"]
    for folder in ("archive", "inbox", "deleteditems"):
        moved = await _move(graph, item, folder, **IMMUTABLE)
        assert moved.status_code == 201 and moved.json()["id"] == item
    got = await graph.raw.get(f"{graph.api}/{ALICE}/messages/{item}", headers=IMMUTABLE)
    assert got.status_code == 200 and got.json()["id"] == item
    listed = await graph.raw.get(
        f"{graph.api}/{ALICE}/mailFolders/deleteditems/messages", headers=IMMUTABLE
    )
    assert [m["id"] for m in listed.json()["value"]] == [item]
    # the header applies to its request only: without it, the same message has its REST id
    plain = await graph.raw.get(f"{graph.api}/{ALICE}/mailFolders/deleteditems/messages")
    [rest] = [m["id"] for m in plain.json()["value"]]
    assert rest != item
    by_rest = await graph.raw.get(f"{graph.api}/{ALICE}/messages/{rest}", headers=IMMUTABLE)
    assert by_rest.status_code == 200 and by_rest.json()["id"] == item


async def test_deltas_name_the_moved_item_by_the_id_the_reader_asked_for(graph: Graph) -> None:
    await graph.user("alice")
    inbox = f"{graph.api}/{ALICE}/mailFolders/inbox/messages"
    made = await graph.raw.post(inbox, json={"subject": "Tracked"}, headers=IMMUTABLE)
    item = made.json()["id"]
    rounds = {}
    for name, headers in (("plain", {}), ("immutable", IMMUTABLE)):
        first = (await graph.raw.get(f"{inbox}/delta", headers=headers)).json()
        assert [m["id"] for m in first["value"]] == [item]
        rounds[name] = first["@odata.deltaLink"]
    moved = await _move(graph, item, "archive")
    rest = moved.json()["id"]
    for name, headers, gone in (("plain", {}, item), ("immutable", IMMUTABLE, item)):
        after = (await graph.raw.get(rounds[name], headers=headers)).json()
        assert after["value"] == [
            {
                "@odata.type": "#microsoft.graph.message",
                "id": gone,
                "@removed": {"reason": "deleted"},
            }
        ]
    archive = f"{graph.api}/{ALICE}/mailFolders/archive/messages/delta"
    plain = (await graph.raw.get(archive)).json()
    assert [m["id"] for m in plain["value"]] == [rest]
    kept = (await graph.raw.get(archive, headers=IMMUTABLE)).json()
    assert [m["id"] for m in kept["value"]] == [item]
    # moved on again: a plain reader of the archive hears of the REST id it knew going away
    link = plain["@odata.deltaLink"]
    await _move(graph, rest, "inbox")
    after = (await graph.raw.get(link)).json()
    assert [(m["id"], "@removed" in m) for m in after["value"]] == [(rest, True)]


async def test_a_sent_draft_keeps_its_immutable_id_in_sent_items(graph: Graph) -> None:
    await graph.user("alice")
    await graph.user("bob")
    made = await graph.raw.post(
        f"{graph.api}/{ALICE}/messages",
        json={
            "subject": "Sent copy",
            "toRecipients": [{"emailAddress": {"address": "bob@contoso.test"}}],
        },
        headers=IMMUTABLE,
    )
    item = made.json()["id"]
    sent = await graph.raw.post(f"{graph.api}/{ALICE}/messages/{item}/send", headers=IMMUTABLE)
    assert sent.status_code == 202, sent.text
    copy = await graph.raw.get(f"{graph.api}/{ALICE}/messages/{item}", headers=IMMUTABLE)
    assert copy.status_code == 200 and copy.json()["id"] == item
    sent_items = await graph.raw.get(f"{graph.api}/{ALICE}/mailFolders/sentitems")
    assert copy.json()["parentFolderId"] == sent_items.json()["id"]
    assert copy.json()["isDraft"] is False


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({}, 400, "ErrorInvalidIdMalformed"),
        ({"destinationId": ""}, 400, "ErrorInvalidIdMalformed"),
        ({"destinationId": 7}, 400, "ErrorInvalidIdMalformed"),
        ({"destinationId": "AAMkAnowhere"}, 404, "ErrorItemNotFound"),
        ([], 400, "BadRequest"),
    ],
)
async def test_bad_moves(graph: Graph, body: Any, status: int, code: str) -> None:
    await graph.user("alice")
    item = await _draft(graph)
    answer = await graph.raw.post(f"{graph.api}/{ALICE}/messages/{item}/move", json=body)
    assert answer.status_code == status, answer.text
    assert answer.json()["error"]["code"] == code
    unknown = await _move(graph, "AAMkAnothing", "archive")
    assert unknown.status_code == 404


@pytest.fixture
async def hook() -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    notes: list[dict[str, Any]] = []

    async def receive(request: web.Request) -> web.Response:
        token = request.query.get("validationToken")
        if token is not None:
            return web.Response(text=token, content_type="text/plain")
        notes.extend((await request.json())["value"])
        return web.Response(status=202)

    app = web.Application()
    app.router.add_post("/hook", receive)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield str(server.make_url("/hook")), notes
    await server.close()


async def test_notifications_use_the_id_type_the_subscription_was_created_with(
    graph: Graph, hook: tuple[str, list[dict[str, Any]]]
) -> None:
    url, notes = hook
    await graph.user("alice")
    item = await _draft(graph)
    expiry = (datetime.now(UTC) + timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    subs = {}
    for name, headers in (("plain", {}), ("immutable", IMMUTABLE)):
        made = await graph.raw.post(
            f"{graph.api}/subscriptions",
            json={
                "changeType": "updated",
                "notificationUrl": url,
                "resource": "users/alice@contoso.test/messages",
                "expirationDateTime": expiry,
                "clientState": name,
            },
            headers=headers,
        )
        assert made.status_code == 201, made.text
        subs[made.json()["id"]] = name
    rest = (await _move(graph, item, "archive")).json()["id"]
    for _ in range(200):
        if len(notes) >= 2:
            break
        await asyncio.sleep(0.02)
    ids = {subs[n["subscriptionId"]]: n["resourceData"]["id"] for n in notes}
    assert ids == {"plain": rest, "immutable": item}
