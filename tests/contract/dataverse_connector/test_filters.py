"""Filter import from the emulator's userqueries (querytype 256) and savedqueries (templates)."""

from __future__ import annotations

import pytest

from connectors.dataverse.filters import (
    OUTLOOK_FILTERS,
    OUTLOOK_TEMPLATE,
    fetchxml_table,
    import_filters,
)

from .fixtures import USER_A, USER_B, Emulator
from .helpers import ORG

MY_CONTACTS = (
    '<fetch version="1.0" mapping="logical"><entity name="contact">'
    '<filter type="and"><condition attribute="ownerid" operator="eq-userid" />'
    '<condition attribute="statecode" operator="eq" value="0" /></filter></entity></fetch>'
)
MY_APPOINTMENTS = (
    '<fetch><entity name="appointment"><link-entity name="activityparty" from="activityid" '
    'to="activityid"><filter><condition attribute="partyid" operator="eq-userid" />'
    "</filter></link-entity></entity></fetch>"
)


async def _userquery(dv: Emulator, user: str, name: str, fetchxml: str, qt: int) -> str:
    resp = await dv.client.request(
        "POST",
        "userqueries",
        json={"name": name, "fetchxml": fetchxml, "querytype": qt, "returnedtypecode": None},
        run_as=user,
        safe=False,
    )
    entity = resp.headers["odata-entityid"]
    return entity[entity.rindex("(") + 1 : -1]


async def test_import_reads_each_users_filters_and_the_templates(dv: Emulator) -> None:
    good = await _userquery(dv, USER_A, "My Active Contacts", MY_CONTACTS, OUTLOOK_FILTERS)
    broken = await _userquery(dv, USER_A, "Broken", "<fetch><entity name=", OUTLOOK_FILTERS)
    unsynced = await _userquery(
        dv,
        USER_A,
        "Accounts",
        '<fetch><entity name="account"></entity></fetch>',
        OUTLOOK_FILTERS,
    )
    await _userquery(dv, USER_A, "A view, not a filter", MY_CONTACTS, 0)
    theirs = await _userquery(dv, USER_B, "Bob's", MY_APPOINTMENTS, OUTLOOK_FILTERS)
    await dv.client.request(
        "POST",
        "savedqueries",
        json={
            "name": "My Appointments",
            "fetchxml": MY_APPOINTMENTS,
            "querytype": OUTLOOK_TEMPLATE,
        },
        safe=False,
    )
    result = await import_filters(
        dv.client, org_id=ORG, mailboxes={USER_A: "mbx-a", USER_B: "mbx-b"}
    )
    by_id = {f.filter_id: f for f in result.filters}
    mine = by_id[f"userquery:{good}"]
    assert (mine.table, mine.mailbox_id, mine.source, mine.name) == (
        "contact",
        "mbx-a",
        "userquery",
        "My Active Contacts",
    )
    assert mine.fetchxml == MY_CONTACTS and mine.enabled
    assert by_id[f"userquery:{theirs}"].mailbox_id == "mbx-b"
    (template,) = [f for f in result.filters if f.source == "template"]
    assert template.table == "appointment" and template.mailbox_id is None
    assert len(result.filters) == 3  # the view (querytype 0) is not a filter
    errors = {e.row_id: e for e in result.errors}
    assert set(errors) == {broken, unsynced}
    assert "not well-formed" in errors[broken].reason and errors[broken].name == "Broken"
    assert "not a synced table" in errors[unsynced].reason


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("<fetch/>", "exactly one <entity>"),
        ("<view><entity name='contact'/></view>", "not <fetch>"),
        ('<!DOCTYPE x [<!ENTITY a "b">]><fetch/>', "DOCTYPE"),
        ("<fetch><entity name='contact'/><entity name='task'/></fetch>", "exactly one"),
        ("x" * 100_001, "longer than"),
    ],
)
def test_fetchxml_garbage_is_named(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        fetchxml_table(text)
