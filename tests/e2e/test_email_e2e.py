"""Email both ways on the real broker between the emulators: an email the CRM user sends from
Dynamics 365 (pending send) goes out through Graph and is marked sent; the customer's reply in
Outlook is tracked by default ("replies to CRM email"), regarding what the CRM email was
regarding, once."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.e2e.world import TOKEN, World, eventually

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(240)]

IDLE_BUDGET_S = 5.0
PENDING_SEND = 6
SENT = 3


async def _graph_user(w: World, address: str, name: str) -> str:
    resp = await w.http.post(
        f"{w.graph}/v1.0/users",
        json={"userPrincipalName": address, "mail": address, "displayName": name},
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    assert resp.status_code == 201, resp.text
    return str(resp.json()["id"])


async def _as(w: World, mailbox: str, method: str, path: str, body: Any = None) -> Any:
    resp = await w.http.request(
        method,
        f"{w.graph}/v1.0/users/{mailbox}/{path}",
        json=body,
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    assert resp.status_code < 300, resp.text
    return resp.json() if resp.content else None


async def _created(w: World, path: str, body: dict[str, Any], key: str) -> str:
    resp = await w.crm("POST", path, body)
    assert resp.status_code in (200, 201), resp.text
    return str(resp.json()[key])


async def test_crm_email_is_sent_and_the_reply_is_tracked_regarding_the_same_record(
    world: World,
) -> None:
    w = world
    tag = uuid.uuid4().hex[:6]
    customer_address = f"carl.{tag}@fabrikam.test"
    customer = await _graph_user(w, customer_address, "Carl Customer")
    account = await _created(w, "accounts", {"name": f"Fabrikam {tag}"}, "accountid")
    contact = await _created(
        w,
        "contacts",
        {"firstname": "Carl", "lastname": f"Customer{tag}", "emailaddress1": customer_address},
        "contactid",
    )
    subject = f"Quote {tag}"
    async with w.pipeline():
        email = await _created(
            w,
            "emails",
            {
                "subject": subject,
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
            inbox = await _as(
                w,
                customer,
                "GET",
                "mailFolders/inbox/messages?$top=100&$select=subject,from,internetMessageId",
            )
            found = [m for m in inbox["value"] if m.get("subject") == subject]
            return dict(found[0]) if found else None

        message, sent_in = await eventually(received, 30, "the CRM email in the customer's inbox")
        assert message["from"]["emailAddress"]["address"].casefold() == w.upn.casefold()

        async def marked_sent() -> dict[str, Any] | None:
            row = (await w.crm("GET", f"emails({email})")).json()
            return dict(row) if row.get("statuscode") == SENT else None

        sent_row, _ = await eventually(marked_sent, 30, "the CRM email marked sent")
        # the CRM row knows the message id the customer's reply will refer to
        assert sent_row["messageid"] == message["internetMessageId"]

        reply = f"RE: {subject}"
        await _as(
            w,
            customer,
            "POST",
            "sendMail",
            {
                "message": {
                    "subject": reply,
                    "body": {"contentType": "text", "content": "Thanks, agreed."},
                    "toRecipients": [{"emailAddress": {"address": w.upn}}],
                    "internetMessageHeaders": [
                        {"name": "In-Reply-To", "value": message["internetMessageId"]}
                    ],
                }
            },
        )

        async def tracked() -> list[dict[str, Any]] | None:
            rows = (await w.crm("GET", "emails")).json()["value"]
            found = [r for r in rows if r.get("subject") == reply]
            return found or None

        rows, tracked_in = await eventually(tracked, 30, "the customer's reply tracked in CRM")
        (row,) = rows
        assert row["directioncode"] is False
        assert row["_regardingobjectid_value"] == account
        # one activity per internetMessageId, and the sent email is not tracked a second time
        subjects = [r.get("subject") for r in (await w.crm("GET", "emails")).json()["value"]]
        assert subjects.count(reply) == 1 and subjects.count(subject) == 1
    print(f"\nCRM email out in {sent_in:.2f}s, reply tracked in {tracked_in:.2f}s")
    assert sent_in <= IDLE_BUDGET_S and tracked_in <= IDLE_BUDGET_S
