"""$batch: changesets (atomic), Content-ID references, GETs, limits, continue-on-error."""

from __future__ import annotations

import uuid

from .odata import API, BatchItem, BatchOp, RunningEmulator, batch_body, parse_batch_reply


async def _batch(
    dv: RunningEmulator, parts: list[BatchOp | list[BatchOp]], prefer: str | None = None
) -> tuple[int, list[BatchItem]]:
    body, content_type = batch_body(parts)
    headers = {"Content-Type": content_type}
    if prefer:
        headers["Prefer"] = prefer
    reply = await dv.client.request("POST", "$batch", raw=body, headers=headers)
    if reply.status != 200:
        return reply.status, []
    assert reply.headers["Content-Type"].startswith("multipart/mixed; boundary=batchresponse_")
    return reply.status, parse_batch_reply(reply.text, reply.headers["Content-Type"])


async def test_changeset_with_content_id_references(dv: RunningEmulator) -> None:
    status, items = await _batch(
        dv,
        [
            [
                BatchOp("POST", f"{API}accounts", {"name": "Batch Co"}, content_id="1"),
                BatchOp(
                    "POST",
                    f"{API}contacts",
                    {"lastname": "Member", "parentcustomerid_account@odata.bind": "$1"},
                    content_id="2",
                ),
                BatchOp("PATCH", "$2", {"jobtitle": "CTO"}, content_id="3"),
            ],
            BatchOp("GET", f"{API}contacts?$select=jobtitle,_parentcustomerid_value"),
        ],
    )
    assert status == 200
    assert [i.status for i in items] == [204, 204, 204, 200]
    assert [i.content_id for i in items[:3]] == ["1", "2", "3"]
    account_id = items[0].headers["OData-EntityId"].split("(")[1].rstrip(")")
    row = items[3].body["value"][0]
    assert row["jobtitle"] == "CTO"
    assert row["_parentcustomerid_value"] == account_id


async def test_failed_changeset_rolls_back(dv: RunningEmulator) -> None:
    existing = await dv.client.create("contacts", {"lastname": "Before"})
    status, items = await _batch(
        dv,
        [
            [
                BatchOp("POST", f"{API}accounts", {"name": "Rolled back"}, content_id="1"),
                BatchOp(
                    "PATCH", f"{API}contacts({existing})", {"lastname": "After"}, content_id="2"
                ),
                BatchOp("DELETE", f"{API}contacts({existing})", content_id="3"),
                BatchOp("POST", f"{API}contacts", {"nosuch": 1}, content_id="4"),
            ],
            BatchOp("GET", f"{API}contacts"),
        ],
    )
    assert status == 200
    assert len(items) == 1
    assert items[0].status == 400
    assert items[0].content_id == "4"
    assert "nosuch" in items[0].body["error"]["message"]
    assert (await dv.client.get("accounts")).json["value"] == []
    row = (await dv.client.get(f"contacts({existing})")).json
    assert row["lastname"] == "Before"


async def test_rolled_back_changeset_leaves_no_change_tracking_trace(dv: RunningEmulator) -> None:
    victim = await dv.client.create("contacts", {"lastname": "Stay"})
    link = (await dv.client.get("contacts", headers={"Prefer": "odata.track-changes"})).json[
        "@odata.deltaLink"
    ]
    await _batch(
        dv,
        [
            [
                BatchOp("DELETE", f"{API}contacts({victim})"),
                BatchOp("PATCH", f"{API}contacts({uuid.uuid4()})", {"lastname": 1}),
            ]
        ],
    )
    assert (await dv.client.get(link)).json["value"] == []


async def test_continue_on_error(dv: RunningEmulator) -> None:
    parts: list[BatchOp | list[BatchOp]] = [
        [BatchOp("POST", f"{API}contacts", {"lastname": 1})],
        [BatchOp("POST", f"{API}contacts", {"lastname": "Ok"})],
        BatchOp("GET", f"{API}contacts(00000000-0000-0000-0000-000000000001)"),
        BatchOp("GET", f"{API}contacts?$select=lastname"),
    ]
    _, stopped = await _batch(dv, parts)
    assert [i.status for i in stopped] == [400]
    _, items = await _batch(dv, parts, prefer="odata.continue-on-error")
    assert [i.status for i in items] == [400, 204, 404, 200]
    assert [r["lastname"] for r in items[3].body["value"]] == ["Ok"]


async def test_relative_urls_and_impersonation_inside_batch(dv: RunningEmulator) -> None:
    user, _ = await dv.seed_user("Batcher")
    _, items = await _batch(
        dv,
        [[BatchOp("POST", "contacts", {"lastname": "Mine"}, headers={"MSCRMCallerID": user})]],
    )
    assert items[0].status == 204
    row = (await dv.client.get("contacts")).json["value"][0]
    assert row["_ownerid_value"] == user


async def test_more_than_1000_operations_is_400(dv: RunningEmulator) -> None:
    ops: list[BatchOp | list[BatchOp]] = [
        BatchOp("GET", f"{API}contacts?$top=1") for _ in range(1001)
    ]
    body, content_type = batch_body(ops)
    reply = await dv.client.request(
        "POST", "$batch", raw=body, headers={"Content-Type": content_type}
    )
    assert reply.status == 400
    assert "limit of 1000" in reply.message
    ok_status, items = await _batch(dv, ops[:1000])
    assert ok_status == 200 and len(items) == 1000


async def test_malformed_batches_are_400(dv: RunningEmulator) -> None:
    cases: list[tuple[bytes, str]] = [
        (b"whatever", "application/json"),
        (
            b"--b\r\nContent-Type: application/http\r\n\r\nGET contacts HTTP/1.1\r\n\r\n",
            "multipart/mixed; boundary=b",
        ),
        (b"--b\r\nContent-Type: text/plain\r\n\r\nhello\r\n--b--", "multipart/mixed; boundary=b"),
        (
            b"--b\r\nContent-Type: application/http\r\n\r\nFETCH contacts HTTP/1.1\r\n\r\n--b--",
            "multipart/mixed; boundary=b",
        ),
        (b"--b--", "multipart/mixed; boundary=b"),
        (b"--b--", "multipart/mixed"),
    ]
    for raw, content_type in cases:
        reply = await dv.client.request(
            "POST", "$batch", raw=raw, headers={"Content-Type": content_type}
        )
        assert reply.status == 400, (raw, reply.text)
        assert reply.json["error"]["message"]
    write_outside = batch_body([BatchOp("POST", f"{API}contacts", {"lastname": "x"})])
    reply = await dv.client.request(
        "POST", "$batch", raw=write_outside[0], headers={"Content-Type": write_outside[1]}
    )
    assert reply.status == 400
    get_inside = batch_body([[BatchOp("GET", f"{API}contacts")]])
    reply = await dv.client.request(
        "POST", "$batch", raw=get_inside[0], headers={"Content-Type": get_inside[1]}
    )
    assert reply.status == 400
    assert (await dv.client.get("$batch")).status == 405


async def test_return_representation_inside_changeset(dv: RunningEmulator) -> None:
    _, items = await _batch(
        dv,
        [
            [
                BatchOp(
                    "PATCH",
                    f"{API}contacts({uuid.uuid4()})?$select=lastname",
                    {"lastname": "Rep"},
                    content_id="a",
                    headers={"Prefer": "return=representation", "If-None-Match": "*"},
                )
            ]
        ],
    )
    assert items[0].status == 201
    assert items[0].body["lastname"] == "Rep"
    assert items[0].headers["OData-EntityId"].endswith(f"({items[0].body['contactid']})")
