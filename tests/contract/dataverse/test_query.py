"""OData query options: $select, $filter, $orderby, $top, $expand, $count, paging."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from .odata import RunningEmulator


async def _people(dv: RunningEmulator) -> dict[str, str]:
    ids = {}
    rows = [
        ("Ada", "Lovelace", "ada@x.test", "1815-12-10", 0),
        ("Alan", "Turing", "alan@x.test", "1912-06-23", 0),
        ("Grace", "Hopper", None, "1906-12-09", 1),
        ("Edsger", "Dijkstra", "edsger@x.test", None, 0),
    ]
    for first, last, mail, born, state in rows:
        body: dict[str, object] = {"firstname": first, "lastname": last, "emailaddress1": mail}
        if born:
            body["birthdate"] = born
        ids[first] = await dv.client.create("contacts", body)
        if state:
            await dv.client.patch(f"contacts({ids[first]})", {"statecode": 1, "statuscode": 2})
    return ids


async def _names(dv: RunningEmulator, query: str) -> list[str]:
    reply = await dv.client.get(f"contacts?$select=firstname&{query}")
    assert reply.status == 200, reply.text
    return [r["firstname"] for r in reply.json["value"]]


async def test_select_projects_and_keeps_key_and_etag(dv: RunningEmulator) -> None:
    await _people(dv)
    reply = await dv.client.get("contacts?$select=fullname,emailaddress1")
    row = reply.json["value"][0]
    assert set(row) == {"@odata.etag", "fullname", "emailaddress1", "contactid"}
    assert reply.json["@odata.context"] == (
        f"{dv.client.root}$metadata#contacts(fullname,emailaddress1)"
    )


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("lastname eq 'Turing'", ["Alan"]),
        ("lastname ne 'Turing' and statecode eq 0", ["Ada", "Edsger"]),
        ("statecode eq 1 or firstname eq 'Ada'", ["Ada", "Grace"]),
        ("not (statecode eq 0)", ["Grace"]),
        ("emailaddress1 eq null", ["Grace"]),
        (
            "emailaddress1 ne null and (startswith(lastname,'L') or contains(lastname,'kst'))",
            ["Ada", "Edsger"],
        ),
        ("birthdate gt 1900-01-01", ["Alan", "Grace"]),
        ("birthdate le 1815-12-10", ["Ada"]),
        ("statecode ge 1", ["Grace"]),
        ("statecode lt 1", ["Ada", "Alan", "Edsger"]),
        ("contains(fullname,'LOVE')", ["Ada"]),
        ("endswith(emailaddress1,'x.test') and firstname ne 'Ada'", ["Alan", "Edsger"]),
        ("lastname eq 'O''Brien'", []),
    ],
)
async def test_filter_operators(dv: RunningEmulator, expr: str, expected: list[str]) -> None:
    await _people(dv)
    names = await _names(dv, f"$filter={quote(expr)}&$orderby=firstname")
    assert names == expected


async def test_filter_on_guid_and_lookup_value(dv: RunningEmulator) -> None:
    ids = await _people(dv)
    acct = await dv.client.create("accounts", {"name": "Analytical Engines"})
    await dv.client.patch(
        f"contacts({ids['Ada']})", {"parentcustomerid_account@odata.bind": f"/accounts({acct})"}
    )
    assert await _names(dv, f"$filter=_parentcustomerid_value eq {acct}") == ["Ada"]
    assert await _names(dv, f"$filter=contactid eq {ids['Alan']}") == ["Alan"]
    me = (await dv.client.get("WhoAmI")).json["UserId"]
    assert len(await _names(dv, f"$filter=_ownerid_value eq {me}")) == 4


async def test_filter_boolean_and_number(dv: RunningEmulator) -> None:
    await dv.client.create("appointments", {"subject": "a", "isalldayevent": True})
    await dv.client.create("appointments", {"subject": "b", "isalldayevent": False})
    reply = await dv.client.get("appointments?$filter=isalldayevent eq true&$select=subject")
    assert [r["subject"] for r in reply.json["value"]] == ["a"]
    reply = await dv.client.get("appointments?$filter=statecode eq 3 and statuscode eq 5")
    assert len(reply.json["value"]) == 2


async def test_orderby_top_count(dv: RunningEmulator) -> None:
    await _people(dv)
    assert await _names(dv, "$orderby=lastname desc") == ["Alan", "Ada", "Grace", "Edsger"]
    assert await _names(dv, "$orderby=statecode desc,firstname asc&$top=2") == ["Grace", "Ada"]
    reply = await dv.client.get("contacts?$count=true&$filter=statecode eq 0&$top=1")
    assert reply.json["@odata.count"] == 3
    assert len(reply.json["value"]) == 1


@pytest.mark.parametrize(
    ("query", "fragment"),
    [
        ("$filter=nosuch eq 1", "Could not find a property named 'nosuch'"),
        ("$filter=lastname eq 5", "incompatible types"),
        ("$filter=lastname eq", "Syntax error"),
        ("$filter=(lastname eq 'x'", "unexpected end"),
        ("$filter=(lastname eq 'x'))", "unexpected ')'"),
        ("$filter=lastname eqq 'x'", "comparison operator"),
        ("$filter=contains(statecode,'1')", "string property"),
        ("$filter=lastname eq 'unterminated", "Syntax error"),
        ("$filter=", "empty"),
        ("$select=nosuch", "Could not find a property named 'nosuch'"),
        ("$orderby=lastname sideways", "$orderby"),
        ("$top=-1", "$top"),
        ("$top=abc", "$top"),
        ("$count=maybe", "$count"),
        ("$skip=1", "not supported"),
        ("$expand=nosuch", "Could not find a property named 'nosuch'"),
        ("foo=bar", "not supported"),
        ("$select=fullname&$select=lastname", "more than once"),
        ("$skiptoken=garbage", "$skiptoken"),
    ],
)
async def test_bad_queries_are_400(dv: RunningEmulator, query: str, fragment: str) -> None:
    reply = await dv.client.get(f"contacts?{query}")
    assert reply.status == 400, reply.text
    assert reply.code.startswith("0x8")
    assert fragment in reply.message


async def test_paging_with_maxpagesize_and_skiptoken(dv: RunningEmulator) -> None:
    made = {await dv.client.create("contacts", {"lastname": f"P{i:02d}"}) for i in range(7)}
    seen: list[str] = []
    url = "contacts?$select=lastname"
    pages = 0
    while url:
        reply = await dv.client.get(url, headers={"Prefer": "odata.maxpagesize=3"})
        assert reply.status == 200
        assert reply.headers["Preference-Applied"] == "odata.maxpagesize=3"
        assert len(reply.json["value"]) <= 3
        seen += [r["contactid"] for r in reply.json["value"]]
        url = reply.json.get("@odata.nextLink", "")
        if url:
            assert url.startswith(dv.client.root) and "$skiptoken=" in url
        pages += 1
    assert pages == 3
    assert sorted(seen) == sorted(made)


async def test_paging_survives_deletes_between_pages(dv: RunningEmulator) -> None:
    made = sorted([await dv.client.create("contacts", {"lastname": f"D{i}"}) for i in range(6)])
    first = await dv.client.get("contacts", headers={"Prefer": "odata.maxpagesize=2"})
    for row in first.json["value"]:
        await dv.client.delete(f"contacts({row['contactid']})")
    rest: list[str] = []
    url = first.json["@odata.nextLink"]
    while url:
        reply = await dv.client.get(url, headers={"Prefer": "odata.maxpagesize=2"})
        rest += [r["contactid"] for r in reply.json["value"]]
        url = reply.json.get("@odata.nextLink", "")
    assert rest == made[2:]


async def test_paging_with_orderby(dv: RunningEmulator) -> None:
    for i in range(5):
        await dv.client.create("contacts", {"lastname": f"O{4 - i}"})
    url = "contacts?$select=lastname&$orderby=lastname"
    names: list[str] = []
    while url:
        reply = await dv.client.get(url, headers={"Prefer": "odata.maxpagesize=2"})
        names += [r["lastname"] for r in reply.json["value"]]
        url = reply.json.get("@odata.nextLink", "")
    assert names == ["O0", "O1", "O2", "O3", "O4"]


async def test_bad_maxpagesize_is_400(dv: RunningEmulator) -> None:
    reply = await dv.client.get("contacts", headers={"Prefer": "odata.maxpagesize=lots"})
    assert reply.status == 400
    assert "maxpagesize" in reply.message


async def test_expand_activity_parties_and_lookups(dv: RunningEmulator) -> None:
    me = (await dv.client.get("WhoAmI")).json["UserId"]
    contact = await dv.client.create(
        "contacts", {"firstname": "Ann", "lastname": "Attendee", "emailaddress1": "ann@x.test"}
    )
    appt = await dv.client.create(
        "appointments",
        {
            "subject": "Review",
            "regardingobjectid_contact_appointment@odata.bind": f"/contacts({contact})",
            "appointment_activity_parties": [
                {
                    "participationtypemask": 7,
                    "partyid_systemuser@odata.bind": f"/systemusers({me})",
                },
                {"participationtypemask": 5, "partyid_contact@odata.bind": f"/contacts({contact})"},
                {"participationtypemask": 6, "addressused": "guest@elsewhere.test"},
            ],
        },
    )
    reply = await dv.client.get(
        f"appointments({appt})?$select=subject,_regardingobjectid_value"
        "&$expand=appointment_activity_parties($select=participationtypemask,_partyid_value,"
        "addressused),regardingobjectid_contact_appointment($select=fullname)"
    )
    assert reply.status == 200, reply.text
    body = reply.json
    assert body["_regardingobjectid_value"] == contact
    assert body["regardingobjectid_contact_appointment"]["fullname"] == "Ann Attendee"
    parties = sorted(body["appointment_activity_parties"], key=lambda p: p["participationtypemask"])
    assert [p["participationtypemask"] for p in parties] == [5, 6, 7]
    assert parties[0]["_partyid_value"] == contact
    assert parties[0]["addressused"] == "ann@x.test"
    assert parties[1]["_partyid_value"] is None
    assert parties[1]["addressused"] == "guest@elsewhere.test"
    assert parties[2]["_partyid_value"] == me
    assert set(parties[0]) == {
        "@odata.etag",
        "participationtypemask",
        "_partyid_value",
        "addressused",
        "activitypartyid",
    }
    listed = await dv.client.get(
        "appointments?$expand=appointment_activity_parties($filter=participationtypemask eq 7)"
    )
    assert len(listed.json["value"][0]["appointment_activity_parties"]) == 1
    other = await dv.client.get(
        f"appointments({appt})?$expand=regardingobjectid_account_appointment"
    )
    assert other.json["regardingobjectid_account_appointment"] is None


async def test_lookup_annotations_on_request(dv: RunningEmulator) -> None:
    acct = await dv.client.create("accounts", {"name": "Fabrikam"})
    cid = await dv.client.create(
        "contacts", {"lastname": "X", "parentcustomerid_account@odata.bind": f"accounts({acct})"}
    )
    reply = await dv.client.get(
        f"contacts({cid})?$select=_parentcustomerid_value",
        headers={"Prefer": 'odata.include-annotations="*"'},
    )
    body = reply.json
    key = "_parentcustomerid_value"
    assert body[f"{key}@Microsoft.Dynamics.CRM.lookuplogicalname"] == "account"
    assert body[f"{key}@OData.Community.Display.V1.FormattedValue"] == "Fabrikam"
    assert body[f"{key}@Microsoft.Dynamics.CRM.associatednavigationproperty"] == (
        "parentcustomerid_account"
    )


async def test_form_encoded_query_string(dv: RunningEmulator) -> None:
    await dv.client.create("accounts", {"name": "A+B Ltd"})
    await dv.client.create("accounts", {"name": "A B Ltd"})
    url = f"{dv.client.root}accounts"
    params = {"$filter": "name eq 'A+B Ltd'", "$select": "name"}
    async with dv.session.get(url, params=params, headers=dv.client.headers()) as resp:
        assert resp.status == 200
        body = await resp.json()
    assert [r["name"] for r in body["value"]] == ["A+B Ltd"]
