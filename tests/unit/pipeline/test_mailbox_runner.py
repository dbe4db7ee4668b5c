"""A mailbox's Outlook reader under MailboxRunner, against the Graph emulator in this process:
a deleted user becomes failing once, is retried and disabled with a bounded number of log lines;
a user created again under the same UPN syncs again from a freshly looked-up To Do list; a 503
burst is retried quietly and never counts as failing; a To Do list id that went stale is looked
up again."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from aiohttp.test_utils import TestServer

from connectors.errors import (
    AuthError,
    BadRequestError,
    ConnectorError,
    ForbiddenError,
    NotFoundError,
    ThrottledError,
    TransientError,
)
from connectors.graph.reader import GraphDeltaSource, mailbox_streams
from connectors.graph.sync import OutlookReader
from connectors.graph.transport import GraphTransport
from connectors.http import RetryPolicy
from connectors.store import MemoryCursorStore, MemoryPublisher
from emulators.graph import EmulatorConfig, create_app
from pipeline.mailbox_runner import MailboxRunner, RunnerPolicy, mailbox_level

pytestmark = pytest.mark.timeout(60)

TOKEN = "runner-test-token"
UPN = "ada@contoso.test"
LOGGER = "pipeline.mailbox_runner"


@dataclass
class Hooks:
    """The runtime's side, recorded; ``forget`` drops the cached streams as the runtime does."""

    streams: dict[str, list[GraphDeltaSource]]
    calls: list[tuple[str, str]] = field(default_factory=list)

    def forget(self, mailbox_id: str) -> None:
        self.calls.append(("forget", mailbox_id))
        self.streams.pop(mailbox_id, None)

    async def failing(self, mailbox_id: str, error: str) -> None:
        self.calls.append(("failing", error))

    async def recovered(self, mailbox_id: str) -> None:
        self.calls.append(("recovered", mailbox_id))

    async def disable(self, mailbox_id: str, reason: str) -> None:
        self.calls.append(("disable", reason))

    def named(self, what: str) -> list[str]:
        return [arg for name, arg in self.calls if name == what]


@dataclass
class Env:
    http: httpx.AsyncClient
    root: str
    hooks: Hooks
    reader: OutlookReader
    streams: dict[str, list[GraphDeltaSource]]

    async def graph(self, method: str, path: str, body: Any = None) -> httpx.Response:
        return await self.http.request(method, f"{self.root}/v1.0/{path}", json=body)

    async def control(self, method: str, path: str, body: Any = None) -> None:
        resp = await self.http.request(method, f"{self.root}/_emulator/{path}", json=body)
        assert resp.status_code < 300, resp.text

    async def create_user(self) -> str:
        resp = await self.graph("POST", "users", {"userPrincipalName": UPN, "displayName": "Ada"})
        assert resp.status_code == 201, resp.text
        return str(resp.json()["id"])

    def todo_list_ids(self) -> list[str]:
        cached = self.streams.get(UPN, [])
        return [s.stream.name for s in cached if s.stream.kind == "task"]

    def runner(self, **policy: Any) -> MailboxRunner:
        async def sync(full: bool) -> int:
            results = await self.reader.sync_mailbox(UPN, None if full else ("task", "contact"))
            return sum(r.published for r in results)

        defaults: dict[str, Any] = {
            "poll_s": 0.05,
            "restart_delay_s": 0.01,
            "max_restart_delay_s": 0.05,
            "summary_every_s": 60.0,
            "failing_tries": 3,
            "failing_retry_s": 0.05,
        }
        return MailboxRunner(
            UPN, f"Outlook reader for {UPN}", sync, self.hooks, RunnerPolicy(**defaults | policy)
        )


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    server = TestServer(create_app(EmulatorConfig()), host="127.0.0.1")
    await server.start_server()
    root = str(server.make_url("")).rstrip("/")
    streams: dict[str, list[GraphDeltaSource]] = {}

    async def token() -> str:
        return TOKEN

    async with httpx.AsyncClient(timeout=10, headers={"Authorization": f"Bearer {TOKEN}"}) as http:
        transport = GraphTransport(
            http, f"{root}/v1.0", token, policy=RetryPolicy(attempts=1), timeout_s=5
        )

        async def streams_for(mailbox_id: str) -> list[GraphDeltaSource]:
            if mailbox_id not in streams:
                found = await mailbox_streams(transport, mailbox_id, folders=("inbox",))
                streams[mailbox_id] = [GraphDeltaSource(transport, s, org_id="o") for s in found]
            return streams[mailbox_id]

        reader = OutlookReader(
            streams_for, MemoryPublisher(), MemoryCursorStore(), changes_topic="changes"
        )
        try:
            yield Env(http, root, Hooks(streams), reader, streams)
        finally:
            await server.close()


