"""Throttled and faulty runs against the emulator: every write is applied exactly once."""

from __future__ import annotations

import pytest

from connectors.dataverse.reader import DataverseChangeSource
from connectors.dataverse.writer import DataverseWriter
from connectors.errors import TransientError
from connectors.http import RetryPolicy
from emulators.dataverse import EmulatorConfig, ThrottleLimits

from .fixtures import USER_A, USER_B, Emulator, MakeEmulator
from .helpers import ORG, command, read_round


async def _write_many(dv: Emulator, n: int, per_batch: int = 7) -> None:
    writer = DataverseWriter(dv.client, org_id=ORG, max_operations=per_batch)
    cmds = [
        command(
            "contact",
            "create",
            fields={"lastname": f"Row {i}"},
            run_as=USER_A if i % 2 else USER_B,
            correlation_id=f"corr-{i}",
        )
        for i in range(n)
    ]
    outcomes = await writer.apply(cmds)
    assert [o.status for o in outcomes] == ["applied"] * n
    rows = await dv.client.get_json("contacts?$select=lastname,versionnumber")
    names = sorted(r["lastname"] for r in rows["value"])
    assert names == sorted(f"Row {i}" for i in range(n))
    # the write happened once: versions are those the outcomes saw
    assert sorted(str(r["versionnumber"]) for r in rows["value"]) == sorted(
        o.version or "" for o in outcomes
    )


@pytest.mark.parametrize("status", [429, 503, 504])
async def test_fault_storms_apply_every_write_once(
    make_emulator: MakeEmulator, status: int
) -> None:
    # a fixed seed: the few $batch requests of this run must meet at least one fault
    dv = await make_emulator(EmulatorConfig(fault_seed=7))
    await dv.control(
        "POST", "faults", {"status": status, "rate": 0.5, "retry_after": 0, "latency_ms": 5}
    )
    await _write_many(dv, 30)
    stats = await dv.control("GET", "stats")
    assert stats["faults_injected"] > 0


async def test_real_throttling_is_waited_out(make_emulator: MakeEmulator) -> None:
    limits = ThrottleLimits(requests_per_window=3, window_seconds=1.0)
    dv = await make_emulator(
        EmulatorConfig(throttle=limits),
        policy=RetryPolicy(attempts=20, base_delay=0.01, max_delay=0.05, max_retry_after=0.3),
    )
    await _write_many(dv, 12, per_batch=1)
    stats = await dv.control("GET", "stats")
    assert stats["throttled"] > 0


async def test_reader_survives_503s_and_latency(dv: Emulator) -> None:
    await _write_many(dv, 9)
    await dv.control("POST", "faults", {"status": 503, "rate": 0.4, "retry_after": 0})
    source = DataverseChangeSource(dv.client, org_id=ORG, table="contact", page_size=2)
    changes, _ = await read_round(source, None)
    assert len({c.item_id for c in changes}) == 9


async def test_unsafe_requests_are_not_retried_on_503(dv: Emulator) -> None:
    await dv.control("POST", "faults", {"status": 503, "rate": 1.0, "retry_after": 0})
    with pytest.raises(TransientError):
        await dv.client.request("POST", "contacts", json={"lastname": "x"})
    stats = await dv.control("GET", "stats")
    assert stats["by_method"]["POST"] == 1


async def test_stale_updates_under_faults_are_conflicts_and_change_nothing(
    make_emulator: MakeEmulator,
) -> None:
    # seeded faults: a run of eight 429s in a row on one request would (rightly) exhaust retries
    dv = await make_emulator(EmulatorConfig(fault_seed=11))
    writer = DataverseWriter(dv.client, org_id=ORG)
    created = await writer.apply(
        [command("task", "create", fields={"subject": f"T{i}"}, run_as=USER_A) for i in range(5)]
    )
    await dv.control("POST", "faults", {"status": 429, "rate": 0.5, "retry_after": 0})
    stale = [
        command(
            "task",
            "update",
            fields={"subject": "stale"},
            target_id=o.target_id,
            if_match=str(int(o.version or "0") - 1),
            run_as=USER_A,
        )
        for o in created
    ]
    outcomes = await writer.apply(stale)
    assert [o.status for o in outcomes] == ["conflict"] * 5
    await dv.control("DELETE", "faults")
    rows = await dv.client.get_json("tasks?$select=subject")
    assert sorted(r["subject"] for r in rows["value"]) == [f"T{i}" for i in range(5)]
