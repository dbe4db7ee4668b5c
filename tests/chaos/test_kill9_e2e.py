"""kill -9 of ``dynasync run`` on the real broker between the emulators.

- At random points of bursts of work on both sides (seeded, the seed is printed): after the
  last restart every change has arrived, exactly once, and nothing keeps rewriting.
- With a slow event at the head of a partition (the other side fails every call after a
  delay, so a write hangs in its retries): the kill loses it, the restarted worker applies it
  and everything queued behind it.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import uuid
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.proc import PipelineProcess
from tests.e2e.world import (
    User,
    World,
    by_surname,
    crm_contact_in_outlook,
    eventually,
    open_world,
)

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(420)]

ROUNDS = 3
CREATES_PER_ROUND = 4


async def test_kill_9_at_random_points_loses_nothing(kafka_bootstrap: str, tmp_path: Path) -> None:
    seed = int(os.environ.get("DYNASYNC_CHAOS_SEED", random.randrange(1 << 30)))
    print(f"\nchaos seed {seed} (DYNASYNC_CHAOS_SEED={seed} repeats it)")
    rnd = random.Random(seed)
    tag = uuid.uuid4().hex[:6]
    async with open_world(kafka_bootstrap, tmp_path, users=2) as w:
        proc = PipelineProcess(w, tmp_path / "pipeline.log", poll_s=0.3)
        await proc.start()
        try:
            for user in w.users:  # warm-up: partitions assigned, first full syncs done
                await crm_contact_in_outlook(w, "Warm", f"Up{uuid.uuid4().hex[:6]}", "", 90, user)
            owner: dict[str, User] = {}
            titles: dict[str, str] = {}  # surname -> its last Outlook-side jobTitle
            for round_no in range(ROUNDS):
                for k in range(CREATES_PER_ROUND):
                    user = rnd.choice(w.users)
                    surname = f"Kill{tag}r{round_no}n{k}"
                    resp = await w.crm(
                        "POST", "contacts", {"firstname": "K", "lastname": surname}, user=user
                    )
                    assert resp.status_code in (200, 201), resp.text
                    owner[surname] = user
                for user in w.users:  # edit in Outlook what has arrived so far
                    for contact in await w.outlook_contacts(user):
                        surname = contact.get("surname") or ""
                        if surname in owner and rnd.random() < 0.5:
                            title = f"T{round_no}-{rnd.randrange(1000)}"
                            resp = await w.outlook(
                                "PATCH", f"contacts/{contact['id']}", {"jobTitle": title}, user=user
                            )
                            assert resp.status_code == 200, resp.text
                            titles[surname] = title
                await asyncio.sleep(rnd.uniform(0.0, 1.5))
                await proc.kill()
                await proc.start()
            assert proc.kills == ROUNDS

            problem: list[str] = []

            async def converged() -> bool | None:
                problem[:] = await _disagreements(w, owner, titles)
                return None if problem else True

            try:
                _, took = await eventually(converged, 120, "every change after the last kill", 0.5)
            except AssertionError as exc:
                raise AssertionError(f"{exc}: {problem}\n{proc.log_text()[-4000:]}") from None
            settled = await _snapshot(w, owner)
            await asyncio.sleep(3)
            assert await _snapshot(w, owner) == settled, "something keeps rewriting (echo loop)"
            print(f"{len(owner)} contacts, {len(titles)} Outlook edits, converged {took:.1f}s")
        finally:
            await proc.kill()


async def _none(problems: Awaitable[list[str]]) -> bool:
    return not await problems


async def _disagreements(w: World, owner: dict[str, User], titles: dict[str, str]) -> list[str]:
    rows = {r["lastname"]: r for r in await w.crm_contacts() if r.get("lastname") in owner}
    outlook: dict[str, list[dict[str, Any]]] = {}
    for user in w.users:
        for contact in await w.outlook_contacts(user):
            if contact.get("surname") in owner:
                outlook.setdefault(contact["surname"], []).append({**contact, "_user": user})
    problems = []
    for surname, user in owner.items():
        copies = outlook.get(surname, [])
        assert len(copies) <= 1, f"{surname}: {len(copies)} Outlook copies"
        if not copies or copies[0]["_user"] != user:
            problems.append(f"{surname}: not in its Outlook mailbox")
        elif surname in titles and rows[surname].get("jobtitle") != titles[surname]:
            problems.append(f"{surname}: CRM jobtitle {rows[surname].get('jobtitle')!r}")
    return problems


async def _snapshot(w: World, owner: dict[str, User]) -> dict[str, tuple[str, ...]]:
    seen: dict[str, tuple[str, ...]] = {}
    for row in await w.crm_contacts():
        if row.get("lastname") in owner:
            seen[f"crm:{row['lastname']}"] = (str(row["versionnumber"]),)
    for user in w.users:
        for contact in await w.outlook_contacts(user):
            if contact.get("surname") in owner:
                seen[f"outlook:{contact['surname']}"] = (contact["changeKey"], user.mailbox_id)
    return seen


@pytest.mark.parametrize("slow_side", ["crm", "outlook"])
async def test_a_slow_event_at_the_head_survives_kill_9(
    kafka_bootstrap: str, tmp_path: Path, slow_side: str
) -> None:
    tag = uuid.uuid4().hex[:6]
    async with open_world(kafka_bootstrap, tmp_path) as w:
        proc = PipelineProcess(w, tmp_path / "pipeline.log", poll_s=0.3)
        await proc.start()
        try:
            a_row, a, _ = await crm_contact_in_outlook(w, "Ann", f"Head{tag}", "", 90)
            b_row, b, _ = await crm_contact_in_outlook(w, "Ben", f"Behind{tag}", "", 30)
            slow = w.dataverse if slow_side == "crm" else w.graph
            fault = {"status": 503, "rate": 1.0, "retry_after": 1, "latency_ms": 1500}
            assert (await w.http.post(f"{slow}/_emulator/faults", json=fault)).status_code < 300
            # the change whose write hangs, then one queued behind it in the same mailbox
            if slow_side == "crm":
                await _outlook_edit(w, a, {"givenName": "Annie"})
                await _outlook_edit(w, b, {"givenName": "Benny"})
            else:
                await _crm_edit(w, a_row, {"firstname": "Annie"})
                await _crm_edit(w, b_row, {"firstname": "Benny"})
            await _wait_for_faults(w, slow, 3)
            await asyncio.sleep(1.0)
            await proc.kill()
            assert (await w.http.delete(f"{slow}/_emulator/faults")).status_code < 300
            assert not await _both_applied(w, slow_side, a_row, b_row, tag), "not slow at all"
            await proc.start()

            async def applied() -> bool | None:
                return True if await _both_applied(w, slow_side, a_row, b_row, tag) else None

            try:
                _, took = await eventually(applied, 60, "the slow change and the one behind", 0.3)
            except AssertionError as exc:
                assert proc.proc is not None
                proc.proc.send_signal(signal.SIGUSR1)  # the worker logs where its tasks wait
                await asyncio.sleep(1)
                tasks = proc.log_text().rpartition("tasks of this worker:")[2]
                raise AssertionError(f"{exc}\n{tasks[-12000:]}") from None
            print(f"\n{slow_side} write reprocessed after kill -9 in {took:.1f}s")
            assert len(by_surname(await w.outlook_contacts(), f"Head{tag}")) == 1
            assert [
                r["contactid"] for r in await w.crm_contacts() if r["lastname"] == f"Head{tag}"
            ] == [a_row]
        finally:
            await proc.kill()


async def _outlook_edit(w: World, contact: dict[str, Any], body: dict[str, Any]) -> None:
    resp = await w.outlook("PATCH", f"contacts/{contact['id']}", body)
    assert resp.status_code == 200, resp.text


async def _crm_edit(w: World, row_id: str, body: dict[str, Any]) -> None:
    resp = await w.crm("PATCH", f"contacts({row_id})", body)
    assert resp.status_code in (200, 204), resp.text


async def _wait_for_faults(w: World, base: str, at_least: int) -> None:
    async def injected() -> int | None:
        stats = (await w.http.get(f"{base}/_emulator/stats")).json()
        count = int(stats.get("faults_injected", stats.get("by_status", {}).get("503", 0)))
        return count if count >= at_least else None

    await eventually(injected, 30, f"{at_least} failed calls to {base}", 0.2)


async def _both_applied(w: World, slow_side: str, a_row: str, b_row: str, tag: str) -> bool:
    if slow_side == "crm":
        names = [(await w.crm_contact(row))["firstname"] for row in (a_row, b_row)]
    else:
        mine = await w.outlook_contacts()
        names = [c.get("givenName") for s in ("Head", "Behind") for c in by_surname(mine, s + tag)]
    return names == ["Annie", "Benny"]
