"""Email tracking end to end on the real broker between the emulators, from the real Outlook
reader to the Dataverse API: a customer's reply that carries only the CRM tracking token (no
In-Reply-To) is tracked regarding the CRM email's record; mail created in or moved into a
tracked folder (configured while the pipeline runs) is tracked regarding the folder's record,
mail elsewhere is not; one activity per internetMessageId throughout."""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

import pytest

from schemas.models import TrackedFolder
from tests.e2e.world import TOKEN, World, eventually

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(240)]

PENDING_SEND = 6
SENT = 3


async def graph_user(w: World, address: str, name: str) -> str:
    """Create a Graph user (a customer with a mailbox of their own); its id."""
    resp = await w.http.post(
        f"{w.graph}/v1.0/users",
        json={"userPrincipalName": address, "mail": address, "displayName": name},
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    assert resp.status_code == 201, resp.text
    return str(resp.json()["id"])


async def as_user(w: World, mailbox: str, method: str, path: str, body: Any = None) -> Any:
    """A Graph request as ``mailbox``'s user; the answer's JSON (None when empty)."""
    resp = await w.http.request(
        method,
        f"{w.graph}/v1.0/users/{mailbox}/{path}",
        json=body,
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    assert resp.status_code < 300, resp.text
    return resp.json() if resp.content else None


async def created(w: World, path: str, body: dict[str, Any], key: str) -> str:
    resp = await w.crm("POST", path, body)
    assert resp.status_code in (200, 201), resp.text
    return str(resp.json()[key])


async def crm_emails(w: World) -> list[dict[str, Any]]:
    resp = await w.crm("GET", "emails")
    assert resp.status_code == 200, resp.text
    rows = resp.json()["value"]
    assert isinstance(rows, list)
    return rows


def with_message_id(rows: list[dict[str, Any]], message_id: str) -> list[dict[str, Any]]:
    return [r for r in rows if r.get("messageid") == message_id]


async def tracked_once(w: World, message_id: str, what: str, within: float = 30) -> dict[str, Any]:
    """Wait for the CRM email activity of ``message_id``; it must be the only one."""

    async def found() -> list[dict[str, Any]] | None:
        return with_message_id(await crm_emails(w), message_id) or None

    rows, took = await eventually(found, within, what)
    assert len(rows) == 1, rows
    print(f"\n{what}: tracked in {took:.2f}s")
    return rows[0]


async def sent_message_id(w: World, sender: str, subject: str) -> str:
    """The internetMessageId of what ``sender`` sent with ``subject`` (from their Sent Items)."""
    sent = await as_user(
        w,
        sender,
        "GET",
        "mailFolders/sentitems/messages?$top=100&$select=subject,internetMessageId",
    )
    ids = [m["internetMessageId"] for m in sent["value"] if m.get("subject") == subject]
    assert len(ids) == 1, sent["value"]
    return str(ids[0])


async def test_a_reply_carrying_only_the_tracking_token_is_tracked_regarding_its_record(
    world: World,
) -> None:
    w = world
    tag = uuid.uuid4().hex[:6]
    token = "CRM:0001234"
    customer_address = f"carl.{tag}@fabrikam.test"
    customer = await graph_user(w, customer_address, "Carl Customer")
    account = await created(w, "accounts", {"name": f"Fabrikam {tag}"}, "accountid")
    contact = await created(
        w,
        "contacts",
        {"firstname": "Carl", "lastname": f"Customer{tag}", "emailaddress1": customer_address},
        "contactid",
    )
    subject = f"Quote {tag}"
    async with w.pipeline():
        # Dynamics 365 sends an email with its tracking token (pending send → Graph)
        email = await created(
            w,
            "emails",
            {
                "subject": subject,
                "trackingtoken": token,
                "description": "<p>Here is the quote.</p>",
                "directioncode": True,
                "regardingobjectid_account_email@odata.bind": f"/accounts({account})",
                "email_activity_parties": [
                    {
                        "partyid_systemuser@odata.bind": f"/systemusers({w.users[0].systemuser_id})",  # noqa: E501
                        "participationtypemask": 1,
                    },
                    {
                        "partyid_contact@odata.bind": f"/contacts({contact})",
                        "participationtypemask": 2,
                    },
                ],
            },
            "activityid",
        )
        resp = await w.crm(
            "PATCH", f"emails({email})", {"statecode": 1, "statuscode": PENDING_SEND}
        )
        assert resp.status_code in (200, 204), resp.text

        async def received() -> dict[str, Any] | None:
            inbox = await as_user(
                w, customer, "GET", "mailFolders/inbox/messages?$top=100&$select=subject"
            )
            found = [m for m in inbox["value"] if str(m.get("subject", "")).startswith(subject)]
            return dict(found[0]) if found else None

        message, _ = await eventually(received, 30, "the CRM email in the customer's inbox")
        assert message["subject"] == f"{subject} {token}"  # the token travels in the subject

        # the customer answers in a new message: no In-Reply-To, only the token correlates
        replies = (f"RE: {subject} {token}", token)
        for reply in replies:
            await as_user(
                w,
                customer,
                "POST",
                "sendMail",
                {
                    "message": {
                        "subject": reply,
                        "body": {"contentType": "text", "content": "Agreed."},
                        "toRecipients": [{"emailAddress": {"address": w.upn}}],
                    }
                },
            )
        rows = [
            await tracked_once(
                w, await sent_message_id(w, customer, reply), f"the reply {reply!r} in the CRM"
            )
            for reply in replies
        ]
        for row in rows:
            assert row["directioncode"] is False
            assert row["_regardingobjectid_value"] == account
            assert row["trackingtoken"] == token
        assert [r.get("subject") for r in rows] == [f"RE: {subject}", None]
        # the CRM email itself is one activity still (its Sent Items copy links to it)
        everything = await crm_emails(w)
        assert [r["activityid"] for r in everything if r.get("subject") == subject] == [email]


async def test_mail_created_in_or_moved_into_a_tracked_folder_is_tracked_regarding_its_record(
    world: World,
) -> None:
    w = world
    me = w.mailbox_id
    tag = uuid.uuid4().hex[:6]
    customer_address = f"dora.{tag}@fabrikam.test"
    customer = await graph_user(w, customer_address, "Dora Customer")
    account = await created(w, "accounts", {"name": f"Fabrikam {tag}"}, "accountid")
    folder = (await as_user(w, me, "POST", "mailFolders", {"displayName": f"Fabrikam {tag}"}))["id"]
    misc = (await as_user(w, me, "POST", "mailFolders", {"displayName": f"Misc {tag}"}))["id"]

    async def mail_me(subject: str) -> dict[str, Any]:
        """The customer mails the user; the message as it lands in the user's Inbox."""
        await as_user(
            w,
            customer,
            "POST",
            "sendMail",
            {
                "message": {
                    "subject": subject,
                    "body": {"contentType": "text", "content": "hello"},
                    "toRecipients": [{"emailAddress": {"address": w.upn}}],
                }
            },
        )

        async def landed() -> dict[str, Any] | None:
            inbox = await as_user(
                w,
                me,
                "GET",
                "mailFolders/inbox/messages?$top=100&$select=subject,internetMessageId",
            )
            found = [m for m in inbox["value"] if m.get("subject") == subject]
            return dict(found[0]) if found else None

        message, _ = await eventually(landed, 10, f"{subject!r} in the user's Inbox")
        return message

    async with w.pipeline() as pipeline:
        stays = await mail_me(f"Stays in Inbox {tag}")
        moved = await mail_me(f"Moved in {tag}")
        elsewhere = await mail_me(f"Moved elsewhere {tag}")
        # the user makes the folder a tracked folder (regarding the account) while it all runs
        current = w.store.snapshot.mailboxes[me]
        await w.store.put(
            dataclasses.replace(
                current, tracked_folders=[TrackedFolder(folder, "account", account)]
            )
        )
        await pipeline.refresh(w.store.snapshot)
        await as_user(w, me, "POST", f"messages/{moved['id']}/move", {"destinationId": folder})
        await as_user(w, me, "POST", f"messages/{elsewhere['id']}/move", {"destinationId": misc})
        made = await as_user(
            w,
            me,
            "POST",
            f"mailFolders/{folder}/messages",
            {
                "subject": f"Created in {tag}",
                "body": {"contentType": "text", "content": "filed"},
                "from": {"emailAddress": {"address": customer_address}},
                "toRecipients": [{"emailAddress": {"address": w.upn}}],
            },
        )
        for message_id, what in (
            (moved["internetMessageId"], "mail moved into the tracked folder"),
            (made["internetMessageId"], "mail created in the tracked folder"),
        ):
            row = await tracked_once(w, message_id, what)
            assert row["_regardingobjectid_value"] == account
            assert row["directioncode"] is False
        # a copy in the folder is the same internetMessageId: still one activity
        await as_user(w, me, "POST", f"messages/{moved['id']}/copy", {"destinationId": folder})
        marker = await as_user(
            w,
            me,
            "POST",
            f"mailFolders/{folder}/messages",
            {"subject": f"Marker {tag}", "from": {"emailAddress": {"address": customer_address}}},
        )
        # the folder's changes are planned in order: once the marker is in, so is the copy
        await tracked_once(w, marker["internetMessageId"], "a later mail in the tracked folder")
        rows = await crm_emails(w)
        assert len(with_message_id(rows, moved["internetMessageId"])) == 1
        for untracked in (stays, elsewhere):  # in the Inbox, in an untracked folder
            assert with_message_id(rows, untracked["internetMessageId"]) == []
