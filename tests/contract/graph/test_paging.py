"""``$top`` is the page size and ``@odata.nextLink`` pages on, as Graph documents it.

Outlook collections (messages, contacts, events, calendarView, To Do) page with ``$skip``
and keep ``$top`` in the next link; ``/users`` pages with ``$skiptoken`` and has no ``$skip``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from msgraph.generated.models.contact import Contact
from msgraph.generated.users.item.contacts.contacts_request_builder import ContactsRequestBuilder

from .conftest import Graph

ALICE = "users/alice@contoso.test"


async def _follow(graph: Graph, url: str) -> tuple[list[dict[str, Any]], list[str]]:
    """Every item reached from ``url`` by ``@odata.nextLink``, and the links followed."""
    items: list[dict[str, Any]] = []
    links: list[str] = []
    while True:
        page = await graph.raw.get(url)
        assert page.status_code == 200, page.text
        body = page.json()
        items.extend(body["value"])
        if "@odata.nextLink" not in body:
            return items, links
        url = body["@odata.nextLink"]
        links.append(url)


def _params(link: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(link).query)


async def _task_list(graph: Graph) -> str:
    lists = (await graph.raw.get(f"{graph.api}/{ALICE}/todo/lists")).json()["value"]
    return str(lists[0]["id"])


def _event(n: int) -> dict[str, Any]:
    return {
        "subject": f"Meeting {n:02}",
        "start": {"dateTime": f"2030-01-{n + 1:02}T09:00:00", "timeZone": "UTC"},
        "end": {"dateTime": f"2030-01-{n + 1:02}T10:00:00", "timeZone": "UTC"},
    }


async def test_top_smaller_than_the_contacts_pages_on_with_skip_keeping_top(graph: Graph) -> None:
    await graph.user("alice")
    made = set()
    for n in range(23):
        created = await graph.raw.post(f"{graph.api}/{ALICE}/contacts", json={"givenName": f"C{n}"})
        assert created.status_code == 201
        made.add(created.json()["id"])
    first = (await graph.raw.get(f"{graph.api}/{ALICE}/contacts?$top=5")).json()
    assert len(first["value"]) == 5
    items, links = await _follow(graph, f"{graph.api}/{ALICE}/contacts?$top=5")
    assert len(items) == 23 and {i["id"] for i in items} == made
    assert len(links) == 4
    for n, link in enumerate(links, start=1):
        assert link.startswith(f"{graph.api}/{ALICE}/contacts?")
        assert _params(link) == {"$top": ["5"], "$skip": [str(5 * n)]}


async def test_next_link_keeps_the_other_query_options(graph: Graph) -> None:
    await graph.user("alice")
    for n in range(7):
        name = "Keep" if n % 2 == 0 else "Drop"
        await graph.raw.post(f"{graph.api}/{ALICE}/contacts", json={"givenName": f"{name}{n}"})
    url = (
        f"{graph.api}/{ALICE}/contacts?$top=2&$select=givenName&$count=true"
        "&$filter=startswith(givenName,'Keep')&$orderby=givenName desc"
    )
    first = (await graph.raw.get(url)).json()
    assert first["@odata.count"] == 4
    params = _params(first["@odata.nextLink"])
    assert params["$top"] == ["2"] and params["$skip"] == ["2"]
    assert params["$select"] == ["givenName"]
    assert params["$filter"] == ["startswith(givenName,'Keep')"]
    assert params["$orderby"] == ["givenName desc"]
    items, _ = await _follow(graph, url)
    assert [i["givenName"] for i in items] == ["Keep6", "Keep4", "Keep2", "Keep0"]
    assert all(set(i) <= {"id", "@odata.etag", "givenName"} for i in items)


async def test_the_sdk_follows_the_next_link_through_every_contact(graph: Graph) -> None:
    await graph.user("alice")
    me = graph.sdk.users.by_user_id("alice@contoso.test")
    for n in range(12):
        await me.contacts.post(Contact(given_name=f"Sdk{n}"))
    config = ContactsRequestBuilder.ContactsRequestBuilderGetRequestConfiguration(
        query_parameters=ContactsRequestBuilder.ContactsRequestBuilderGetQueryParameters(top=5)
    )
    page = await me.contacts.get(request_configuration=config)
    names: list[str] = []
    pages = 0
    while page is not None:
        pages += 1
        assert len(page.value or []) <= 5
        names.extend(c.given_name or "" for c in page.value or [])
        if not page.odata_next_link:
            break
        page = await me.contacts.with_url(page.odata_next_link).get()
    assert pages == 3 and sorted(names) == sorted(f"Sdk{n}" for n in range(12))


@pytest.mark.parametrize("kind", ["messages", "folder messages", "events", "tasks"])
async def test_every_outlook_collection_pages_on_under_top(graph: Graph, kind: str) -> None:
    await graph.user("alice")
    base = f"{graph.api}/{ALICE}"
    if kind == "tasks":
        collection = f"{base}/todo/lists/{await _task_list(graph)}/tasks"
    elif kind == "folder messages":
        collection = f"{base}/mailFolders/drafts/messages"
    else:
        collection = f"{base}/{kind}"
    for n in range(12):
        if kind == "events":
            body: dict[str, Any] = _event(n)
        elif kind == "tasks":
            body = {"title": f"Task {n}"}
        else:
            body = {"subject": f"Mail {n}"}
        target = f"{base}/messages" if kind == "folder messages" else collection
        assert (await graph.raw.post(target, json=body)).status_code == 201
    items, links = await _follow(graph, f"{collection}?$top=5")
    assert len(items) == 12 and len({i["id"] for i in items}) == 12
    assert [_params(link)["$skip"] for link in links] == [["5"], ["10"]]
    assert all(_params(link)["$top"] == ["5"] for link in links)


async def test_calendar_view_pages_on_under_top(graph: Graph) -> None:
    await graph.user("alice")
    for n in range(7):
        await graph.raw.post(f"{graph.api}/{ALICE}/events", json=_event(n))
    window = "startDateTime=2030-01-01T00:00:00Z&endDateTime=2030-02-01T00:00:00Z"
    items, links = await _follow(graph, f"{graph.api}/{ALICE}/calendarView?{window}&$top=3")
    assert [i["subject"] for i in items] == [f"Meeting {n:02}" for n in range(7)]
    assert len(links) == 2
    params = _params(links[0])
    assert params["$top"] == ["3"] and params["$skip"] == ["3"]
    assert params["startDateTime"] == ["2030-01-01T00:00:00Z"]


async def test_default_page_size_and_maxpagesize_page_on_too(graph: Graph) -> None:
    await graph.user("alice")
    for n in range(12):
        await graph.raw.post(f"{graph.api}/{ALICE}/contacts", json={"givenName": f"D{n}"})
    first = (await graph.raw.get(f"{graph.api}/{ALICE}/contacts")).json()
    assert len(first["value"]) == 10 and _params(first["@odata.nextLink"]) == {"$skip": ["10"]}
    small = await graph.raw.get(
        f"{graph.api}/{ALICE}/contacts", headers={"Prefer": "odata.maxpagesize=4"}
    )
    assert len(small.json()["value"]) == 4 and "@odata.nextLink" in small.json()
    exact = (await graph.raw.get(f"{graph.api}/{ALICE}/contacts?$top=12")).json()
    assert len(exact["value"]) == 12 and "@odata.nextLink" not in exact


async def test_users_page_with_top_and_skiptoken(graph: Graph) -> None:
    for name in ("alice", "bob", "carol", "dave", "erin"):
        await graph.user(name)
    items, links = await _follow(graph, f"{graph.api}/users?$top=2")
    assert sorted(u["displayName"] for u in items) == ["Alice", "Bob", "Carol", "Dave", "Erin"]
    assert len(links) == 2
    for link in links:
        params = _params(link)
        assert params["$top"] == ["2"] and set(params) == {"$top", "$skiptoken"}


@pytest.mark.parametrize(
    ("path", "query"),
    [
        (f"{ALICE}/contacts", "$top=0"),
        (f"{ALICE}/contacts", "$top=ten"),
        (f"{ALICE}/contacts", "$skip=-5"),
        (f"{ALICE}/contacts", "$skip=x"),
        (f"{ALICE}/events", "$top=1.5"),
        ("users", "$top=1000"),
        ("users", "$skip=2"),
        ("users", "$skiptoken=not-a-token"),
    ],
)
async def test_malformed_paging_options_are_400(graph: Graph, path: str, query: str) -> None:
    await graph.user("alice")
    answer = await graph.raw.get(f"{graph.api}/{path}?{query}")
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["code"] and error["message"] and error["innerError"]["request-id"]
