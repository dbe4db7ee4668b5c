"""The writer and the subscription manager against a small in-memory Graph (a real server)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import orjson
import pytest

from connectors.graph.notifications import (
    RESOURCE_KINDS,
    LifecycleEvent,
    NotificationRecord,
    ResourceKind,
)
from connectors.graph.receiver import ReceiverConfig, ReceiverServer, create_receiver_app
from connectors.graph.subscriptions import (
    ClientStateKey,
    MissedCallback,
    SubscriptionManager,
    SubscriptionRecord,
    SubscriptionRegistry,
    new_client_state,
    subscription_key,
)
from connectors.graph.transport import GraphTransport
from connectors.graph.writer import GraphWriter
from connectors.http import RetryPolicy
from connectors.store import MemoryCursorStore, MemoryPublisher
from schemas.models import CommandAction, WriteCommand
from schemas.types import Projection
from tests.unit.graph_connector.fake_graph import FakeGraph

KEY = ClientStateKey.derive("unit-test client state key, 32+ chars long")


@dataclass
class Env:
    graph: FakeGraph
    transport: GraphTransport
    receiver: ReceiverServer
    store: MemoryCursorStore
    publisher: MemoryPublisher


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    graph = FakeGraph()
    server = ReceiverServer(graph.app())
    await server.start()
    store = MemoryCursorStore()
    publisher = MemoryPublisher()
    receiver = ReceiverServer(
        create_receiver_app(ReceiverConfig(topic="n"), SubscriptionRegistry(store, KEY), publisher)
    )
    await receiver.start()
    http = httpx.AsyncClient()

    async def token() -> str:
        return "t"

    transport = GraphTransport(
        http, f"{server.url}/v1.0", token, policy=RetryPolicy(attempts=3, base_delay=0.01)
    )
    yield Env(graph, transport, receiver, store, publisher)
    await http.aclose()
    await receiver.stop()
    await server.stop()


def cmd(
    action: CommandAction,
    cid: str,
    fields: Projection | None = None,
    target: str | None = None,
    if_match: str | None = None,
) -> WriteCommand:
    return WriteCommand(
        command_id=uuid.uuid4().hex,
        mailbox_id="m1",
        org_id="org",
        target="outlook",
        kind="contact",
        action=action,
        correlation_id=cid,
        caused_by="test",
        issued_at="2026-01-01T00:00:00Z",
        target_id=target,
        if_match=if_match,
        fields=fields or {},
    )


async def test_creates_are_stamped_and_never_duplicated(env: Env) -> None:
    writer = GraphWriter(env.transport)
    a = cmd("create", "cid-a", {"firstname": "Ann", "lastname": "Lee"})
    a2 = cmd("create", "cid-a", {"firstname": "Ann", "lastname": "Lee"})
    out1, out2 = await writer.apply([a, a2])
    assert out1.status == out2.status == "applied"
    assert out1.target_id == out2.target_id
    (out3,) = await GraphWriter(env.transport).apply([a])  # a retry after a crash
    assert out3.target_id == out1.target_id
    assert out3.version == out1.version
    assert len(env.graph.contacts) == 1
    (item,) = env.graph.contacts.values()
    assert item["givenName"] == "Ann"
    assert "cid-a" in [p["value"] for p in item["singleValueExtendedProperties"]]


async def test_update_uses_if_match_and_stale_is_a_conflict(env: Env) -> None:
    writer = GraphWriter(env.transport)
    (created,) = await writer.apply([cmd("create", "cid-b", {"firstname": "B"})])
    assert created.version
    upd = cmd("update", "cid-b", {"firstname": "B2"}, created.target_id, created.version)
    (ok,) = await writer.apply([upd])
    assert ok.status == "applied"
    assert ok.version and ok.version != created.version
    (stale,) = await writer.apply([upd])
    assert stale.status == "conflict"
    assert stale.error_code == "ErrorIrresolvableConflict"
    assert env.graph.contacts[str(created.target_id)]["givenName"] == "B2"


async def test_delete_then_delete_again(env: Env) -> None:
    writer = GraphWriter(env.transport)
    (created,) = await writer.apply([cmd("create", "cid-c", {"firstname": "C"})])
    delete = cmd("delete", "cid-c", target=created.target_id)
    (first,) = await writer.apply([delete])
    (again,) = await writer.apply([delete])
    assert (first.status, again.status) == ("applied", "not_found")
    assert env.graph.contacts == {}


async def test_batches_hold_at_most_20_and_throttling_is_retried(env: Env) -> None:
    env.graph.throttle_next = 5
    commands = [cmd("create", f"cid-{i}", {"firstname": f"N{i}"}) for i in range(45)]
    outcomes = await GraphWriter(env.transport).apply(commands)
    assert [o.command_id for o in outcomes] == [c.command_id for c in commands]
    assert all(o.status == "applied" for o in outcomes)
    assert len(env.graph.contacts) == 45
    assert len({o.target_id for o in outcomes}) == 45
    assert env.graph.requests.count("BATCH") >= 6  # 3 lookup + 3 create batches at least


async def test_bad_fields_fail_that_command_only(env: Env) -> None:
    good = cmd("create", "cid-g", {"firstname": "G"})
    bad = cmd("create", "cid-x", {"no_such_field": 1})
    cats = cmd("set_categories", "cid-g", {"categories": "nope"}, target="AAMk1")
    out = await GraphWriter(env.transport).apply([good, bad, cats])
    assert [o.status for o in out] == ["applied", "failed", "failed"]
    assert out[1].error_code == "invalid_fields"
    assert len(env.graph.contacts) == 1


def manager(
    env: Env,
    *,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    on_missed: MissedCallback | None = None,
    resources: Sequence[ResourceKind] = RESOURCE_KINDS,
    key: ClientStateKey = KEY,
) -> SubscriptionManager:
    return SubscriptionManager(
        env.transport,
        env.store,
        key=key,
        notification_url=f"{env.receiver.url}/notifications",
        lifecycle_url=f"{env.receiver.url}/lifecycle",
        now=now,
        on_missed=on_missed,
        resources=resources,
    )


async def test_one_subscription_per_resource_survives_restart(env: Env) -> None:
    recs = await manager(env).ensure("m1")
    assert sorted(r.resource for r in recs) == ["contacts", "events", "messages"]
    states = env.graph.client_states  # what Graph was sent, by subscription id
    assert len(set(states.values())) == 3
    assert all(len(s) <= 128 for s in states.values())
    for r in recs:
        assert r.subscription_id
        assert r.client_state_hmac == KEY.digest(states[r.subscription_id])
    assert len(env.graph.subscriptions) == 3
    again = await manager(env).ensure("m1")  # a restart: state from the store
    assert [r.subscription_id for r in again] == [r.subscription_id for r in recs]
    assert len(env.graph.subscriptions) == 3
    assert {s["resource"] for s in env.graph.subscriptions.values()} == {
        "users/m1/messages",
        "users/m1/events",
        "users/m1/contacts",
    }
    # a notification with the stored clientState passes the receiver
    rec = recs[0]
    assert rec.subscription_id is not None
    async with httpx.AsyncClient() as http:
        body = {
            "value": [
                {
                    "subscriptionId": rec.subscription_id,
                    "clientState": states[rec.subscription_id],
                    "changeType": "created",
                    "resource": "x",
                }
            ]
        }
        resp = await http.post(f"{env.receiver.url}/notifications", json=body)
    assert resp.status_code == 202


async def test_renewal_falls_due_before_expiry(env: Env) -> None:
    await manager(env).ensure("m1")
    later = datetime.now(UTC) + timedelta(minutes=4230) - timedelta(hours=11)
    before = {r.subscription_id: r.expires_at for r in manager(env).registry.records()}
    renewed = await manager(env, now=lambda: later).ensure("m1")
    assert {r.subscription_id for r in renewed} == set(before)
    assert all(r.expires_at != before[r.subscription_id] for r in renewed)
    assert sum(1 for r in env.graph.requests if r.startswith("PATCH /subscriptions")) == 3


async def test_lifecycle_events(env: Env) -> None:
    missed: list[tuple[str, ResourceKind]] = []

    async def on_missed(mailbox: str, resource: ResourceKind) -> None:
        missed.append((mailbox, resource))

    mgr = manager(env, on_missed=on_missed)
    (msgs, *_rest) = await mgr.ensure("m1")
    assert msgs.subscription_id

    def event(ev: LifecycleEvent, sid: str) -> NotificationRecord:
        return NotificationRecord("m1", "messages", sid, "2026-01-01T00:00:00Z", lifecycle_event=ev)

    await mgr.handle_lifecycle(event("reauthorizationRequired", msgs.subscription_id))
    assert env.graph.requests[-1] == f"PATCH /subscriptions/{msgs.subscription_id}"
    await mgr.handle_lifecycle(event("missed", msgs.subscription_id))
    assert missed == [("m1", "messages")]
    del env.graph.subscriptions[msgs.subscription_id]
    await mgr.handle_lifecycle(event("subscriptionRemoved", msgs.subscription_id))
    now = mgr.registry.get("m1", "messages")
    assert now and now.subscription_id not in (None, msgs.subscription_id)
    assert now.client_state_hmac != msgs.client_state_hmac
    assert len(env.graph.subscriptions) == 3


async def test_pending_subscription_is_adopted_not_duplicated(env: Env) -> None:
    state = new_client_state()
    env.graph.subscriptions["sub-old"] = {
        "id": "sub-old",
        "resource": "users/m1/messages",
        "notificationUrl": f"{env.receiver.url}/notifications",
        "expirationDateTime": "2099-01-01T00:00:00Z",
    }
    pending = SubscriptionRecord("m1", "messages", KEY.digest(state), KEY.key_id)
    await env.store.put(subscription_key("m1", "messages"), pending.to_json())
    (rec,) = await manager(env, resources=("messages",)).ensure("m1")
    assert (rec.subscription_id, rec.client_state_hmac) == ("sub-old", KEY.digest(state))
    assert len(env.graph.subscriptions) == 1


async def _notify(env: Env, sid: str, state: str) -> int:
    item = {"subscriptionId": sid, "clientState": state, "changeType": "updated", "resource": "x"}
    async with httpx.AsyncClient() as http:
        resp = await http.post(f"{env.receiver.url}/notifications", json={"value": [item]})
    return resp.status_code


async def test_client_state_is_sent_to_graph_but_never_stored_or_logged(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    recs = await manager(env).ensure("m1")
    stored = " ".join(v for _k, v in env.store.items(""))
    assert len(env.graph.client_states) == 3
    for rec in recs:
        assert rec.subscription_id
        state = env.graph.client_states[rec.subscription_id]
        assert state not in stored
        assert state not in caplog.text
        assert '"client_state"' not in stored
        assert await _notify(env, rec.subscription_id, state) == 202
        assert await _notify(env, rec.subscription_id, state + "x") == 403
    assert len(env.publisher.on("n")) == 3


async def test_old_plaintext_records_still_verify_and_are_rewritten_hashed(env: Env) -> None:
    state = new_client_state()
    old = {
        "mailbox_id": "m1",
        "resource": "messages",
        "client_state": state,
        "subscription_id": "sub-9",
        "expires_at": "2099-01-01T00:00:00Z",
    }
    env.graph.subscriptions["sub-9"] = {"id": "sub-9", "resource": "users/m1/messages"}
    key = subscription_key("m1", "messages")
    await env.store.put(key, orjson.dumps(old).decode())
    # the receiver accepts the old record's clientState before any migration ran
    assert await _notify(env, "sub-9", state) == 202
    assert await _notify(env, "sub-9", "not-it") == 403
    (rec,) = await manager(env, resources=("messages",)).ensure("m1")
    assert (rec.subscription_id, rec.client_state_hmac) == ("sub-9", KEY.digest(state))
    raw = env.store.get(key)
    assert raw is not None and state not in raw
    assert orjson.loads(raw)["client_state_hmac"] == KEY.digest(state)
    assert not any(r.startswith("POST /subscriptions") for r in env.graph.requests)
    assert await _notify(env, "sub-9", state) == 202  # no subscription lost


async def test_records_under_another_key_are_recreated(env: Env) -> None:
    (old,) = await manager(env, resources=("messages",)).ensure("m1")
    assert old.subscription_id
    other = ClientStateKey.derive("a rotated client state key, also 32+ chars")
    (new,) = await manager(env, resources=("messages",), key=other).ensure("m1")
    assert new.subscription_id not in (None, old.subscription_id)
    assert new.key_id == other.key_id != KEY.key_id
    assert list(env.graph.subscriptions) == [new.subscription_id]  # the old one was deleted
