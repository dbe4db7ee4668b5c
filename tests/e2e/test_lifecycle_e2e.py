"""Graph lifecycle notifications end to end: the Graph emulator sends them (as Graph does) to
the subscription's lifecycleNotificationUrl, the receiver publishes them, and the worker acts.
``subscriptionRemoved``: a new subscription for the same resource, and a delta pass of every
stream of the mailbox at once (what changed without a subscription arrives without polling).
``reauthorizationRequired``: the subscription is renewed (PATCH, a later expirationDateTime).
Outlook polling is off (an hour), so only notifications and lifecycle events drive reads."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest

from pipeline.runtime import Pipeline, RuntimeOptions
from pipeline.settings import GraphSettings, ReceiverSettings, Settings
from tests.e2e.world import TOKEN, World, crm_contact_in_outlook, eventually
from tests.ports import free_port

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(240)]

NO_POLLING = RuntimeOptions(outlook_poll_s=3600.0, crm_poll_s=0.5, crm_poll_max_s=0.5)


def _webhook_settings(w: World) -> tuple[Settings, str]:
    port = free_port()
    public = f"http://127.0.0.1:{port}"
    settings = w.settings.model_copy(
        update={
            "graph": GraphSettings(
                base_url=w.settings.graph.base_url, static_token=TOKEN, notification_url=public
            ),
            "receiver": ReceiverSettings(host="127.0.0.1", port=port),
        }
    )
    return settings, public


async def _subscriptions(w: World, public: str) -> list[dict[str, Any]]:
    resp = await w.http.get(
        f"{w.graph}/v1.0/subscriptions", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert resp.status_code == 200, resp.text
    return [s for s in resp.json()["value"] if s["notificationUrl"].startswith(public)]


async def _subscription_for(w: World, public: str, resource: str) -> dict[str, Any]:
    async def found() -> dict[str, Any] | None:
        subs = [s for s in await _subscriptions(w, public) if s["resource"].endswith(resource)]
        return subs[0] if subs else None

    sub, _ = await eventually(found, 30, f"a Graph subscription to {resource}")
    return sub


async def _lifecycle(w: World, subscription_id: str, event: str) -> None:
    resp = await w.http.post(
        f"{w.graph}/_emulator/lifecycle",
        json={"subscriptionId": subscription_id, "lifecycleEvent": event},
    )
    assert resp.status_code == 202, resp.text


async def _requests_since(w: World, since: float) -> list[dict[str, Any]]:
    resp = await w.http.get(f"{w.graph}/_emulator/requests")
    assert resp.status_code == 200, resp.text
    return [r for r in resp.json()["value"] if r["started"] >= since]


async def test_subscription_removed_is_recreated_and_the_gap_is_read(world: World) -> None:
    w = world
    settings, public = _webhook_settings(w)
    async with Pipeline(settings, w.store.snapshot, NO_POLLING):
        await crm_contact_in_outlook(w, "Warm", f"Up{uuid.uuid4().hex[:6]}", "w@x.test", 90)
        old = await _subscription_for(w, public, "/contacts")

        fired = time.time()
        await _lifecycle(w, old["id"], "subscriptionRemoved")
        # Graph has dropped the subscription: this contact is made while there is none
        last = f"Gap{uuid.uuid4().hex[:6]}"
        resp = await w.outlook(
            "POST",
            "contacts",
            {
                "givenName": "Gail",
                "surname": last,
                "emailAddresses": [{"address": "g@x.test"}],
                "categories": ["Tracked to Dynamics 365"],
            },
        )
        assert resp.status_code == 201, resp.text
        made = time.monotonic()

        async def recreated() -> dict[str, Any] | None:
            subs = await _subscriptions(w, public)
            assert old["id"] not in {s["id"] for s in subs}
            new = [s for s in subs if s["resource"].endswith("/contacts")]
            return new[0] if new else None

        new, _ = await eventually(recreated, 30, "a new contacts subscription")
        assert new["id"] != old["id"]
        assert new["lifecycleNotificationUrl"] == old["lifecycleNotificationUrl"]

        async def in_crm() -> dict[str, Any] | None:
            rows = [r for r in await w.crm_contacts() if r.get("lastname") == last]
            return rows[0] if rows else None

        row, _ = await eventually(in_crm, 30, "the contact made in the gap, in CRM")
        took = time.monotonic() - made
        assert row["firstname"] == "Gail"

        # the pass after the removal read every stream of the mailbox, not only contacts
        # (a contact notification alone would read contacts only; polling is off)
        # (the pass reads its streams one after another: on a busy machine the contact can be
        # in the CRM before the calendar's turn, so wait for every one of them)
        async def every_stream_read() -> list[str] | None:
            paths = [r["path"].lower() for r in await _requests_since(w, fired)]
            wanted = ("/subscriptions", "/messages/delta", "calendarview/delta")
            return paths if all(any(x in p for p in paths) for x in wanted) else None

        await eventually(every_stream_read, 30, "a pass over every stream after the removal")
    print(f"\nsubscriptionRemoved -> gap contact in CRM {took:.2f}s")
    assert took <= 10.0


async def test_reauthorization_required_renews_the_subscription(world: World) -> None:
    w = world
    settings, public = _webhook_settings(w)
    async with Pipeline(settings, w.store.snapshot, NO_POLLING):
        sub = await _subscription_for(w, public, "/events")
        await asyncio.sleep(1.5)  # a renewal now asks for a later (whole-second) expiry
        fired = time.time()
        await _lifecycle(w, sub["id"], "reauthorizationRequired")

        async def renewed() -> dict[str, Any] | None:
            same = [s for s in await _subscriptions(w, public) if s["id"] == sub["id"]]
            assert same, "the subscription must be renewed, not replaced"
            later = same[0]["expirationDateTime"] > sub["expirationDateTime"]
            return same[0] if later else None

        after, _ = await eventually(renewed, 30, "a renewed subscription")
        patches = [
            r
            for r in await _requests_since(w, fired)
            if r["method"] == "PATCH" and r["path"].lower().endswith(f"/subscriptions/{sub['id']}")
        ]
        assert patches and all(p["status"] == 200 for p in patches), patches
        assert len(await _subscriptions(w, public)) == 3  # messages, events, contacts
    assert after["expirationDateTime"] > sub["expirationDateTime"]
