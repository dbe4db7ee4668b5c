"""A mailbox whose Graph user disappears, end to end on the real broker with webhooks on: it is
marked failing with one alert in ``dlq``, tried a few times (tiny configured delays), disabled
in the config with the reason, and its log stays short. Once the user exists again under the
same UPN and an operator enables the mailbox, new subscriptions are made and a CRM change
reaches its Outlook again."""

from __future__ import annotations

import dataclasses
import logging
import uuid
from pathlib import Path
from typing import Any

import pytest

from pipeline.dlq import Selection, list_dlq
from pipeline.runtime import Pipeline, RuntimeOptions
from pipeline.settings import GraphSettings, HealthSettings, ReceiverSettings
from schemas.models import Mailbox
from tests.e2e.world import (
    ORG,
    TOKEN,
    User,
    World,
    crm_contact_in_outlook,
    eventually,
    open_world,
    user_id,
)
from tests.ports import free_port

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(240)]

FAST = RuntimeOptions(
    crm_poll_s=0.5,
    crm_poll_max_s=0.5,
    outlook_poll_s=0.5,
    outlook_poll_max_s=0.5,
    restart_delay_s=0.1,
)


async def _graph_user(w: World, upn: str) -> str:
    resp = await w.http.post(
        f"{w.graph}/v1.0/users",
        json={"userPrincipalName": upn, "displayName": "Gone Again"},
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    assert resp.status_code == 201, resp.text
    return str(resp.json()["id"])


async def _subscriptions(w: World, public: str, upn: str) -> list[dict[str, Any]]:
    resp = await w.http.get(
        f"{w.graph}/v1.0/subscriptions", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert resp.status_code == 200, resp.text
    return [
        s
        for s in resp.json()["value"]
        if s["notificationUrl"].startswith(public) and upn in s["resource"]
    ]


async def test_a_vanished_user_fails_is_disabled_and_syncs_again_once_back(
    kafka_bootstrap: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with open_world(kafka_bootstrap, tmp_path, users=0) as w:
        await _vanish_and_return(w, caplog)


async def _vanish_and_return(w: World, caplog: pytest.LogCaptureFixture) -> None:
    run = w.settings.kafka.topic_prefix.split(".")[1]
    upn = f"gone.{run}@contoso.test"
    systemuser = user_id(7)
    seeded = await w.http.post(
        f"{w.dataverse}/_emulator/seed",
        json={
            "systemusers": [
                {"systemuserid": systemuser, "fullname": "Gone", "internalemailaddress": upn}
            ]
        },
    )
    assert seeded.status_code < 300, seeded.text
    first_id = await _graph_user(w, upn)
    # registered by UPN (the default): a user created again under it is the same mailbox
    mailbox = Mailbox(
        mailbox_id=upn, upn=upn, org_id=ORG, systemuser_id=systemuser, status="enabled"
    )
    await w.store.put(mailbox)
    user = User(upn, upn, systemuser)
    w.users.append(user)
    port = free_port()
    public = f"http://127.0.0.1:{port}"
    settings = w.settings.model_copy(
        update={
            "graph": GraphSettings(
                base_url=w.settings.graph.base_url, static_token=TOKEN, notification_url=public
            ),
            "receiver": ReceiverSettings(host="127.0.0.1", port=port),
            "health": HealthSettings(failing_tries=3, failing_retry_s=0.3),
        }
    )
    async with Pipeline(settings, await w.store.load(), FAST) as pipeline:

        async def subscribed() -> list[dict[str, Any]] | None:
            subs = await _subscriptions(w, public, upn)
            return subs if len(subs) == 3 else None

        old_subs, _ = await eventually(subscribed, 30, "three subscriptions of the mailbox")
        await crm_contact_in_outlook(
            w, "Ann", f"Before{uuid.uuid4().hex[:6]}", "a@x.test", 60, user
        )

        caplog.clear()
        gone = await w.http.delete(
            f"{w.graph}/v1.0/users/{upn}", headers={"Authorization": f"Bearer {TOKEN}"}
        )
        assert gone.status_code == 204, gone.text

        async def disabled() -> Mailbox | None:
            found = (await w.store.load()).mailboxes[upn]
            return found if found.status == "disabled" else None

        record, took = await eventually(disabled, 60, "the mailbox disabled", every=0.5)
        assert record.last_error is not None
        assert record.last_error.startswith("disabled after 3 failed tries: NotFoundError")
        assert record.failing_since is None
        alerts = await list_dlq(w.settings.kafka, Selection(frozenset({"alert"}), frozenset({upn})))
        assert len(alerts) == 1 and alerts[0].error.startswith("mailbox_failing: NotFoundError")
        ours = [
            r
            for r in caplog.records
            if r.name.startswith(("pipeline.", "connectors.")) and r.levelno >= logging.WARNING
        ]
        messages = [r.getMessage() for r in ours]
        assert len(messages) <= 8, messages  # failing, 2 tries, disabled, the alert
        assert not any(r.exc_info for r in ours), messages
        await pipeline.refresh(await w.store.load())
        assert pipeline.mailbox_state(upn) is None  # its reader stopped

        # the user is back under the same UPN (a new object, a new To Do list); enabled again
        assert await _graph_user(w, upn) != first_id
        await w.store.put(
            dataclasses.replace(record, status="enabled", failing_since=None, last_error=None)
        )
        await pipeline.refresh(await w.store.load())

        async def resubscribed() -> list[dict[str, Any]] | None:
            subs = await _subscriptions(w, public, upn)
            return subs if len(subs) == 3 else None

        new_subs, _ = await eventually(resubscribed, 30, "new subscriptions of the mailbox")
        assert {s["id"] for s in new_subs}.isdisjoint({s["id"] for s in old_subs})
        last = f"After{uuid.uuid4().hex[:6]}"
        _, _, latency = await crm_contact_in_outlook(w, "Bea", last, "b@x.test", 60, user)
        assert pipeline.mailbox_state(upn) == "ok"
    print(f"\ndisabled {took:.1f}s after the user vanished; CRM -> Outlook again in {latency:.2f}s")
