"""How a mailbox's Outlook reader paces its polls: idle passes grow the wait to the ceiling, a
pass that published brings it back to the floor, a safety-net full pass runs on time (fake
clock), ``wake()`` ends a long wait at once, and a notification pass that found changes is
reported so the runtime can wake the mailbox's poller."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from aiohttp.test_utils import TestServer

from connectors.graph.notifications import NotificationRecord
from connectors.graph.reader import GraphDeltaSource, mailbox_streams
from connectors.graph.sync import OutlookReader
from connectors.graph.transport import GraphTransport
from connectors.http import RetryPolicy
from connectors.store import MemoryCursorStore, MemoryPublisher
from emulators.graph import EmulatorConfig, create_app
from pipeline.mailbox_runner import MailboxRunner, RunnerPolicy

pytestmark = pytest.mark.timeout(60)

MAILBOX = "ada@contoso.test"


class Hooks:
    """A runtime that is never asked anything in these tests."""

    def forget(self, mailbox_id: str) -> None:
        raise AssertionError("forget")

    async def failing(self, mailbox_id: str, error: str) -> None:
        raise AssertionError("failing")

    async def recovered(self, mailbox_id: str) -> None:
        raise AssertionError("recovered")

    async def disable(self, mailbox_id: str, reason: str) -> None:
        raise AssertionError("disable")


class Script:
    """A sync pass that publishes what it is told, records each pass (full or not, and the
    runner's wait before it) and moves a fake clock on by ``step_s``."""

    def __init__(self, published: list[int], step_s: float = 0.0) -> None:
        self.published = list(published)
        self.step_s = step_s
        self.now = 0.0
        self.full: list[bool] = []
        self.waits: list[float] = []
        self.runner: MailboxRunner | None = None

    def clock(self) -> float:
        return self.now

    async def __call__(self, full: bool) -> int:
        assert self.runner is not None
        self.full.append(full)
        self.waits.append(self.runner.wait_s)
        self.now += self.step_s
        return self.published.pop(0) if self.published else 0


def runner(script: Script, **policy: Any) -> MailboxRunner:
    made = MailboxRunner(
        MAILBOX,
        "test reader",
        script,
        Hooks(),
        RunnerPolicy(**policy),
        clock=script.clock,
        rand=lambda: 0.0,  # no jitter: exact waits
    )
    script.runner = made
    return made


async def reach(r: MailboxRunner, n: int, within: float = 10.0) -> None:
    """Wait until the running ``r`` made ``n`` passes."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while r.passes < n:
        assert loop.time() < deadline, f"{r.passes} passes of {n} within {within}s"
        await asyncio.sleep(0.002)


async def passes(r: MailboxRunner, n: int) -> None:
    """Run ``r`` until it made ``n`` passes."""
    task = asyncio.create_task(r.run())
    try:
        await reach(r, n)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_idle_passes_grow_the_wait_and_a_pass_that_published_resets_it() -> None:
    script = Script([0, 0, 0, 0, 0, 0, 5, 0, 0])
    r = runner(script, poll_s=0.001, max_poll_s=0.016)
    await passes(r, 9)
    # the wait before passes 2..9: doubling to the ceiling, the floor after the pass of 5
    assert script.waits[1:9] == [0.002, 0.004, 0.008, 0.016, 0.016, 0.016, 0.001, 0.002]
    assert script.full[:3] == [True, False, False]  # only the first pass is a full one


async def test_without_a_ceiling_the_poll_is_steady() -> None:
    script = Script([0, 3, 0, 0])
    r = runner(script, poll_s=0.002)
    await passes(r, 5)
    assert script.waits[1:5] == [0.002] * 4


async def test_a_safety_net_full_pass_runs_every_full_every_s() -> None:
    script = Script([], step_s=100.0)  # each pass takes 100 s of the fake clock
    r = runner(script, poll_s=0.001, max_poll_s=0.001, full_every_s=250.0)
    await passes(r, 10)
    # a full pass when 250 s have passed since the end of the last one
    assert script.full[:10] == [True, False, False, False, True, False, False, False, True, False]
    assert r.full_passes == script.full.count(True)


async def test_the_wait_is_cut_so_the_safety_net_is_not_late() -> None:
    script = Script([])  # the fake clock stands still: the net falls due 0.03 s after a pass
    r = runner(script, poll_s=1.0, max_poll_s=60.0, full_every_s=0.03)
    task = asyncio.create_task(r.run())
    try:
        await reach(r, 1)
        assert r.wait_s == 0.03  # not the pacer's 2.0
    finally:
        task.cancel()


async def test_wake_ends_a_long_wait_and_brings_the_poll_back_to_the_floor() -> None:
    script = Script([0, 0, 0, 0, 0])
    r = runner(script, poll_s=1.0, max_poll_s=60.0)
    task = asyncio.create_task(r.run())
    try:
        await reach(r, 1)
        assert r.wait_s == 2.0
        await asyncio.sleep(0.2)
        assert r.passes == 1  # waiting its 2 s
        r.wake()
        await reach(r, 2, within=1.0)  # not the 1.8 s left of the wait
        await asyncio.sleep(0.01)
        assert r.wait_s == 2.0  # back at the floor, then one idle pass: not 4.0
    finally:
        task.cancel()


def test_runner_policy_refuses_a_ceiling_below_the_floor_and_a_bad_net() -> None:
    with pytest.raises(ValueError, match="max_poll_s"):
        RunnerPolicy(poll_s=5.0, max_poll_s=1.0)
    with pytest.raises(ValueError, match="full_every_s"):
        RunnerPolicy(full_every_s=0.0)


@pytest.fixture
async def graph() -> AsyncIterator[tuple[httpx.AsyncClient, str, GraphTransport]]:
    server = TestServer(create_app(EmulatorConfig()), host="127.0.0.1")
    await server.start_server()
    root = str(server.make_url("")).rstrip("/")

    async def token() -> str:
        return "t"

    try:
        async with httpx.AsyncClient(timeout=10, headers={"Authorization": "Bearer t"}) as http:
            transport = GraphTransport(
                http, f"{root}/v1.0", token, policy=RetryPolicy(attempts=1), timeout_s=5
            )
            yield http, root, transport
    finally:
        await server.close()


async def test_a_notification_pass_that_published_reports_the_mailbox(
    graph: tuple[httpx.AsyncClient, str, GraphTransport],
) -> None:
    http, root, transport = graph
    resp = await http.post(
        f"{root}/v1.0/users", json={"userPrincipalName": MAILBOX, "displayName": "Ada"}
    )
    assert resp.status_code == 201, resp.text
    streams: dict[str, list[GraphDeltaSource]] = {}

    async def streams_for(mailbox_id: str) -> list[GraphDeltaSource]:
        if mailbox_id not in streams:
            found = await mailbox_streams(transport, mailbox_id, folders=("inbox",))
            streams[mailbox_id] = [GraphDeltaSource(transport, s, org_id="o") for s in found]
        return streams[mailbox_id]

    active: list[str] = []
    reader = OutlookReader(
        streams_for,
        MemoryPublisher(),
        MemoryCursorStore(),
        changes_topic="changes",
        on_changes=active.append,
    )
    note = NotificationRecord(
        mailbox_id=MAILBOX,
        resource_kind="contacts",
        subscription_id="s1",
        received_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        change_type="created",
    )
    await reader.handle([note])  # the first pass: nothing in the mailbox yet
    assert active == []
    created = await http.post(f"{root}/v1.0/users/{MAILBOX}/contacts", json={"surname": "Lee"})
    assert created.status_code == 201, created.text
    results = await reader.handle([note, note])  # coalesced: one pass
    assert [r.published for r in results] == [1]
    assert active == [MAILBOX]
    await reader.handle([note])  # nothing new
    assert active == [MAILBOX]
