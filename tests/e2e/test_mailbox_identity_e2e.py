"""One Graph mailbox ↔ one CRM user ↔ one organisation, end to end on the real broker: a second
registration of a registered mailbox under another spelling of it (its UPN in upper case as the
mailbox id), in a second organisation (its own Dataverse) for another CRM user, is refused when
written; left on the config topic by a racing writer, it is never read, and mail in the mailbox
becomes one CRM activity, in the one organisation that keeps it."""

from __future__ import annotations

import dataclasses
import re
import uuid

import pytest

from emulators.dataverse import EmulatorConfig as DataverseConfig
from emulators.dataverse import create_app as create_dataverse
from pipeline.config_store import ConfigError, config_key
from schemas.codec import dumps
from schemas.models import Mailbox, Organisation
from tests.e2e.test_tracking_e2e import as_user, graph_user, with_message_id
from tests.e2e.world import TOKEN, World, eventually, serve, user_id

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(240)]

ORG2 = "org-e2e-2"


async def test_a_mailbox_registered_twice_under_case_variants_syncs_once(world: World) -> None:
    w = world
    tag = uuid.uuid4().hex[:6]
    other_crm = await serve(create_dataverse(DataverseConfig()))
    try:
        other_url = f"http://127.0.0.1:{other_crm.port}"
        other_user = user_id(7)
        seed = {
            "systemuserid": other_user,
            "fullname": "Other",
            "internalemailaddress": f"other.{tag}@contoso.test",
        }
        seeded = await w.http.post(f"{other_url}/_emulator/seed", json={"systemusers": [seed]})
        assert seeded.status_code < 300, seeded.text
        await w.store.put(Organisation(org_id=ORG2, url=other_url, display_name="Other org"))
        first = w.store.snapshot.mailboxes[w.mailbox_id]
        first = dataclasses.replace(first, auto_track="all")
        await w.store.put(first)
        again = Mailbox(
            mailbox_id=w.upn.upper(),  # Graph resolves a UPN in any case: the same mailbox
            upn=w.upn.upper(),
            org_id=ORG2,
            systemuser_id=other_user.upper(),
            status="enabled",
            auto_track="all",
        )
        clash = f"UPN {again.upn} is already registered as mailbox '{first.mailbox_id}'"
        with pytest.raises(ConfigError, match=re.escape(clash)):
            await w.store.put(again)
        # a racing writer (or a record older than this check) leaves it on the topic anyway
        await w.store.put_raw(config_key(again), dumps(again))
        snapshot = await w.store.load()
        assert set(snapshot.mailboxes) == {first.mailbox_id, again.mailbox_id}
        (problem,) = snapshot.problems
        keeps, refused = sorted([first, again], key=lambda m: m.mailbox_id)
        assert problem.key == f"mailbox:{refused.mailbox_id}"

        customer = await graph_user(w, f"erin.{tag}@fabrikam.test", "Erin Customer")
        subject = f"Hello {tag}"
        async with w.pipeline() as pipeline:
            assert [m.mailbox_id for m in pipeline.enabled_mailboxes()] == [keeps.mailbox_id]
            await as_user(
                w,
                customer,
                "POST",
                "sendMail",
                {
                    "message": {
                        "subject": subject,
                        "body": {"contentType": "text", "content": "hi"},
                        "toRecipients": [{"emailAddress": {"address": w.upn}}],
                    }
                },
            )
            query = "$select=subject,internetMessageId"
            inbox = await as_user(w, w.mailbox_id, "GET", f"mailFolders/inbox/messages?{query}")
            (message_id,) = [
                m["internetMessageId"] for m in inbox["value"] if m["subject"] == subject
            ]
            crm_of = {first.org_id: w.api, ORG2: f"{other_url}/api/data/v9.2"}
            row = await _tracked_in(w, crm_of[keeps.org_id], keeps.systemuser_id, message_id)
            assert row["subject"] == subject
            # the refused registration was never read: no reader, nothing in its organisation
            assert pipeline.mailbox_state(refused.mailbox_id) is None
            assert pipeline.mailbox_state(keeps.mailbox_id) is not None
            rows = await _emails(w, crm_of[refused.org_id], refused.systemuser_id)
            assert with_message_id(rows, message_id) == []
    finally:
        await other_crm.close()


async def _emails(w: World, api: str, caller: str) -> list[dict[str, object]]:
    resp = await w.http.get(
        f"{api}/emails",
        headers={"Authorization": f"Bearer {TOKEN}", "MSCRMCallerID": caller},
    )
    assert resp.status_code == 200, resp.text
    rows = resp.json()["value"]
    assert isinstance(rows, list)
    return rows


async def _tracked_in(w: World, api: str, caller: str, message_id: str) -> dict[str, object]:
    """Wait for the one CRM email activity of ``message_id`` in the Dataverse at ``api``."""

    async def found() -> list[dict[str, object]] | None:
        return with_message_id(await _emails(w, api, caller), message_id) or None

    rows, took = await eventually(found, 30, "the mail in the organisation that keeps it")
    assert len(rows) == 1, rows
    print(f"\nthe mail tracked once, in {took:.2f}s")
    return rows[0]
