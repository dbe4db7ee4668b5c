"""One mailbox throttled at 100% does not hold up the others' writes.

Three mailboxes on two partitions (so two of them share one) sync CRM contacts to Outlook. The
Graph emulator then answers every request of the first mailbox with 429 for a while: contacts
created meanwhile for the other two arrive as fast as before (median within 1 s of the
unthrottled median), and once the throttling ends the first mailbox's contact arrives, once.
"""

from __future__ import annotations

import asyncio
import statistics
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.world import User, World, by_surname, crm_contact_in_outlook, eventually, open_world

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(300)]

THROTTLED_S = 60.0  # as issue 10 asks: a minute of 429s for one mailbox
ROUNDS = 4


async def _latencies(w: World, users: list[User], tag: str) -> list[float]:
    took: list[float] = []
    for n in range(ROUNDS):
        for user in users:
            last = f"{tag}{n}{uuid.uuid4().hex[:6]}"
            _, _, seconds = await crm_contact_in_outlook(w, "Iso", last, "i@x.test", 30, user)
            took.append(seconds)
    return took


async def test_a_throttled_mailbox_delays_no_other_mailbox(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    async with open_world(kafka_bootstrap, tmp_path, users=3) as w, w.pipeline():
        slow, *others = w.users
        for user in w.users:  # warm-up: assignment and first syncs (not timed)
            await crm_contact_in_outlook(
                w, "Warm", f"Up{uuid.uuid4().hex[:6]}", "w@x.test", 90, user
            )
        before = await _latencies(w, others, "Before")

        fault = {"status": 429, "rate": 1.0, "retry_after": 1, "mailbox": slow.mailbox_id}
        assert (await w.http.post(f"{w.graph}/_emulator/faults", json=fault)).status_code < 300
        started = asyncio.get_running_loop().time()
        stuck = f"Stuck{uuid.uuid4().hex[:6]}"
        resp = await w.crm("POST", "contacts", {"firstname": "Slow", "lastname": stuck}, user=slow)
        assert resp.status_code in (200, 201), resp.text
        during = await _latencies(w, others, "During")
        assert asyncio.get_running_loop().time() - started < THROTTLED_S, "still throttling"
        await asyncio.sleep(max(0.0, THROTTLED_S - (asyncio.get_running_loop().time() - started)))
        assert (await w.http.delete(f"{w.graph}/_emulator/faults")).status_code < 300

        async def arrived() -> list[dict[str, Any]] | None:
            found = by_surname(await w.outlook_contacts(slow), stuck)
            return found or None

        await eventually(arrived, 60, "the throttled mailbox's contact after the throttling")
        await asyncio.sleep(2)
        assert len(by_surname(await w.outlook_contacts(slow), stuck)) == 1

    print(
        f"\nother mailboxes CRM->Outlook: median {statistics.median(before):.2f}s before, "
        f"{statistics.median(during):.2f}s while one mailbox was throttled (max {max(during):.2f}s)"
    )
    assert statistics.median(during) <= statistics.median(before) + 1.0, (before, during)
