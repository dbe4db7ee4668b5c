"""The CRM directory against the Dataverse emulator with the real client: resolution order,
message-id and token lookups, caching, and refusal of malformed answers."""

from __future__ import annotations

from typing import Any

import pytest

from connectors.errors import InvalidResponseError
from pipeline.crm_directory import CrmDirectory
from pipeline.rules.tracking import Address, EmailFacts
from pipeline.rules.tracking_lookup import RecordRef
from tests.contract.dataverse_connector.fixtures import USER_A, Emulator


async def _create(dv: Emulator, entity_set: str, body: dict[str, Any]) -> str:
    resp = await dv.client.request(
        "POST", entity_set, json=body, headers={"Prefer": "return=representation"}
    )
    row = resp.json()
    key = "activityid" if entity_set == "emails" else entity_set[:-1] + "id"
    return str(row[key])


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_addresses_resolve_in_order_systemuser_contact_account_lead(dv: Emulator) -> None:
    contact = await _create(dv, "contacts", {"lastname": "Cole", "emailaddress1": "cole@x.test"})
    account = await _create(dv, "accounts", {"name": "Acme", "emailaddress1": "info@acme.test"})
    lead = await _create(dv, "leads", {"lastname": "Lee", "emailaddress1": "lee@x.test"})
    await _create(dv, "accounts", {"name": "Shadow", "emailaddress1": "cole@x.test"})
    directory = CrmDirectory(dv.client)
    found = await directory.resolve(
        ["Alice@Contoso.test", "cole@x.test", "info@acme.test", "lee@x.test", "nobody@x.test"]
    )
    assert found == {
        "alice@contoso.test": RecordRef("systemuser", USER_A),
        "cole@x.test": RecordRef("contact", contact),
        "info@acme.test": RecordRef("account", account),
        "lee@x.test": RecordRef("lead", lead),
    }


async def test_answers_are_cached_and_misses_expire_sooner(dv: Emulator) -> None:
    clock = Clock()
    directory = CrmDirectory(dv.client, ttl_s=300, miss_ttl_s=60, clock=clock)
    assert await directory.resolve(["late@x.test", "alice@contoso.test"]) == {
        "alice@contoso.test": RecordRef("systemuser", USER_A)
    }
    asked = directory.queries
    await directory.resolve(["late@x.test", "alice@contoso.test"])
    assert directory.queries == asked  # both answered from the cache
    contact = await _create(dv, "contacts", {"lastname": "Late", "emailaddress1": "late@x.test"})
    clock.now += 61  # the miss expired, the hit did not
    found = await directory.resolve(["late@x.test", "alice@contoso.test"])
    assert found["late@x.test"] == RecordRef("contact", contact)
    assert directory.queries > asked


async def test_emails_by_message_id_and_token_with_regarding(dv: Emulator) -> None:
    account = await _create(dv, "accounts", {"name": "Acme"})
    email = await _create(
        dv,
        "emails",
        {
            "subject": "Quote CRM:0001234",
            "messageid": "<abc@mail.test>",
            "trackingtoken": "CRM:0001234",
            "regardingobjectid_account_email@odata.bind": f"/accounts({account})",
        },
    )
    directory = CrmDirectory(dv.client)
    found = await directory.emails_by_message_id(["abc@mail.test", "<missing@mail.test>"])
    assert list(found) == ["abc@mail.test"]
    assert found["abc@mail.test"].activity_id == email
    assert found["abc@mail.test"].regarding == RecordRef("account", account)
    by_token = await directory.email_by_token("CRM:0001234")
    assert by_token is not None and by_token.activity_id == email
    assert await directory.email_by_token("CRM:0009999") is None


async def test_a_missing_email_is_not_cached(dv: Emulator) -> None:
    directory = CrmDirectory(dv.client)
    assert await directory.emails_by_message_id(["new@mail.test"]) == {}
    email = await _create(dv, "emails", {"subject": "Hi", "messageid": "new@mail.test"})
    found = await directory.emails_by_message_id(["<new@mail.test>"])
    assert found["new@mail.test"].activity_id == email


async def test_lookup_for_a_reply_gathers_what_tracking_asks(dv: Emulator) -> None:
    contact = await _create(dv, "contacts", {"lastname": "Cole", "emailaddress1": "cole@x.test"})
    original = await _create(dv, "emails", {"subject": "Offer", "messageid": "<orig@x.test>"})
    facts = EmailFacts(
        internet_message_id="<reply@x.test>",
        sender=Address("cole@x.test", "Cole"),
        recipients=(Address("alice@contoso.test"),),
        in_reply_to="<orig@x.test>",
    )
    lookup = await CrmDirectory(dv.client).lookup_for(facts)
    replied = lookup.email_by_message_id("orig@x.test")
    assert replied is not None and replied.activity_id == original
    assert lookup.email_by_message_id("reply@x.test") is None
    assert lookup.resolve_address("COLE@x.test") == RecordRef("contact", contact)
    assert lookup.resolve_address("alice@contoso.test") == RecordRef("systemuser", USER_A)


async def test_quotes_in_addresses_are_escaped(dv: Emulator) -> None:
    contact = await _create(
        dv, "contacts", {"lastname": "O'Neil", "emailaddress1": "o'neil@x.test"}
    )
    found = await CrmDirectory(dv.client).resolve(["o'neil@x.test"])
    assert found == {"o'neil@x.test": RecordRef("contact", contact)}


class Garbage:
    def __init__(self, body: dict[str, Any]) -> None:
        self.body = body

    async def get_json(
        self,
        path: str,
        *,
        prefer: str | None = None,
        run_as: str | None = None,
        what: str | None = None,
    ) -> dict[str, Any]:
        return self.body


@pytest.mark.parametrize(
    "body",
    [{}, {"value": "rows"}, {"value": [1, 2]}, {"value": [{"internalemailaddress": "a@b.test"}]}],
)
async def test_malformed_answers_are_refused(body: dict[str, Any]) -> None:
    with pytest.raises(InvalidResponseError):
        await CrmDirectory(Garbage(body)).resolve(["a@b.test"])


def test_garbage_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="positive"):
        CrmDirectory(Garbage({}), ttl_s=0)