async def until(check: Callable[[], bool | Awaitable[bool]], within: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        result = check()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            raise AssertionError(f"{what}: not within {within}s")
        await asyncio.sleep(0.02)


def lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == LOGGER]


async def test_a_deleted_user_fails_once_is_retried_and_disabled(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    await env.create_user()
    runner = env.runner(failing_tries=3)
    task = asyncio.create_task(runner.run())
    try:
        await until(lambda: runner.passes >= 2, 10, "two passes")
        assert (await env.graph("DELETE", f"users/{UPN}")).status_code == 204
        await asyncio.wait_for(task, 10)  # it ends once the mailbox is disabled
    finally:
        task.cancel()
    assert runner.state == "disabled" and runner.failed_tries == 3
    (error,) = env.hooks.named("failing")  # one failing state, one alert
    assert "NotFoundError" in error and "404" in error
    (reason,) = env.hooks.named("disable")
    assert reason.startswith("disabled after 3 failed tries: NotFoundError")
    assert env.hooks.named("recovered") == []
    records = lines(caplog)
    assert len(records) <= 4, [r.getMessage() for r in records]  # failing, 2 tries, disabled
    assert not any(r.exc_info for r in records)  # no tracebacks


async def test_a_user_created_again_under_the_same_upn_syncs_from_new_ids(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    old_id = await env.create_user()
    runner = env.runner(failing_tries=1000, failing_retry_s=0.05)
    task = asyncio.create_task(runner.run())
    try:
        await until(lambda: runner.passes >= 1, 10, "the first pass")
        old_lists = env.todo_list_ids()
        assert len(old_lists) == 1
        assert (await env.graph("DELETE", f"users/{UPN}")).status_code == 204
        await until(lambda: runner.state == "failing", 10, "failing")
        await until(lambda: runner.failed_tries >= 3, 10, "three failed tries")
        assert await env.create_user() != old_id
        await until(lambda: runner.state == "ok", 10, "syncing again")
        passes = runner.passes
        await until(lambda: runner.passes >= passes + 2, 10, "two more passes")
    finally:
        task.cancel()
    assert len(env.hooks.named("failing")) == 1
    assert env.hooks.named("recovered") == [UPN]
    assert env.hooks.named("disable") == []
    new_lists = env.todo_list_ids()
    assert len(new_lists) == 1 and new_lists != old_lists  # the To Do list was looked up again
    assert runner.failed_tries == 0 and runner.last_error is None


async def test_a_503_burst_is_retried_quietly_and_never_failing(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    await env.create_user()
    runner = env.runner(summary_every_s=0.5)
    task = asyncio.create_task(runner.run())
    try:
        await until(lambda: runner.passes >= 1, 10, "the first pass")
        await env.control("POST", "faults", {"status": 503, "rate": 1, "mailbox": UPN})
        await until(lambda: runner.state == "retrying", 10, "retrying")
        await asyncio.sleep(2.5)
        assert runner.state == "retrying"
        await env.control("DELETE", "faults")
        await until(lambda: runner.state == "ok", 10, "recovered")
        passes = runner.passes
        await until(lambda: runner.passes > passes, 10, "another pass")
    finally:
        task.cancel()
    assert env.hooks.calls == []  # never failing, no caches dropped
    records = lines(caplog)
    messages = [r.getMessage() for r in records]
    assert messages[0].startswith(f"Outlook reader for {UPN} failing, retrying with backoff")
    assert "ThrottledError" in messages[0] and "503" in messages[0]
    assert any(" failing for " in m and " tries): ThrottledError" in m for m in messages)
    assert messages[-1].startswith(f"Outlook reader for {UPN} recovered after")
    assert len(records) <= 8, messages  # about one summary per 0.5 s, not one per try
    assert not any(r.exc_info for r in records)


async def test_a_stale_todo_list_id_is_looked_up_again(env: Env) -> None:
    await env.create_user()
    created = await env.graph("POST", f"users/{UPN}/todo/lists", {"displayName": "Projects"})
    assert created.status_code == 201, created.text
    extra = f"todo:{created.json()['id']}"
    runner = env.runner()
    task = asyncio.create_task(runner.run())
    try:
        await until(lambda: runner.passes >= 1, 10, "the first pass")
        both = env.todo_list_ids()
        assert len(both) == 2 and extra in both
        deleted = await env.graph("DELETE", f"users/{UPN}/todo/lists/{created.json()['id']}")
        assert deleted.status_code == 204, deleted.text
        await until(lambda: len(env.todo_list_ids()) == 1, 10, "the lists looked up again")
        passes = runner.passes
        await until(lambda: runner.passes > passes, 10, "another pass")
    finally:
        task.cancel()
    assert env.todo_list_ids() == [i for i in both if i != extra]
    assert [name for name, _ in env.hooks.calls] == ["forget"]
    assert runner.state == "ok"


@pytest.mark.parametrize(
    ("error", "level"),
    [
        (NotFoundError("x", status=404, code="ErrorItemNotFound"), True),
        (NotFoundError("x", status=404, code="MailboxNotEnabledForRESTAPI"), True),
        (ForbiddenError("x", status=403, code="ErrorAccessDenied"), True),
        (ForbiddenError("x", status=403, code="Authorization_RequestDenied"), True),
        (AuthError("x", status=401, code="InvalidAuthenticationToken"), True),
        (BadRequestError("x", status=400, code="MailboxNotEnabledForRESTAPI"), True),
        (AuthError("credential returned no access token"), False),
        (TransientError("x", status=503), False),
        (ThrottledError("x", retry_after=1.0), False),
        (BadRequestError("x", status=400, code="BadRequest"), False),
        (ConnectorError("x", status=409), False),
        (ValueError("a bug"), False),
    ],
)
def test_what_counts_as_a_mailbox_failure(error: Exception, level: bool) -> None:
    assert mailbox_level(error) is level


def test_runner_policy_is_checked() -> None:
    with pytest.raises(ValueError):
        RunnerPolicy(failing_tries=0)
    with pytest.raises(ValueError):
        RunnerPolicy(restart_delay_s=5, max_restart_delay_s=1)
    with pytest.raises(ValueError):
        RunnerPolicy(failing_retry_s=0)


class _NoHooks:
    def forget(self, mailbox_id: str) -> None:
        raise AssertionError("no failure expected")

    async def failing(self, mailbox_id: str, error: str) -> None:
        raise AssertionError("no failure expected")

    async def recovered(self, mailbox_id: str) -> None:
        raise AssertionError("no failure expected")

    async def disable(self, mailbox_id: str, reason: str) -> None:
        raise AssertionError("no failure expected")


async def test_full_passes_share_a_gate_and_incremental_passes_do_not_wait() -> None:
    """Twelve mailboxes starting together make their first (full) passes two at a time, while
    a mailbox already through its full pass keeps polling."""
    gate = asyncio.Semaphore(2)
    full_now, full_peak, full_done = 0, 0, 0
    incremental_while_gate_busy = 0
    all_full = asyncio.Event()

    def make_sync() -> Callable[[bool], Awaitable[int]]:
        async def sync(full: bool) -> int:
            nonlocal full_now, full_peak, full_done, incremental_while_gate_busy
            if not full:
                if full_now:
                    incremental_while_gate_busy += 1
                await asyncio.sleep(0)
                return 0
            full_now += 1
            full_peak = max(full_peak, full_now)
            await asyncio.sleep(0.02)
            full_now -= 1
            full_done += 1
            if full_done == 12:
                all_full.set()
            return 1

        return sync

    runners = [
        MailboxRunner(
            f"m{i}",
            f"m{i}",
            make_sync(),
            _NoHooks(),
            RunnerPolicy(poll_s=0.005),
            full_gate=gate,
        )
        for i in range(12)
    ]
    tasks = [asyncio.create_task(r.run()) for r in runners]
    try:
        await asyncio.wait_for(all_full.wait(), 10)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    assert full_peak == 2
    assert all(r.full_passes == 1 for r in runners)
    assert incremental_while_gate_busy > 0
