"""Where the SDK has no way: subscriptions and notifications, $batch, control API, garbage."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from emulators.graph.__main__ import parse_args

from .conftest import Graph


@dataclass
class Receiver:
    """A webhook endpoint in the test: echoes validation tokens, records notifications."""

    url: str
    notes: list[dict[str, Any]] = field(default_factory=list)
    fail_first: int = 0
    echo: bool = True

    async def wait(self, count: int) -> list[dict[str, Any]]:
        for _ in range(200):
            if len(self.notes) >= count:
                return self.notes
            await asyncio.sleep(0.02)
        raise AssertionError(f"only {len(self.notes)} notifications arrived")


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    box = Receiver("")

    async def hook(request: web.Request) -> web.Response:
        token = request.query.get("validationToken")
        if token is not None:
            return web.Response(text=token if box.echo else "nope", content_type="text/plain")
        if box.fail_first > 0:
            box.fail_first -= 1
            return web.Response(status=503)
        box.notes.extend((await request.json())["value"])
        return web.Response(status=202)

    app = web.Application()
    app.router.add_post("/hook", hook)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    box.url = str(server.make_url("/hook"))
    yield box
    await server.close()


def _expiry(minutes: int) -> str:
    return (datetime.now(UTC) + timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")


async def _subscribe(graph: Graph, receiver: Receiver, **extra: Any) -> Any:
    body = {
        "changeType": "created,updated,deleted",
        "notificationUrl": receiver.url,
        "lifecycleNotificationUrl": receiver.url,
        "resource": "users/alice@contoso.test/mailFolders('Inbox')/messages",
        "expirationDateTime": _expiry(60),
        "clientState": "s3cret",
    }
    body.update(extra)
    return await graph.raw.post(f"{graph.api}/subscriptions", json=body)


async def test_subscription_handshake_notifications_retry_and_lifecycle(
    graph: Graph, receiver: Receiver
) -> None:
    uid = await graph.user("alice")
    reply = await _subscribe(graph, receiver)
    assert reply.status_code == 201, reply.text
    sub = reply.json()
    receiver.fail_first = 2
    made = await graph.raw.post(
        f"{graph.api}/users/{uid}/mailFolders/inbox/messages", json={"subject": "x"}
    )
    assert made.status_code == 201
    (note,) = await receiver.wait(1)
    assert note["subscriptionId"] == sub["id"] and note["clientState"] == "s3cret"
    assert note["changeType"] == "created" and note["tenantId"]
    data = note["resourceData"]
    assert data["id"] == made.json()["id"] and data["@odata.type"] == "#Microsoft.Graph.Message"
    assert data["@odata.etag"] == made.json()["@odata.etag"]
    renewed = await graph.raw.patch(
        f"{graph.api}/subscriptions/{sub['id']}", json={"expirationDateTime": _expiry(120)}
    )
    assert renewed.status_code == 200
    fired = await graph.raw.post(
        f"{graph.root}/_emulator/lifecycle",
        json={"subscriptionId": sub["id"], "lifecycleEvent": "reauthorizationRequired"},
    )
    assert fired.status_code == 202
    notes = await receiver.wait(2)
    assert notes[1]["lifecycleEvent"] == "reauthorizationRequired"
    assert (await graph.raw.delete(f"{graph.api}/subscriptions/{sub['id']}")).status_code == 204
    listed = await graph.raw.get(f"{graph.api}/subscriptions")
    assert listed.json()["value"] == []


async def test_subscription_rejections(graph: Graph, receiver: Receiver) -> None:
    await graph.user("alice")
    too_long = await _subscribe(graph, receiver, expirationDateTime=_expiry(10_081))
    assert too_long.status_code == 400
    with_data = await _subscribe(
        graph,
        receiver,
        includeResourceData=True,
        encryptionCertificate="MIIB",
        encryptionCertificateId="c1",
        expirationDateTime=_expiry(1_441),
    )
    assert with_data.status_code == 400
    state = await _subscribe(graph, receiver, clientState="x" * 129)
    assert state.status_code == 400
    kind = await _subscribe(graph, receiver, changeType="created,exploded")
    assert kind.status_code == 400
    resource = await _subscribe(graph, receiver, resource="users/alice@contoso.test/drives")
    assert resource.status_code == 400
    receiver.echo = False
    bad_echo = await _subscribe(graph, receiver)
    assert bad_echo.status_code == 400
    assert bad_echo.json()["error"]["code"] == "InvalidRequest"


async def test_batch_dependencies_limits_and_throttle_counting(graph: Graph) -> None:
    await graph.user("alice")
    base = "/users/alice@contoso.test"
    body = {
        "requests": [
            {
                "id": "1",
                "method": "POST",
                "url": f"{base}/contacts",
                "headers": {"Content-Type": "application/json"},
                "body": {"givenName": "Batch"},
            },
            {"id": "2", "method": "GET", "url": f"{base}/contacts/missing"},
            {"id": "3", "method": "GET", "url": f"{base}/contacts?$top=1", "dependsOn": ["1"]},
            {"id": "4", "method": "DELETE", "url": f"{base}/contacts/x", "dependsOn": ["2"]},
        ]
    }
    reply = await graph.raw.post(f"{graph.api}/$batch", json=body)
    assert reply.status_code == 200
    status = {r["id"]: r["status"] for r in reply.json()["responses"]}
    assert status == {"1": 201, "2": 404, "3": 200, "4": 424}
    stats = (await graph.raw.get(f"{graph.root}/_emulator/stats")).json()
    assert stats["by_method"]["POST"] >= 2 and stats["by_status"]["404"] == 1
    many = {"requests": [{"id": str(i), "method": "GET", "url": base} for i in range(21)]}
    assert (await graph.raw.post(f"{graph.api}/$batch", json=many)).status_code == 400


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/users", b"{not json"),
        ("/users", b'{"userPrincipalName": 5}'),
        ("/users/alice@contoso.test/contacts", b'{"givenName": ["x"]}'),
        ("/users/alice@contoso.test/contacts", b'{"noSuchField": "x"}'),
        ("/users/alice@contoso.test/events", b'{"subject": "no times"}'),
        ("/users/alice@contoso.test/sendMail", b'{"message": "x"}'),
        ("/$batch", b'{"requests": "x"}'),
    ],
)
async def test_garbage_bodies_are_400(graph: Graph, path: str, body: bytes) -> None:
    await graph.user("alice")
    reply = await graph.raw.post(
        f"{graph.api}{path}", content=body, headers={"Content-Type": "application/json"}
    )
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"]["code"]


@pytest.mark.parametrize(
    "query",
    [
        "$top=1001",
        "$top=-1",
        "$top=abc",
        "$filter=subject eq",
        "$filter=bogus eq 'x'",
        "$select=nope",
        "$expand=attachments",
        "$wat=1",
        "$orderby=subject sideways",
    ],
)
async def test_bad_queries_are_400(graph: Graph, query: str) -> None:
    await graph.user("alice")
    reply = await graph.raw.get(f"{graph.api}/users/alice@contoso.test/messages?{query}")
    assert reply.status_code == 400 and reply.json()["error"]["code"] == "BadRequest"


async def test_filter_on_simple_fields(graph: Graph) -> None:
    await graph.user("alice")
    url = f"{graph.api}/users/alice@contoso.test/messages"
    for subject, read in (("Alpha", True), ("Beta", False), ("Alphabet", False)):
        await graph.raw.post(url, json={"subject": subject, "isRead": read})
    query = "startswith(subject,'alpha') and isRead eq false or subject eq 'Beta'"
    reply = await graph.raw.get(url, params={"$filter": query, "$select": "subject"})
    assert sorted(m["subject"] for m in reply.json()["value"]) == ["Alphabet", "Beta"]
    dated = await graph.raw.get(url, params={"$filter": "createdDateTime ge 2000-01-01T00:00:00Z"})
    assert len(dated.json()["value"]) == 3


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b'{"status": 418, "rate": 1}',
        b'{"status": 503, "rate": 2}',
        b'{"status": 503, "rate": 1, "retry_after": -1}',
        b'{"status": 503, "rate": 1, "extra": 1}',
    ],
)
async def test_bad_fault_bodies_are_400(graph: Graph, body: bytes) -> None:
    reply = await graph.raw.post(f"{graph.root}/_emulator/faults", content=body)
    assert reply.status_code == 400 and reply.json()["error"]["message"]


async def test_faults_fire_and_clear_and_reset(graph: Graph) -> None:
    await graph.user("alice")
    url = f"{graph.api}/users/alice@contoso.test/contacts"
    on = await graph.raw.post(
        f"{graph.root}/_emulator/faults",
        json={"status": 503, "rate": 1, "retry_after": 7, "mailbox": "alice@contoso.test"},
    )
    assert on.status_code == 200
    failed = await graph.raw.get(url)
    assert failed.status_code == 503 and failed.headers["Retry-After"] == "7"
    await graph.raw.post(f"{graph.root}/_emulator/faults", json={"rate": 0})
    assert (await graph.raw.get(url)).status_code == 200
    bad_lifecycle = await graph.raw.post(
        f"{graph.root}/_emulator/lifecycle", json={"subscriptionId": "x", "lifecycleEvent": "boom"}
    )
    assert bad_lifecycle.status_code in (400, 404)
    assert (await graph.raw.post(f"{graph.root}/_emulator/reset")).status_code == 200
    assert (await graph.raw.get(url)).status_code == 404


async def test_a_deleted_user_is_404_until_created_again_with_a_new_mailbox(
    graph: Graph, receiver: Receiver
) -> None:
    old_id = await graph.user("gone")
    upn = "gone@contoso.test"
    lists = await graph.raw.get(f"{graph.api}/users/{upn}/todo/lists")
    old_list = lists.json()["value"][0]["id"]
    sub = await graph.raw.post(
        f"{graph.api}/subscriptions",
        json={
            "changeType": "created",
            "notificationUrl": receiver.url,
            "resource": f"users/{upn}/messages",
            "expirationDateTime": _expiry(60),
        },
    )
    assert sub.status_code == 201, sub.text
    assert (await graph.raw.delete(f"{graph.api}/users/{upn}")).status_code == 204
    for path in (f"users/{upn}/todo/lists", f"users/{old_id}/contacts", f"users/{upn}"):
        gone = await graph.raw.get(f"{graph.api}/{path}")
        assert gone.status_code == 404 and gone.json()["error"]["code"]
    assert (await graph.raw.get(f"{graph.api}/subscriptions/{sub.json()['id']}")).status_code == 404
    assert (await graph.raw.delete(f"{graph.api}/users/{upn}")).status_code == 404
    new_id = await graph.user("gone")
    assert new_id != old_id
    again = await graph.raw.get(f"{graph.api}/users/{upn}/todo/lists/{old_list}/tasks")
    assert again.status_code == 404


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (401, "InvalidAuthenticationToken"),
        (403, "ErrorAccessDenied"),
        (404, "MailboxNotEnabledForRESTAPI"),
    ],
)
async def test_mailbox_level_faults(graph: Graph, status: int, code: str) -> None:
    await graph.user("alice")
    on = await graph.raw.post(
        f"{graph.root}/_emulator/faults",
        json={"status": status, "rate": 1, "mailbox": "alice@contoso.test"},
    )
    assert on.status_code == 200
    failed = await graph.raw.get(f"{graph.api}/users/alice@contoso.test/contacts")
    assert failed.status_code == status and failed.json()["error"]["code"] == code


@pytest.mark.parametrize(
    "argv",
    [
        ["--port", "0"],
        ["--port", "http"],
        ["--throttle-scale", "-1"],
        ["--notify-time-scale", "nan"],
        ["--base-url", "ftp://x"],
        ["--host", " "],
    ],
)
def test_bad_cli_args_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse_args(argv)
    assert exit_info.value.code == 2
    assert "error" in capsys.readouterr().err


def test_cli_args_build_config() -> None:
    host, port, config = parse_args(
        [
            "--port",
            "9001",
            "--throttle-scale",
            "0.5",
            "--no-throttle",
            "--notify-time-scale",
            "0.01",
        ]
    )
    assert (host, port) == ("127.0.0.1", 9001)
    assert config.throttle.requests_per_window == 5000 and config.throttle.max_concurrent == 2
    assert not config.throttle_enabled and config.notify_time_scale == 0.01


async def test_subscription_requests_count_against_the_subscribed_mailbox(
    receiver: Receiver,
) -> None:
    """Outlook's limits are per app and mailbox: creating subscriptions for one mailbox uses
    its budget, not a bucket every mailbox's subscriptions share (which stopped a worker with
    thousands of mailboxes at 10,000 subscriptions)."""
    from emulators.graph import EmulatorConfig, ThrottleLimits

    from .conftest import start

    config = EmulatorConfig(throttle=ThrottleLimits(requests_per_window=3, window_seconds=30))
    async for tight in start(config):
        alice = await tight.user("alice")
        await tight.user("bob")
        for resource in ("messages", "contacts", "events"):
            made = await _subscribe(
                tight, receiver, resource=f"users/alice@contoso.test/{resource}"
            )
            assert made.status_code == 201, made.text
        over = await _subscribe(tight, receiver, resource="users/alice@contoso.test/messages")
        assert over.status_code == 429, over.text  # alice's budget, spent
        bob = await _subscribe(tight, receiver, resource="users/bob@contoso.test/messages")
        assert bob.status_code == 201, bob.text  # bob's is his own
        renewed = await tight.raw.patch(
            f"{tight.api}/subscriptions/{bob.json()['id']}",
            json={"expirationDateTime": _expiry(90)},
        )
        assert renewed.status_code == 200, renewed.text
        stats = (await tight.raw.get(f"{tight.root}/_emulator/stats")).json()
        assert stats["by_mailbox"][alice] == 4  # three created, one refused
