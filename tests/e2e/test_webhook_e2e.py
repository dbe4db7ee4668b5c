"""The webhook path end to end: with a notification URL the pipeline subscribes in Graph, the
emulator delivers change notifications to the receiver, and an Outlook edit reaches the CRM
without any Outlook polling (the poll interval is set far beyond the test's budget)."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import pytest

from pipeline.runtime import Pipeline, RuntimeOptions
from pipeline.settings import GraphSettings, ReceiverSettings
from tests.e2e.world import TOKEN, World, crm_contact_in_outlook, eventually
from tests.ports import free_port

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(240)]

NO_POLLING = RuntimeOptions(outlook_poll_s=3600.0, crm_poll_s=0.5, crm_poll_max_s=0.5)


async def _graph_stats(w: World) -> dict[str, Any]:
    resp = await w.http.get(f"{w.graph}/_emulator/stats")
    assert resp.status_code == 200, resp.text
    stats = resp.json()
    assert isinstance(stats, dict)
    return stats


async def test_outlook_edit_reaches_crm_through_a_webhook(world: World) -> None:
    w = world
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
    async with Pipeline(settings, w.store.snapshot, NO_POLLING) as pipeline:
        assert pipeline.receiver_url is not None
        last = f"Hook{uuid.uuid4().hex[:6]}"
        row_id, contact, _ = await crm_contact_in_outlook(w, "Wendy", last, "wh@x.test", 90)

        async def subscribed() -> list[Any] | None:
            resp = await w.http.get(
                f"{w.graph}/v1.0/subscriptions", headers={"Authorization": f"Bearer {TOKEN}"}
            )
            assert resp.status_code == 200, resp.text
            subs = [s for s in resp.json()["value"] if s["notificationUrl"].startswith(public)]
            return subs or None

        subs, _ = await eventually(subscribed, 30, "a Graph subscription to the receiver")
        assert any("contacts" in s["resource"] for s in subs)
        delivered_before = (await _graph_stats(w))["notifications_delivered"]

        edited = time.monotonic()
        resp = await w.outlook("PATCH", f"contacts/{contact['id']}", {"jobTitle": "Harbour"})
        assert resp.status_code == 200, resp.text

        async def in_crm() -> dict[str, Any] | None:
            row = await w.crm_contact(row_id)
            return row if row.get("jobtitle") == "Harbour" else None

        await eventually(in_crm, 30, "the Outlook edit in CRM (webhook)")
        took = time.monotonic() - edited
        assert (await _graph_stats(w))["notifications_delivered"] > delivered_before
    print(f"\nOutlook edit -> CRM through a webhook {took:.2f}s")
    assert took <= 5.0


async def test_receiver_refuses_garbage_while_the_pipeline_runs(world: World) -> None:
    w = world
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
    async with Pipeline(settings, w.store.snapshot, NO_POLLING) as pipeline:
        url = pipeline.receiver_url
        assert url is not None
        async with httpx.AsyncClient(timeout=10) as http:
            json = {"content-type": "application/json"}
            for path in ("/notifications", "/lifecycle"):
                resp = await http.post(f"{url}{path}", content=b"{not json", headers=json)
                assert resp.status_code == 400, (path, resp.status_code, resp.text)
                resp = await http.post(f"{url}{path}", content=b"x" * 2_000_000, headers=json)
                assert resp.status_code == 413, (path, resp.status_code)
                resp = await http.post(f"{url}{path}", content=b"{}")  # no Content-Type
                assert resp.status_code == 415, (path, resp.status_code)
