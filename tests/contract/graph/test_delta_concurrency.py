"""Messages delta per folder, calendarView/delta windows, MailboxConcurrency 429, and
``--notify-time-scale`` on a running emulator process. ($batch stays raw in test_raw.py: the
SDK's batch module needs the ``Deprecated`` package, which is not installed.)"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from kiota_abstractions.base_request_configuration import RequestConfiguration
from msgraph.generated.models.message import Message
from msgraph.generated.users.item.messages.item.move.move_post_request_body import (
    MovePostRequestBody,
)

from tests.contract.graph_connector.emulator import TOKEN, start_emulator

from .conftest import Graph


def _prefer(size: int) -> RequestConfiguration[Any]:
    config: RequestConfiguration[Any] = RequestConfiguration()
    config.headers.add("Prefer", f"odata.maxpagesize={size}")
    return config


async def test_messages_delta_per_folder_pages_and_reports_moves_out(graph: Graph) -> None:
    user = await graph.user("alice")
    me = graph.sdk.users.by_user_id(user)
    inbox = me.mail_folders.by_mail_folder_id("inbox")
    ids = []
    for n in range(5):
        made = await inbox.messages.post(Message(subject=f"m{n}"))
        assert made is not None and made.id
        ids.append(made.id)
    await me.mail_folders.by_mail_folder_id("drafts").messages.post(Message(subject="other"))
    seen: list[str] = []
    page = await inbox.messages.delta.get(_prefer(2))
    pages = 1
    while page is not None and page.odata_next_link:
        assert page.odata_next_link.startswith(graph.api) and len(page.value or []) == 2
        seen += [m.id or "" for m in page.value or []]
        page = await inbox.messages.delta.with_url(page.odata_next_link).get(_prefer(2))
        pages += 1
    assert page is not None and page.odata_delta_link
    seen += [m.id or "" for m in page.value or []]
    assert sorted(seen) == sorted(ids) and pages == 3, "only the folder's messages, paged"
    archive = await me.mail_folders.by_mail_folder_id("archive").get()
    assert archive is not None and archive.id
    moved = await me.messages.by_message_id(ids[0]).move.post(
        MovePostRequestBody(destination_id=archive.id)
    )
    assert moved is not None and moved.id and moved.id != ids[0], "a new REST id"
    await me.messages.by_message_id(ids[1]).patch(Message(is_read=True))
    changes = await inbox.messages.delta.with_url(page.odata_delta_link).get()
    assert changes is not None
    by_id = {m.id: m for m in changes.value or []}
    assert set(by_id) == {ids[0], ids[1]}
    assert (by_id[ids[0]].additional_data or {}).get("@removed") == {"reason": "deleted"}
    assert by_id[ids[1]].is_read is True
    archived = await me.mail_folders.by_mail_folder_id(archive.id).messages.delta.get()
    assert archived is not None and [m.id for m in archived.value or []] == [moved.id]


def _dtz(text: str) -> dict[str, str]:
    return {"dateTime": text, "timeZone": "UTC"}


async def test_calendar_view_delta_window_occurrences_exception_delete(graph: Graph) -> None:
    user = await graph.user("bob")
    events = f"{graph.api}/users/{user}/events"
    series = {
        "subject": "Standup",
        "start": _dtz("2025-03-03T09:00:00"),
        "end": _dtz("2025-03-03T09:15:00"),
        "recurrence": {
            "pattern": {"type": "daily", "interval": 1},
            "range": {"type": "numbered", "startDate": "2025-03-03", "numberOfOccurrences": 5},
        },
    }
    master = (await graph.raw.post(events, json=series)).json()
    inside = {
        "subject": "Review",
        "start": _dtz("2025-03-04T14:00:00"),
        "end": _dtz("2025-03-04T15:00:00"),
    }
    outside = {
        "subject": "Later",
        "start": _dtz("2025-06-01T10:00:00"),
        "end": _dtz("2025-06-01T11:00:00"),
    }
    single = (await graph.raw.post(events, json=inside)).json()
    far = (await graph.raw.post(events, json=outside)).json()
    window = {"startDateTime": "2025-03-01T00:00:00Z", "endDateTime": "2025-03-06T00:00:00Z"}
    url = f"{graph.api}/users/{user}/calendarView/delta"
    first = (
        await graph.raw.get(url, params=window, headers={"Prefer": "odata.maxpagesize=3"})
    ).json()
    items: list[dict[str, Any]] = []
    while True:
        items += first["value"]
        if "@odata.deltaLink" in first:
            break
        first = (await graph.raw.get(first["@odata.nextLink"])).json()
    occurrences = sorted(
        (i for i in items if i.get("type") == "occurrence"), key=lambda i: i["start"]["dateTime"]
    )
    assert [o["start"]["dateTime"][:10] for o in occurrences] == [
        "2025-03-03",
        "2025-03-04",
        "2025-03-05",
    ], "only the occurrences inside the window"
    assert all(o["seriesMasterId"] == master["id"] for o in occurrences)
    ids = {i["id"] for i in items}
    assert single["id"] in ids and far["id"] not in ids
    changed = await graph.raw.patch(f"{events}/{occurrences[1]['id']}", json={"subject": "Demo"})
    assert changed.status_code == 200 and changed.json()["type"] == "exception"
    assert (await graph.raw.delete(f"{events}/{occurrences[2]['id']}")).status_code == 204
    assert (await graph.raw.delete(f"{events}/{single['id']}")).status_code == 204
    await graph.raw.patch(f"{events}/{far['id']}", json={"subject": "Later still"})
    delta = (await graph.raw.get(first["@odata.deltaLink"])).json()
    got = {i["id"]: i for i in delta["value"]}
    assert got[changed.json()["id"]]["subject"] == "Demo"
    assert got[occurrences[2]["id"]]["@removed"] == {"reason": "deleted"}
    assert got[single["id"]]["@removed"] == {"reason": "deleted"}
    # an event outside the window is never reported as an item (at most as a removal)
    assert "@removed" in got.get(far["id"], {"@removed": True})
    assert "@odata.deltaLink" in delta


async def test_more_than_four_concurrent_requests_get_mailbox_concurrency_429(
    graph: Graph,
) -> None:
    user = await graph.user("carol")
    fault = await graph.raw.post(
        f"{graph.root}/_emulator/faults", json={"rate": 0, "latency_ms": 400}
    )
    assert fault.status_code == 200
    url = f"{graph.api}/users/{user}/contacts"
    replies = await asyncio.gather(*(graph.raw.get(url) for _ in range(6)))
    statuses = sorted(r.status_code for r in replies)
    assert statuses == [200, 200, 200, 200, 429, 429]
    refused = [r for r in replies if r.status_code == 429]
    for reply in refused:
        assert reply.json()["error"]["code"] == "MailboxConcurrency"
        assert reply.headers["Retry-After"].isdigit()
    other = await graph.user("dave")
    spread = await asyncio.gather(
        *(graph.raw.get(f"{graph.api}/users/{u}/contacts") for u in (user, other) * 3)
    )
    assert all(r.status_code == 200 for r in spread), "the limit is per mailbox"


@pytest.fixture
async def flaky_hook() -> AsyncIterator[tuple[str, list[float]]]:
    arrivals: list[float] = []
    failures = [1]

    async def hook(request: web.Request) -> web.Response:
        token = request.query.get("validationToken")
        if token is not None:
            return web.Response(text=token, content_type="text/plain")
        if failures[0] > 0:
            failures[0] -= 1
            return web.Response(status=503)
        arrivals.append(time.monotonic())
        return web.Response(status=202)

    app = web.Application()
    app.router.add_post("/hook", hook)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield str(server.make_url("/hook")), arrivals
    await server.close()


@pytest.mark.parametrize(("scale", "retried"), [("0.001", True), ("1", False)])
async def test_notify_time_scale_flag_scales_delivery_retries(
    flaky_hook: tuple[str, list[float]], scale: str, retried: bool
) -> None:
    url, arrivals = flaky_hook
    for emulator in start_emulator("--notify-time-scale", scale):
        async with httpx.AsyncClient(
            base_url=emulator.base, headers={"Authorization": f"Bearer {TOKEN}"}
        ) as http:
            user = (await http.post("/users", json={"userPrincipalName": "f@contoso.test"})).json()[
                "id"
            ]
            sub = await http.post(
                "/subscriptions",
                json={
                    "changeType": "created",
                    "notificationUrl": url,
                    "resource": f"users/{user}/contacts",
                    "expirationDateTime": (datetime.now(UTC) + timedelta(hours=1)).isoformat(),
                    "clientState": "s",
                },
            )
            assert sub.status_code == 201, sub.text
            started = time.monotonic()
            assert (
                await http.post(f"/users/{user}/contacts", json={"givenName": "x"})
            ).status_code == 201
            await asyncio.sleep(1.5)
        assert bool(arrivals) is retried
        if retried:
            assert arrivals[0] - started < 1.5
