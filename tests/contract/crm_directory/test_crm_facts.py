"""An Outlook reply to a CRM email is tracked because the CRM facts are gathered before
planning (CRM on the Dataverse emulator); without them it is not; an unreachable CRM is waited
for, not guessed about."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from connectors.errors import BadRequestError, TransientError
from pipeline.crm_directory import CrmDirectory
from pipeline.crm_facts import needs_crm_facts, with_crm_facts
from pipeline.plan import MailboxRules, plan
from schemas.models import ItemChange
from tests.contract.dataverse_connector.fixtures import Emulator
from tests.unit.plan.test_plan import NOW, USER, change
from tests.unit.plan.test_plan_rules import email

REPLY = {
    "message_id": "<reply@x.test>",
    "subject": "RE: Offer",
    "in_reply_to": "<orig@crm.test>",
    "sender": "cole@x.test",
    "name": "Cole",
}


def _rules() -> MailboxRules:
    return MailboxRules("mbx", "org", USER)


def _reply(**graph: str) -> ItemChange:
    return email("m1", **(REPLY | graph))


async def _post(dv: Emulator, entity_set: str, body: dict[str, Any], key: str) -> str:
    resp = await dv.client.request(
        "POST", entity_set, json=body, headers={"Prefer": "return=representation"}
    )
    return str(resp.json()[key])


async def test_a_reply_to_a_crm_email_is_tracked_regarding_its_record(dv: Emulator) -> None:
    account = await _post(dv, "accounts", {"name": "Acme"}, "accountid")
    contact = await _post(
        dv, "contacts", {"lastname": "Cole", "emailaddress1": "cole@x.test"}, "contactid"
    )
    await _post(
        dv,
        "emails",
        {
            "subject": "Offer",
            "messageid": "<orig@crm.test>",
            "regardingobjectid_account_email@odata.bind": f"/accounts({account})",
        },
        "activityid",
    )
    assert plan(_reply(), None, _rules(), NOW).dropped == (
        "outlook email is not tracked (not_matched)"
    )
    directory = CrmDirectory(dv.client)

    async def directories(org_id: str) -> CrmDirectory:
        assert org_id == "org"
        return directory

    rules = await with_crm_facts(_reply(), None, _rules(), directories)
    (cmd,) = plan(_reply(), None, rules, NOW).commands
    assert (cmd.target, cmd.action) == ("crm", "create")
    assert cmd.fields["inreplyto"] == "<orig@crm.test>"
    replied = rules.lookup.email_by_message_id("orig@crm.test")
    assert replied is not None and replied.regarding is not None
    assert (replied.regarding.table, replied.regarding.id) == ("account", account)
    sender = rules.lookup.resolve_address("cole@x.test")
    assert sender is not None and sender.id == contact


async def test_a_reply_with_only_the_token_is_tracked_regarding_its_record(dv: Emulator) -> None:
    account = await _post(dv, "accounts", {"name": "Acme"}, "accountid")
    await _post(
        dv,
        "emails",
        {
            "subject": "Offer",
            "trackingtoken": "CRM:0001234",
            "regardingobjectid_account_email@odata.bind": f"/accounts({account})",
        },
        "activityid",
    )
    directory = CrmDirectory(dv.client)

    async def directories(org_id: str) -> CrmDirectory:
        return directory

    reply = _reply(in_reply_to="<not-a-crm-email@x.test>", subject="RE: Offer CRM:0001234")
    rules = await with_crm_facts(reply, None, _rules(), directories)
    (cmd,) = plan(reply, None, rules, NOW).commands
    assert cmd.fields["regardingobjectid"] == {"table": "account", "id": account}
    assert cmd.fields["subject"] == "RE: Offer"


async def test_other_changes_do_not_ask_the_crm() -> None:
    asked: list[str] = []

    async def directories(org_id: str) -> CrmDirectory | None:
        asked.append(org_id)
        return None

    contact = change("outlook", "c1", "v1", {"lastname": "x"})
    crm_email = change("crm", "e1", "v1", dict(_reply().projection), kind="email")
    deleted = replace(_reply(), op="delete")
    before = _rules()
    for c in (contact, crm_email, deleted):
        assert not needs_crm_facts(c, None)
        assert await with_crm_facts(c, None, before, directories) is before
    assert asked == []


class Flaky:
    """A directory source that is unreachable ``times`` times, then has no directory."""

    def __init__(self, times: int, error: Exception) -> None:
        self.times = times
        self.error = error
        self.calls = 0

    async def __call__(self, org_id: str) -> CrmDirectory | None:
        self.calls += 1
        if self.calls <= self.times:
            raise self.error
        return None


async def test_an_unreachable_crm_is_waited_for() -> None:
    slept: list[float] = []

    async def sleep(s: float) -> None:
        slept.append(s)

    source = Flaky(6, TransientError("connection refused"))
    before = _rules()
    rules = await with_crm_facts(_reply(), None, before, source, cap_s=1.0, sleep=sleep)
    assert rules is before and source.calls == 7
    assert slept == [0.2, 0.4, 0.8, 1.0, 1.0, 1.0]


async def test_a_permanent_crm_error_is_raised() -> None:
    with pytest.raises(BadRequestError):
        await with_crm_facts(_reply(), None, _rules(), Flaky(1, BadRequestError("bad")))
