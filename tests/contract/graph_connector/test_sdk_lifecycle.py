"""Against the Graph emulator: the real msgraph-sdk client reads back what the writer created
(correlation stamp included), and lifecycle events reach the subscription manager through the
receiver."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import httpx
import pytest

from connectors.graph.client import StaticTokenCredential, build_graph_client
from connectors.graph.mapping import CORRELATION_PROPERTY_ID
from connectors.graph.notifications import NotificationRecord
from connectors.graph.receiver import ReceiverConfig, ReceiverServer, create_receiver_app
from connectors.graph.subscriptions import (
    ClientStateKey,
    SubscriptionManager,
    SubscriptionRegistry,
)
from connectors.graph.transport import GraphTransport, token_provider
from connectors.graph.writer import GraphWriter
from connectors.store import MemoryCursorStore, MemoryPublisher
from schemas.models import WriteCommand
from tests.contract.graph_connector.emulator import TOKEN, GraphEmulator, start_emulator


@pytest.fixture(scope="module")
def emulator() -> Iterator[GraphEmulator]:
    yield from start_emulator()


async def test_sdk_reads_back_the_stamped_contact(emulator: GraphEmulator) -> None:
    mailbox = await emulator.new_mailbox()
    credential = StaticTokenCredential(TOKEN)
    cid = f"corr-{uuid.uuid4().hex}"
    async with httpx.AsyncClient() as http:
        writer = GraphWriter(GraphTransport(http, emulator.base, token_provider(credential)))
        (out,) = await writer.apply(
            [
                WriteCommand(
                    command_id="c1",
                    mailbox_id=mailbox,
                    org_id="org",
                    target="outlook",
                    kind="contact",
                    action="create",
                    correlation_id=cid,
                    caused_by="t",
                    issued_at="2026-01-01T00:00:00Z",
                    fields={"firstname": "Sdk", "lastname": "Reader"},
                )
            ]
        )
        assert out.status == "applied" and out.target_id
        client = build_graph_client(emulator.base, credential, http_client=http)
        contact = await client.users.by_user_id(mailbox).contacts.by_contact_id(out.target_id).get()
        assert contact is not None
        assert (contact.given_name, contact.surname) == ("Sdk", "Reader")
        assert contact.change_key == out.version
        expand = f"singleValueExtendedProperties($filter=id eq '{CORRELATION_PROPERTY_ID}')"
        raw = await emulator.call(
            "GET",
            f"users/{mailbox}/contacts/{out.target_id}",
            params={"$expand": expand},
        )
        props = raw.json()["singleValueExtendedProperties"]
        assert [p["value"] for p in props] == [cid]


async def test_lifecycle_events_flow_to_the_manager(emulator: GraphEmulator) -> None:
    mailbox = await emulator.new_mailbox()
    store = MemoryCursorStore()
    publisher = MemoryPublisher()
    state_key = ClientStateKey.derive("contract test clientState key (32+ chars)")
    receiver = ReceiverServer(
        create_receiver_app(
            ReceiverConfig(topic="n"), SubscriptionRegistry(store, state_key), publisher
        )
    )
    await receiver.start()
    try:
        async with httpx.AsyncClient() as http:

            async def token() -> str:
                return TOKEN

            manager = SubscriptionManager(
                GraphTransport(http, emulator.base, token),
                store,
                key=state_key,
                notification_url=f"{receiver.url}/notifications",
                lifecycle_url=f"{receiver.url}/lifecycle",
                resources=("events",),
            )
            (sub,) = await manager.ensure(mailbox)
            assert sub.subscription_id
            await emulator.control(
                "lifecycle",
                {"subscriptionId": sub.subscription_id, "lifecycleEvent": "subscriptionRemoved"},
            )
            for _ in range(50):
                if publisher.on("n"):
                    break
                await asyncio.sleep(0.1)
            ((key, value),) = publisher.on("n")
            assert key == mailbox and value is not None
            record = NotificationRecord.from_json(value)
            assert record.lifecycle_event == "subscriptionRemoved"
            await manager.handle_lifecycle(record)
            now = manager.registry.get(mailbox, "events")
            assert now is not None and now.subscription_id not in (None, sub.subscription_id)
    finally:
        await receiver.stop()
