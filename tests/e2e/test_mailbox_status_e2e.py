"""A mailbox's status end to end on the real broker and both emulators: a syncing mailbox
publishes its MailboxHealth record (both directions, last syncs); when its CRM user is
disabled in Dataverse (the emulator answers impersonation 403 0x8004a104) the mailbox is
failing with one alert, tried ``health.failing_tries`` times, then disabled with the reason,
and ``dynasync mailbox status`` shows it: state, alert, the record's failing state and errors."""

from __future__ import annotations

import asyncio
import json
import uuid
from functools import partial
from pathlib import Path

import pytest

from pipeline.dlq import Selection, list_dlq
from pipeline.mailbox_status import read_status
from pipeline.runtime import Pipeline, RuntimeOptions
from pipeline.settings import HealthSettings
from schemas.models import Mailbox, MailboxHealth
from tests.e2e.world import crm_contact_in_outlook, eventually, open_world
from tests.unit.cli.invoke import dynasync

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(240)]

FAST = RuntimeOptions(
    crm_poll_s=0.5,
    crm_poll_max_s=0.5,
    outlook_poll_s=0.5,
    outlook_poll_max_s=0.5,
    restart_delay_s=0.1,
    crm_user_check_s=0.5,
)


async def test_a_disabled_crm_user_fails_the_mailbox_and_status_shows_it(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    async with open_world(kafka_bootstrap, tmp_path, users=1) as w:
        user = w.users[0]
        settings = w.settings.model_copy(
            update={"health": HealthSettings(failing_tries=3, failing_retry_s=0.3)}
        )
        async with asyncio.timeout(200):
            async with Pipeline(settings, await w.store.load(), FAST):
                await crm_contact_in_outlook(
                    w, "Ann", f"Status{uuid.uuid4().hex[:6]}", "a@x.test", 60, user
                )

                async def healthy() -> MailboxHealth | None:
                    got = (await read_status(w.settings.kafka)).records.get(user.mailbox_id)
                    ok = got is not None and got.outgoing == "ok" and got.incoming == "ok"
                    return got if ok else None

                record, _ = await eventually(healthy, 30, "an ok status record", every=0.5)
                assert record.worker == settings.app_id
                assert {s.kind for s in record.streams if s.side == "outlook"} >= {
                    "contact",
                    "appointment",
                }
                assert ("outlook", "contact") in {(s.side, s.kind) for s in record.streams}

                disabled = await w.http.post(
                    f"{w.dataverse}/_emulator/seed",
                    json={
                        "systemusers": [{"systemuserid": user.systemuser_id, "isdisabled": True}]
                    },
                )
                assert disabled.status_code < 300, disabled.text

                async def gone() -> Mailbox | None:
                    found = (await w.store.load()).mailboxes[user.mailbox_id]
                    return found if found.status == "disabled" else None

                box, _ = await eventually(gone, 60, "the mailbox disabled", every=0.5)
                assert box.last_error is not None
                assert box.last_error.startswith("disabled after 3 failed tries: ForbiddenError")
                assert "0x8004a104" in box.last_error
                alerts = await list_dlq(
                    w.settings.kafka, Selection(frozenset({"alert"}), frozenset({user.mailbox_id}))
                )
                assert len(alerts) == 1 and "0x8004a104" in alerts[0].error

                async def failed() -> MailboxHealth | None:
                    got = (await read_status(w.settings.kafka)).records.get(user.mailbox_id)
                    bad = got is not None and got.incoming in ("failing", "disabled")
                    return got if bad else None

                record, _ = await eventually(failed, 30, "a failing status record", every=0.5)
                assert record.errors.get("crm_user", 0) >= 3
                assert record.last_error is not None and "0x8004a104" in record.last_error

            # the command line reads it back (the worker stopped: the last record stays)
            kafka = w.settings.kafka
            env: dict[str, str | None] = {"DYNASYNC_APP_ID": settings.app_id}
            args = ("--bootstrap", kafka.bootstrap, "--topic-prefix", kafka.topic_prefix)
            ran = await asyncio.to_thread(
                partial(dynasync, env=env), "mailbox", "status", user.upn, "--json", *args
            )
            assert ran.code == 0, ran
            shown = json.loads(ran.out)
            assert shown["state"] == "disabled"
            assert len(shown["alerts"]) == 1
            assert shown["health"]["incoming"] in ("failing", "disabled")
            assert shown["health"]["errors"]["crm_user"] >= 3
            ran = await asyncio.to_thread(
                partial(dynasync, env=env), "mailbox", "status", user.upn, *args
            )
            assert ran.code == 0 and "incoming     " in ran.out and "0x8004a104" in ran.out
