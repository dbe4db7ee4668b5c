"""A CRM table's reader against the Dataverse emulator in this process, paced: one idle round
costs one Dataverse request, idle rounds back off to the ceiling and then cost at most one
request per ceiling, and a row created after the backoff is read in the next round, which
brings the wait back to the floor."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from connectors.dataverse.publisher import CrmTableReader
from connectors.dataverse.reader import DataverseChangeSource
from connectors.dataverse.writer import DataverseWriter
from connectors.pacing import Pacer
from connectors.store import MemoryCursorStore, MemoryPublisher
from tests.contract.dataverse_connector.fixtures import USER_A, Emulator, MakeEmulator
from tests.contract.dataverse_connector.fixtures import make_emulator as make_emulator
from tests.contract.dataverse_connector.helpers import ORG, command

pytestmark = pytest.mark.timeout(60)

FLOOR, CEILING = 0.01, 0.16


class Recording(Pacer):
    """A pacer that records every (changed, wait) it was asked for."""

    def __init__(self) -> None:
        super().__init__(FLOOR, CEILING, rand=lambda: 0.0)
        self.rounds: list[tuple[bool, float]] = []

    def next_wait(self, changed: bool) -> float:
        wait = super().next_wait(changed)
        self.rounds.append((changed, wait))
        return wait


async def total_requests(dv: Emulator) -> int:
    stats: dict[str, Any] = await dv.control("GET", "stats")
    return int(stats["total"])


async def until(check: Any, within: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not check():
        assert loop.time() < deadline, f"{what}: not within {within}s"
        await asyncio.sleep(0.005)


async def test_an_idle_table_backs_off_and_a_new_row_still_arrives(
    make_emulator: MakeEmulator,
) -> None:
    dv = await make_emulator()
    publisher = MemoryPublisher()
    source = DataverseChangeSource(dv.client, org_id=ORG, table="contact")
    reader = CrmTableReader(source, publisher, MemoryCursorStore(), raw_topic="crm.raw")
    pacer = Recording()
    task = asyncio.create_task(reader.run(pacer))
    try:
        await until(lambda: len(pacer.rounds) >= 6, 10, "the backoff")
        assert [w for _, w in pacer.rounds[:6]] == [0.02, 0.04, 0.08, 0.16, 0.16, 0.16]

        # one idle round is one request; the rounds of a window are at most window / ceiling
        rounds, before = len(pacer.rounds), await total_requests(dv)
        await asyncio.sleep(1.0)
        requests = await total_requests(dv) - before
        in_window = len(pacer.rounds) - rounds
        assert abs(requests - in_window) <= 1  # a round may straddle the window's ends
        assert requests <= 1.0 / CEILING + 1, requests
        assert all(not changed for changed, _ in pacer.rounds)

        outcomes = await DataverseWriter(dv.client, org_id=ORG).apply(
            [command("contact", "create", fields={"lastname": "Late"}, run_as=USER_A)]
        )
        assert [o.status for o in outcomes] == ["applied"]
        await until(lambda: publisher.on("crm.raw"), CEILING + 2.0, "the new row on crm.raw")
        await until(lambda: any(c for c, _ in pacer.rounds), 2.0, "a round that published")
        first = next(i for i, (c, _) in enumerate(pacer.rounds) if c)
        assert pacer.rounds[first] == (True, FLOOR)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
