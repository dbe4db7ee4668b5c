"""Delta with paging and 410, If-Match 412 and 429 throttling, via the SDK."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from kiota_abstractions.api_error import APIError
from kiota_abstractions.base_request_configuration import RequestConfiguration
from msgraph.generated.models.contact import Contact
from msgraph.generated.models.o_data_errors.o_data_error import ODataError
from msgraph.generated.models.todo_task import TodoTask

from emulators.graph import EmulatorConfig, ThrottleLimits

from .conftest import Graph, start


def _prefer(size: int) -> RequestConfiguration[Any]:
    config: RequestConfiguration[Any] = RequestConfiguration()
    config.headers.add("Prefer", f"odata.maxpagesize={size}")
    return config


async def test_contacts_delta_pages_then_reports_changes_and_removals(graph: Graph) -> None:
    await graph.user("alice")
    me = graph.sdk.users.by_user_id("alice@contoso.test")
    ids = []
    for n in range(5):
        made = await me.contacts.post(Contact(given_name=f"C{n}"))
        assert made is not None and made.id
        ids.append(made.id)
    seen: list[str] = []
    page = await me.contacts.delta.get(_prefer(2))
    pages = 1
    while page is not None and page.odata_next_link:
        seen += [c.id or "" for c in page.value or []]
        page = await me.contacts.delta.with_url(page.odata_next_link).get(_prefer(2))
        pages += 1
    assert page is not None and page.odata_delta_link and "$deltatoken=" in page.odata_delta_link
    seen += [c.id or "" for c in page.value or []]
    assert sorted(seen) == sorted(ids) and pages == 3
    await me.contacts.by_contact_id(ids[0]).patch(Contact(surname="Changed"))
    await me.contacts.by_contact_id(ids[1]).delete()
    changes = await me.contacts.delta.with_url(page.odata_delta_link).get()
    assert changes is not None
    by_id = {c.id: c for c in changes.value or []}
    assert set(by_id) == {ids[0], ids[1]}
    assert by_id[ids[0]].surname == "Changed"
    assert (by_id[ids[1]].additional_data or {}).get("@removed") == {"reason": "deleted"}
    again = await me.contacts.delta.with_url(changes.odata_delta_link or "").get()
    assert again is not None and again.value == []


async def test_invalidated_delta_token_is_410_with_location(graph: Graph) -> None:
    await graph.user("alice")
    tasks = graph.sdk.users.by_user_id("alice@contoso.test").todo.lists
    lists = await tasks.get()
    assert lists is not None and lists.value
    list_id = lists.value[0].id or ""
    await tasks.by_todo_task_list_id(list_id).tasks.post(TodoTask(title="t"))
    first = await tasks.by_todo_task_list_id(list_id).tasks.delta.get()
    assert first is not None and first.odata_delta_link and len(first.value or []) == 1
    reply = await graph.raw.post(
        f"{graph.root}/_emulator/invalidate-delta", json={"mailbox": "alice@contoso.test"}
    )
    assert reply.status_code == 200
    with pytest.raises(APIError) as err:
        await tasks.by_todo_task_list_id(list_id).tasks.delta.with_url(first.odata_delta_link).get()
    assert err.value.response_status_code == 410
    raw = await graph.raw.get(first.odata_delta_link)
    assert raw.status_code == 410 and raw.json()["error"]["code"] == "syncStateNotFound"
    fresh = await graph.raw.get(raw.headers["Location"])
    assert fresh.status_code == 200 and len(fresh.json()["value"]) == 1


async def test_stale_if_match_is_412(graph: Graph) -> None:
    await graph.user("alice")
    me = graph.sdk.users.by_user_id("alice@contoso.test")
    made = await me.contacts.post(Contact(given_name="Old"))
    assert made is not None and made.id
    stale = f'W/"{made.change_key}"'
    await me.contacts.by_contact_id(made.id).patch(Contact(given_name="New"))
    config: RequestConfiguration[Any] = RequestConfiguration()
    config.headers.add("If-Match", stale)
    with pytest.raises(ODataError) as err:
        await me.contacts.by_contact_id(made.id).patch(Contact(given_name="Mine"), config)
    assert err.value.response_status_code == 412
    assert err.value.error is not None
    assert err.value.error.code == "ErrorIrresolvableConflict"
    with pytest.raises(APIError):
        await me.contacts.by_contact_id(made.id).delete(config)
    current = await me.contacts.by_contact_id(made.id).get()
    assert current is not None and current.given_name == "New"


@pytest.fixture
async def tight() -> AsyncIterator[Graph]:
    config = EmulatorConfig(throttle=ThrottleLimits(requests_per_window=3, window_seconds=30))
    async for running in start(config):
        yield running


async def test_throttled_past_the_window_budget_with_retry_after(tight: Graph) -> None:
    await tight.user("alice")
    me = tight.sdk.users.by_user_id("alice@contoso.test")
    for _ in range(3):
        await me.contacts.get()
    with pytest.raises(APIError) as err:
        await me.contacts.get()
    assert err.value.response_status_code == 429
    headers = err.value.response_headers or {}
    retry = headers.get("retry-after") or headers.get("Retry-After")
    assert retry is not None and int(str(retry).strip("[]'\" ")) >= 1
    raw = await tight.raw.get(f"{tight.api}/users/alice@contoso.test/contacts")
    assert raw.status_code == 429 and raw.json()["error"]["code"] == "ApplicationThrottled"
    other = await tight.raw.post(f"{tight.api}/users", json={"userPrincipalName": "b@contoso.test"})
    assert other.status_code == 201
