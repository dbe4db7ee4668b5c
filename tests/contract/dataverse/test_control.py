"""Service protection (429), faults, stats, reset, seed."""

from __future__ import annotations

import asyncio
import time

import pytest

from emulators.dataverse import EmulatorConfig, ThrottleLimits

from .conftest import MakeEmulator
from .odata import RunningEmulator


async def test_request_limit_gives_429_with_retry_after(make_emulator: MakeEmulator) -> None:
    limits = ThrottleLimits().scaled(0.001)  # 6 requests / 300 s
    dv = await make_emulator(EmulatorConfig(throttle=limits))
    statuses = [(await dv.client.get("contacts")).status for _ in range(6)]
    assert statuses == [200] * 6
    reply = await dv.client.get("contacts")
    assert reply.status == 429
    assert reply.code == "0x80072322"
    assert (
        reply.message
        == "Number of requests exceeded the limit of 6 over time window of 300 seconds."
    )
    retry = reply.headers["Retry-After"]
    assert retry.isdigit() and 1 <= int(retry) <= 300
    user, _ = await dv.seed_user("Other")
    other = await dv.client.get("contacts", headers={"MSCRMCallerID": user})
    assert other.status == 200


async def test_window_slides(make_emulator: MakeEmulator) -> None:
    limits = ThrottleLimits(requests_per_window=2, window_seconds=0.5)
    dv = await make_emulator(EmulatorConfig(throttle=limits))
    assert (await dv.client.get("contacts")).status == 200
    assert (await dv.client.get("contacts")).status == 200
    blocked = await dv.client.get("contacts")
    assert blocked.status == 429
    assert blocked.headers["Retry-After"] == "1"
    await asyncio.sleep(0.6)
    assert (await dv.client.get("contacts")).status == 200


async def test_concurrency_limit(make_emulator: MakeEmulator) -> None:
    limits = ThrottleLimits(max_concurrent=1)
    dv = await make_emulator(EmulatorConfig(throttle=limits))
    await dv.control("POST", "faults", {"latency_ms": 300})
    replies = await asyncio.gather(*(dv.client.get("contacts") for _ in range(3)))
    statuses = sorted(r.status for r in replies)
    assert statuses == [200, 429, 429]
    throttled = [r for r in replies if r.status == 429]
    assert throttled[0].code == "0x80072326"
    assert throttled[0].message == "Number of concurrent requests exceeded the limit of 1."
    assert throttled[0].headers["Retry-After"].isdigit()


async def test_execution_time_limit(make_emulator: MakeEmulator) -> None:
    limits = ThrottleLimits(execution_ms_per_window=100)
    dv = await make_emulator(EmulatorConfig(throttle=limits))
    await dv.control("POST", "faults", {"latency_ms": 150})
    assert (await dv.client.get("contacts")).status == 200
    reply = await dv.client.get("contacts")
    assert reply.status == 429
    assert reply.code == "0x80072321"
    assert reply.message.startswith("Combined execution time of incoming requests exceeded limit")


async def test_no_throttle(make_emulator: MakeEmulator) -> None:
    limits = ThrottleLimits(requests_per_window=1)
    dv = await make_emulator(EmulatorConfig(throttle=limits, throttle_enabled=False))
    assert {(await dv.client.get("contacts")).status for _ in range(5)} == {200}


@pytest.mark.parametrize("status", [429, 500, 503, 504])
async def test_faults_always(dv: RunningEmulator, status: int) -> None:
    set_reply = await dv.control("POST", "faults", {"status": status, "rate": 1, "retry_after": 7})
    assert set_reply.status == 200
    reply = await dv.client.get("contacts")
    assert reply.status == status
    assert reply.json["error"]["code"].startswith("0x8")
    if status != 500:
        assert reply.headers["Retry-After"] == "7"
    await dv.control("DELETE", "faults")
    assert (await dv.client.get("contacts")).status == 200


async def test_faults_rate_zero_clears_and_rate_is_probabilistic(
    make_emulator: MakeEmulator,
) -> None:
    dv = await make_emulator(EmulatorConfig(fault_seed=1))
    await dv.control("POST", "faults", {"status": 503, "rate": 0.5})
    statuses = [(await dv.client.get("contacts")).status for _ in range(40)]
    assert 5 < statuses.count(503) < 35
    assert statuses.count(200) + statuses.count(503) == 40
    await dv.control("POST", "faults", {"status": 503, "rate": 0})
    assert {(await dv.client.get("contacts")).status for _ in range(5)} == {200}
    stats = (await dv.control("GET", "stats")).json
    assert stats["faults_injected"] == statuses.count(503)


