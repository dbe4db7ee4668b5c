"""Tracked folders are read by delta like Inbox, against the Graph emulator in this process:
what the reader publishes carries the message's folder and tracking keys as typed attributes;
mail moved into a tracked folder is read there; a tracked folder deleted in Outlook is skipped
(the mailbox keeps syncing) while a mailbox that is gone still fails."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from aiohttp.test_utils import TestServer

from connectors.errors import NotFoundError
from connectors.graph.reader import (
    GraphDeltaSource,
    folders_read,
    mailbox_streams,
    message_folders,
)
from connectors.graph.sync import OutlookReader
from connectors.graph.transport import GraphTransport
from connectors.http import RetryPolicy
from connectors.store import MemoryCursorStore, MemoryPublisher
from emulators.graph import EmulatorConfig, create_app
from schemas.codec import loads
from schemas.models import ItemChange
from schemas.token import TrackingTokenFormat

pytestmark = pytest.mark.timeout(60)

TOKEN = "tracked-folder-token"
UPN = "ada@contoso.test"


@dataclass
class Env:
    http: httpx.AsyncClient
    root: str
    transport: GraphTransport
    publisher: MemoryPublisher

    async def graph(self, method: str, path: str, body: Any = None) -> Any:
        resp = await self.http.request(method, f"{self.root}/v1.0/{path}", json=body)
        assert resp.status_code < 300, resp.text
        return resp.json() if resp.content else None

    async def reader(
        self, tracked: tuple[str, ...], token: TrackingTokenFormat | None = None
    ) -> tuple[OutlookReader, list[GraphDeltaSource]]:
        streams = await mailbox_streams(
            self.transport, UPN, folders=("inbox",), tracked_folders=tracked, todo=False
        )
        sources = [
            GraphDeltaSource(
                self.transport,
                s,
                org_id="o",
                owner_address=UPN,
                token_format=token or TrackingTokenFormat(),
            )
            for s in streams
        ]

        async def streams_for(mailbox_id: str) -> list[GraphDeltaSource]:
            return sources

        reader = OutlookReader(
            streams_for, self.publisher, MemoryCursorStore(), changes_topic="changes"
        )
        return reader, sources

    def changes(self) -> list[ItemChange]:
        return [loads(ItemChange, v) for _, v in self.publisher.on("changes") if v is not None]


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    server = TestServer(create_app(EmulatorConfig()), host="127.0.0.1")
    await server.start_server()
    root = str(server.make_url("")).rstrip("/")

    async def token() -> str:
        return TOKEN

    async with httpx.AsyncClient(timeout=10, headers={"Authorization": f"Bearer {TOKEN}"}) as http:
        transport = GraphTransport(
            http, f"{root}/v1.0", token, policy=RetryPolicy(attempts=1), timeout_s=5
        )
        try:
            e = Env(http, root, transport, MemoryPublisher())
            await e.graph("POST", "users", {"userPrincipalName": UPN, "displayName": "Ada"})
            yield e
        finally:
            await server.close()


def test_the_folders_read_are_synced_then_tracked_each_once() -> None:
    assert folders_read(("inbox", "sentitems"), ("F1", "inbox", "F2", "F1")) == (
        "inbox",
        "sentitems",
        "F1",
        "F2",
    )


async def test_a_tracked_folder_is_read_and_its_mail_says_where_it_is(env: Env) -> None:
    folder = (await env.graph("POST", f"users/{UPN}/mailFolders", {"displayName": "Fabrikam"}))[
        "id"
    ]
    other = (await env.graph("POST", f"users/{UPN}/mailFolders", {"displayName": "Misc"}))["id"]
    headers = [{"name": "In-Reply-To", "value": "<orig@crm.test>"}]
    await env.graph(
        "POST",
        f"users/{UPN}/mailFolders/{folder}/messages",
        {
            "subject": "RE: Quote TKN-0042",
            "from": {"emailAddress": {"address": "carl@fabrikam.test"}},
            "internetMessageId": "<m1@fabrikam.test>",
            "internetMessageHeaders": headers,
            "categories": ["Blue"],
        },
    )
    await env.graph("POST", f"users/{UPN}/mailFolders/{other}/messages", {"subject": "elsewhere"})
    moved = await env.graph("POST", f"users/{UPN}/mailFolders/inbox/messages", {"subject": "mv"})
    reader, sources = await env.reader((folder,), TrackingTokenFormat("TKN-"))
    assert message_folders(sources) == ("inbox", folder)
    await reader.sync_mailbox(UPN)
    (first, inbox_mail) = sorted(env.changes(), key=lambda c: c.projection.get("subject") or "")
    assert first.outlook is not None and inbox_mail.outlook is not None
    assert first.outlook.folder_id == folder
    assert first.outlook.internet_message_id == "<m1@fabrikam.test>"
    assert first.outlook.in_reply_to == "<orig@crm.test>"
    assert first.outlook.tracking_token == "TKN-0042"
    assert first.outlook.categories == ["Blue"]
    assert first.outlook.conversation_id
    assert first.projection["subject"] == "RE: Quote"  # the token went to trackingtoken
    assert first.projection["trackingtoken"] == "TKN-0042"
    assert inbox_mail.projection["subject"] == "mv" and inbox_mail.outlook.folder_id != folder
    # moved into the tracked folder: read there, with its new folder
    await env.graph("POST", f"users/{UPN}/messages/{moved['id']}/move", {"destinationId": folder})
    before = len(env.changes())
    await reader.sync_mailbox(UPN)
    new = env.changes()[before:]
    arrived = [c for c in new if c.op == "upsert"]
    assert [c.projection["subject"] for c in arrived] == ["mv"]
    assert arrived[0].outlook is not None and arrived[0].outlook.folder_id == folder
    assert all(c.projection.get("subject") != "elsewhere" for c in env.changes())


async def test_a_deleted_tracked_folder_is_skipped_not_the_mailbox(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    folder = (await env.graph("POST", f"users/{UPN}/mailFolders", {"displayName": "Gone"}))["id"]
    reader, _ = await env.reader((folder,))
    await reader.sync_mailbox(UPN)
    await env.graph("DELETE", f"users/{UPN}/mailFolders/{folder}")
    await env.graph("POST", f"users/{UPN}/mailFolders/inbox/messages", {"subject": "still read"})
    fresh, _ = await env.reader((folder,))  # and from scratch: no cursor for the folder
    with caplog.at_level(logging.WARNING, logger="connectors.graph.sync"):
        for r in (reader, reader, fresh):
            results = await r.sync_mailbox(UPN)
            assert [p.published for p in results if p.stream_id.endswith(folder)] == [0]
    subjects = [c.projection.get("subject") for c in env.changes()]
    assert subjects.count("still read") == 2  # both readers read the inbox
    warned = [r for r in caplog.records if "not found" in r.getMessage()]
    assert len(warned) == 2  # once per reader while the folder stays gone
    # a mailbox that is gone is still the mailbox's failure
    await env.graph("DELETE", f"users/{UPN}")
    with pytest.raises(NotFoundError):
        await reader.sync_mailbox(UPN)
