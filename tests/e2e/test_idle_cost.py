"""What idle mailboxes and CRM tables cost, on the real broker between both emulators, counted
by the emulators' request counters.

The targets: after backoff an idle mailbox costs at most 2 Graph requests a minute, everything
included (To Do polls, safety-net passes, subscription renewals), and an idle CRM table at most
1 Dataverse request a minute. The tests run the default options with every interval divided by
``SCALE`` (a test "minute" lasts 60 / SCALE s; the floors are kept at 0.1 s, they set how soon
the backoff starts, not what idle costs), so the same ratios are checked in about a minute.
Subscription renewals (every 58 hours or so) fall in no window; they add about 0.001 requests a
minute. A count over a window may hold one pass more than the rate for each polled stream (a
window's two ends can both fall on a pass), which the bounds allow. After the window, changes
still arrive: a webhook kind promptly, a polled kind within its ceiling.

``DYNASYNC_IDLE_MEASURE=1`` also runs :func:`test_measure_idle_cost_with_default_settings`: 10
idle mailboxes of one organisation under the default options, a 3-minute backoff (5 without
webhooks: the 180 s ceiling takes 4 minutes to reach), a 15-minute window (one safety-net
interval); it prints the figures (README, "Idle cost")."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from pipeline.runtime import Pipeline, RuntimeOptions
from pipeline.settings import GraphSettings, ReceiverSettings, Settings
from schemas.types import CRM_TABLES
from tests.e2e.world import TOKEN, World, crm_contact_in_outlook, eventually, open_world
from tests.ports import free_port

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(300)]

SCALE = 30.0
MINUTE_S = 60.0 / SCALE
FLOOR_S = 0.1
GRAPH_PER_MINUTE = 2.0
DATAVERSE_PER_TABLE_MINUTE = 1.0
#: What a change needs besides the reader's wait: the engine, the writer, the emulators.
SLACK_S = 5.0


def scaled(webhooks: bool, k: float = SCALE) -> RuntimeOptions:
    """The default options with every interval divided by ``k`` (floors at FLOOR_S)."""
    default = RuntimeOptions()
    return dataclasses.replace(
        default,
        crm_poll_s=FLOOR_S,
        crm_poll_max_s=default.crm_poll_max_s / k,
        outlook_poll_s=FLOOR_S,
        outlook_poll_max_s=default.outlook_ceiling(webhooks) / k,
        safety_net_s=default.safety_net_s / k,
    )


def with_webhooks(settings: Settings) -> Settings:
    """``settings`` with the webhook receiver on a free port of 127.0.0.1."""
    port = free_port()
    graph = GraphSettings(
        base_url=settings.graph.base_url,
        static_token=TOKEN,
        notification_url=f"http://127.0.0.1:{port}",
    )
    receiver = ReceiverSettings(host="127.0.0.1", port=port)
    return settings.model_copy(update={"graph": graph, "receiver": receiver})


async def requests(w: World) -> tuple[int, int]:
    """(Graph, Dataverse) requests answered so far, every kind of request included."""
    counts = []
    for root in (w.graph, w.dataverse):
        resp = await w.http.get(f"{root}/_emulator/stats")
        assert resp.status_code == 200, resp.text
        counts.append(int(resp.json()["total"]))
    return counts[0], counts[1]


@dataclasses.dataclass(frozen=True)
class Window:
    """Requests over ``seconds`` of idling: per mailbox and per table, per (test) minute."""

    seconds: float
    graph: int
    dataverse: int
    mailboxes: int
    tables: int

    def graph_per_mailbox_minute(self, minute_s: float = 60.0) -> float:
        return self.graph / self.mailboxes / (self.seconds / minute_s)

    def dataverse_per_table_minute(self, minute_s: float = 60.0) -> float:
        return self.dataverse / self.tables / (self.seconds / minute_s)


async def idle_window(w: World, backoff_s: float, window_s: float) -> Window:
    """Let the readers back off for ``backoff_s``, then count requests over ``window_s``."""
    await asyncio.sleep(backoff_s)
    graph0, dataverse0 = await requests(w)
    started = time.monotonic()
    await asyncio.sleep(window_s)
    graph1, dataverse1 = await requests(w)
    return Window(
        time.monotonic() - started,
        graph1 - graph0,
        dataverse1 - dataverse0,
        len(w.users),
        len(CRM_TABLES),
    )


async def todo_task(w: World, subject: str) -> dict[str, Any] | None:
    """The To Do task titled ``subject`` with its list id, if there is one."""
    for lst in (await w.outlook("GET", "todo/lists")).json()["value"]:
        tasks = (await w.outlook("GET", f"todo/lists/{lst['id']}/tasks")).json()["value"]
        found = [t for t in tasks if t.get("title") == subject]
        if found:
            return {**found[0], "list_id": lst["id"]}
    return None


def crm_field(w: World, path: str, field: str, value: str) -> Callable[[], Awaitable[bool | None]]:
    """A probe: True once the CRM row at ``path`` has ``field`` = ``value``."""

    async def probe() -> bool | None:
        row = (await w.crm("GET", path)).json()
        return True if row.get(field) == value else None

    return probe


def holds(check: Callable[[], bool]) -> Callable[[], Awaitable[bool | None]]:
    """A probe of something in this process."""

    async def probe() -> bool | None:
        return True if check() else None

    return probe


async def test_idle_cost_with_webhooks_and_changes_after_the_backoff(world: World) -> None:
    w = world
    options = scaled(webhooks=True)
    ceiling = options.outlook_ceiling(True)
    async with Pipeline(with_webhooks(w.settings), w.store.snapshot, options) as pipeline:
        # activity first: a CRM contact and a CRM task reach Outlook (they are edited later)
        last = f"Idle{uuid.uuid4().hex[:6]}"
        row_id, contact, _ = await crm_contact_in_outlook(w, "Ida", last, "ida@x.test", 90)
        subject = f"Idle task {uuid.uuid4().hex[:6]}"
        created = await w.crm("POST", "tasks", {"subject": subject})
        assert created.status_code in (200, 201), created.text
        task_id = created.json()["activityid"]
        todo, _ = await eventually(lambda: todo_task(w, subject), 60, "the CRM task in To Do")
        runner = pipeline.mailbox_runner(w.mailbox_id)
        assert runner is not None
        full_before = runner.full_passes

        # idle: 3 (test) minutes of backoff, then 15 counted, so a safety-net pass falls in it
        window = await idle_window(w, 3 * MINUTE_S, 15 * MINUTE_S)
        streams_polled = 1  # the To Do list; the safety net's passes are inside the rate
        graph_bound = GRAPH_PER_MINUTE * window.seconds / MINUTE_S + streams_polled
        dataverse_bound = (
            DATAVERSE_PER_TABLE_MINUTE * window.seconds / MINUTE_S + 1
        ) * window.tables
        print(
            f"\nidle, webhooks on, per test minute: Graph "
            f"{window.graph_per_mailbox_minute(MINUTE_S):.2f} per mailbox, Dataverse "
            f"{window.dataverse_per_table_minute(MINUTE_S):.2f} per table "
            f"({window.graph} and {window.dataverse} requests in {window.seconds:.1f} s)"
        )
        assert window.graph <= graph_bound, window
        assert window.dataverse <= dataverse_bound, window
        assert runner.full_passes > full_before  # the safety net ran (and was counted)
        assert runner.pacer.level_s == ceiling  # backed off
        assert window.graph >= window.seconds / ceiling - 1  # and still polling To Do

        # a polled kind (To Do) after the backoff: within its ceiling
        resp = await w.outlook(
            "PATCH", f"todo/lists/{todo['list_id']}/tasks/{todo['id']}", {"title": f"{subject}!"}
        )
        assert resp.status_code == 200, resp.text
        probe = crm_field(w, f"tasks({task_id})", "subject", f"{subject}!")
        _, todo_took = await eventually(probe, ceiling + SLACK_S + 5, "the To Do edit in CRM")
        assert todo_took <= ceiling + SLACK_S

        # a CRM change after the contact table backed off: within the CRM ceiling
        resp = await w.crm("PATCH", f"contacts({row_id})", {"jobtitle": "Keeper"})
        assert resp.status_code in (200, 204), resp.text

        async def in_outlook() -> bool | None:
            found = await w.outlook("GET", f"contacts/{contact['id']}")
            return True if found.json().get("jobTitle") == "Keeper" else None

        _, crm_took = await eventually(in_outlook, options.crm_poll_max_s + SLACK_S + 5, "CRM")
        assert crm_took <= options.crm_poll_max_s + SLACK_S

        # a webhook kind: promptly, and its pass wakes the mailbox's To Do poll
        wakes = runner.wakes
        resp = await w.outlook("PATCH", f"contacts/{contact['id']}", {"givenName": "Idalia"})
        assert resp.status_code == 200, resp.text
        probe = crm_field(w, f"contacts({row_id})", "firstname", "Idalia")
        _, hook_took = await eventually(probe, 30, "the Outlook contact edit in CRM")
        assert hook_took <= SLACK_S
        await eventually(holds(lambda: runner.wakes > wakes), 5, "a wake of the To Do poll")
    print(
        f"after the backoff: To Do -> CRM {todo_took:.2f} s (ceiling {ceiling:g} s), "
        f"CRM -> Outlook {crm_took:.2f} s (ceiling {options.crm_poll_max_s:g} s), "
        f"Outlook contact -> CRM {hook_took:.2f} s (webhook)"
    )


async def test_idle_cost_without_webhooks_and_a_change_after_the_backoff(world: World) -> None:
    w = world
    options = scaled(webhooks=False)
    ceiling = options.outlook_ceiling(False)
    async with Pipeline(w.settings, w.store.snapshot, options) as pipeline:
        last = f"Poll{uuid.uuid4().hex[:6]}"
        row_id, contact, _ = await crm_contact_in_outlook(w, "Polly", last, "po@x.test", 90)
        runner = pipeline.mailbox_runner(w.mailbox_id)
        assert runner is not None

        # the backoff to a 180 s ceiling takes about 4 minutes; then 9 minutes (3 passes)
        window = await idle_window(w, 5 * MINUTE_S, 9 * MINUTE_S)
        streams_polled = 5  # inbox, sent items, contacts, calendar, To Do
        graph_bound = GRAPH_PER_MINUTE * window.seconds / MINUTE_S + streams_polled
        print(
            f"\nidle, webhooks off, per test minute: Graph "
            f"{window.graph_per_mailbox_minute(MINUTE_S):.2f} per mailbox "
            f"({window.graph} requests in {window.seconds:.1f} s)"
        )
        assert window.graph <= graph_bound, window
        assert runner.pacer.level_s == ceiling

        # an Outlook edit after the backoff: within the ceiling
        resp = await w.outlook("PATCH", f"contacts/{contact['id']}", {"givenName": "Pollyanna"})
        assert resp.status_code == 200, resp.text
        probe = crm_field(w, f"contacts({row_id})", "firstname", "Pollyanna")
        _, took = await eventually(probe, ceiling + SLACK_S + 5, "the Outlook edit in CRM")
        assert took <= ceiling + SLACK_S
    print(f"after the backoff: Outlook -> CRM {took:.2f} s (ceiling {ceiling:g} s)")


@pytest.mark.skipif(
    os.environ.get("DYNASYNC_IDLE_MEASURE") != "1",
    reason="a 20-minute measurement: DYNASYNC_IDLE_MEASURE=1 runs it",
)
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("webhooks", [True, False], ids=["webhooks", "polling"])
async def test_measure_idle_cost_with_default_settings(
    kafka_bootstrap: str, tmp_path: Path, webhooks: bool
) -> None:
    mailboxes = 10
    # the backoff reaches the ceiling after about 1 minute with webhooks (60 s), 4 without (180)
    backoff_s = 180.0 if webhooks else 300.0
    # 15 minutes: one safety-net interval (its passes count), five 180 s polls
    window_s = 900.0
    async with open_world(kafka_bootstrap, tmp_path, users=mailboxes) as w:
        settings = with_webhooks(w.settings) if webhooks else w.settings
        async with Pipeline(settings, w.store.snapshot, RuntimeOptions()) as pipeline:

            def first_passes_done() -> bool:
                runners = [pipeline.mailbox_runner(u.mailbox_id) for u in w.users]
                return all(r is not None and r.passes > 0 for r in runners)

            await eventually(holds(first_passes_done), 120, "every mailbox's first pass")
            window = await idle_window(w, backoff_s, window_s)
    mode = "webhooks on" if webhooks else "webhooks off (polling)"
    print(
        f"\nidle cost, {mode}, {mailboxes} mailboxes of one organisation, "
        f"{backoff_s:g} s backoff, {window_s:g} s window: Graph {window.graph} requests = "
        f"{window.graph_per_mailbox_minute():.2f} per mailbox per minute; Dataverse "
        f"{window.dataverse} requests = {window.dataverse_per_table_minute():.2f} per table "
        f"per minute ({window.tables} tables: "
        f"{window.dataverse / (window.seconds / 60):.2f} per organisation per minute)"
    )
    minutes = window.seconds / 60
    edge = 5  # a window's two ends may both fall on a pass: one pass of every stream more
    assert window.graph <= mailboxes * (GRAPH_PER_MINUTE * minutes + edge), window
    assert window.dataverse <= window.tables * (DATAVERSE_PER_TABLE_MINUTE * minutes + 1), window