async def test_latency_fault(dv: RunningEmulator) -> None:
    await dv.control("POST", "faults", {"latency_ms": 200})
    started = time.monotonic()
    assert (await dv.client.get("contacts")).status == 200
    assert time.monotonic() - started >= 0.19


@pytest.mark.parametrize(
    "body",
    [
        {"status": 418, "rate": 1},
        {"status": "429"},
        {"status": 429, "rate": 1.5},
        {"status": 429, "rate": -0.1},
        {"status": 429, "retry_after": "soon"},
        {"status": 429, "retry_after": 1.5},
        {"latency_ms": -1},
        {"latency_ms": 10**9},
        {"status": 429, "color": "red"},
        [429],
        "429",
    ],
)
async def test_bad_fault_bodies_are_400(dv: RunningEmulator, body: object) -> None:
    reply = await dv.control("POST", "faults", body)
    assert reply.status == 400
    assert "invalid fault plan" in reply.json["error"]["message"]
    assert (await dv.client.get("contacts")).status == 200


async def test_malformed_control_json_is_400(dv: RunningEmulator) -> None:
    async with dv.session.post(f"{dv.origin}/_emulator/faults", data=b"{nope") as resp:
        assert resp.status == 400
    async with dv.session.post(f"{dv.origin}/_emulator/seed", data=b"[") as resp:
        assert resp.status == 400


async def test_stats_by_user_method_status(dv: RunningEmulator) -> None:
    user, _ = await dv.seed_user("Stat")
    await dv.client.get("contacts")
    await dv.client.post("contacts", {"lastname": "S"}, headers={"MSCRMCallerID": user})
    await dv.client.get("nosuch")
    dv.client.token = None
    await dv.client.get("contacts")
    stats = (await dv.control("GET", "stats")).json
    app_user = "00000000-0000-4000-8000-00000000a001"
    assert stats["total"] == 4
    assert stats["by_method"] == {"GET": 3, "POST": 1}
    assert stats["by_status"] == {"200": 1, "204": 1, "404": 1, "401": 1}
    assert stats["by_user"] == {app_user: 2, user: 1, "anonymous": 1}
    assert stats["by_user_method_status"][user] == {"POST": {"204": 1}}


async def test_reset_clears_everything(dv: RunningEmulator) -> None:
    _user, _ = await dv.seed_user("Temp")
    await dv.client.create("contacts", {"lastname": "Temp"})
    link = (await dv.client.get("contacts", headers={"Prefer": "odata.track-changes"})).json[
        "@odata.deltaLink"
    ]
    await dv.control("POST", "faults", {"latency_ms": 10})
    assert (await dv.control("POST", "reset")).status == 200
    assert (await dv.client.get("contacts")).json["value"] == []
    users = (await dv.client.get("systemusers")).json["value"]
    assert [u["systemuserid"] for u in users] == ["00000000-0000-4000-8000-00000000a001"]
    assert len((await dv.client.get("organizations")).json["value"]) == 1
    assert (await dv.client.get(link)).code == "0x80044352"
    stats = (await dv.control("GET", "stats")).json
    assert stats["total"] == 4


async def test_seed_users_and_organization(dv: RunningEmulator) -> None:
    reply = await dv.control(
        "POST",
        "seed",
        {
            "systemusers": [
                {
                    "systemuserid": "11111111-1111-4111-8111-111111111111",
                    "fullname": "Gus",
                    "internalemailaddress": "gus@contoso.test",
                    "azureactivedirectoryobjectid": "22222222-2222-4222-8222-222222222222",
                    "domainname": "gus@contoso.test",
                }
            ],
            "organization": {"expirechangetrackingindays": 30, "name": "Contoso"},
        },
    )
    assert reply.status == 200, reply.text
    assert reply.json["systemuserids"] == ["11111111-1111-4111-8111-111111111111"]
    org = (await dv.client.get("organizations")).json["value"][0]
    assert org["expirechangetrackingindays"] == 30 and org["name"] == "Contoso"
    who = await dv.client.get(
        "WhoAmI", headers={"CallerObjectId": "22222222-2222-4222-8222-222222222222"}
    )
    assert who.json["UserId"] == "11111111-1111-4111-8111-111111111111"


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"systemusers": "gus"},
        {"systemusers": [{"fullname": 5}]},
        {"systemusers": [{"nosuch": "x"}]},
        {"systemusers": ["gus"]},
        {"organization": {"expirechangetrackingindays": 0}},
        {"organization": "x"},
        {"teams": []},
    ],
)
async def test_bad_seed_bodies_are_400(dv: RunningEmulator, body: object) -> None:
    reply = await dv.control("POST", "seed", body)
    assert reply.status == 400
    assert len((await dv.client.get("systemusers")).json["value"]) == 1
