"""The end-to-end benchmark harness at a tiny size on the real broker, so it cannot rot
unnoticed: both emulators and a `dynasync run` worker as processes, 1 mailbox x 5 contacts
each way, the report's shape, the duplicate check firing on a planted duplicate, and a short
idle window through the counting proxies."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench.e2e.report import failures, judge, plot_svg, summary
from bench.e2e.scenarios import Where, check, idle_scenario, item_name, item_names, sync_scenario
from bench.e2e.stack import BenchUser, E2EStack

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(240)]

ITEMS = 5


async def test_first_sync_report_and_a_planted_duplicate_fails_it(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    clean: list[bool] = []

    async def plant_duplicate(stack: E2EStack, users: list[BenchUser]) -> None:
        names = item_names(stack, "crm_to_outlook", users, ITEMS)
        target, source = await check(stack, "crm_to_outlook", users, names)
        clean.append(target.ok and source.ok)
        twin = {"givenName": "Bench", "surname": item_name(stack, "crm_to_outlook", users[0], 0)}
        await stack.outlook_create(users[0], "contacts", [twin])

    where = Where(kafka_bootstrap, tmp_path / "logs")
    result = await sync_scenario(
        where, "crm_to_outlook", 1, ITEMS, timeout_s=120, before_check=plant_duplicate
    )
    assert clean == [True], "the check found a problem before the duplicate was planted"
    assert result["applied"] == ITEMS
    assert result["items_per_s"] > 0 and result["seconds"] > 0
    assert result["pickup_s"] is not None and result["first_item_s"] is not None
    graph, dataverse = result["graph"], result["dataverse"]
    assert graph["requests"] >= ITEMS and graph["by_method"].get("POST", 0) >= 1
    assert graph["per_item"] == round(graph["requests"] / ITEMS, 3)
    assert dataverse["requests"] >= 1 and graph["throttled_429"] == 0
    assert set(result["cpu_s"]) == {
        "worker-0",
        "workers_total",
        "graph",
        "dataverse",
        "bench driver",
    }
    assert result["cpu_s"]["workers_total"] == result["cpu_s"]["worker-0"]
    assert result["check"]["duplicates"] == 1 and result["check"]["missing"] == 0
    assert result["source_check"]["found"] == ITEMS and result["source_check"]["duplicates"] == 0
    assert result["creates_back"] == 0
    assert result["ok"] is False
    assert result["error"].startswith("DUPLICATES: 1 extra item(s) in Outlook")

    reverse = await sync_scenario(where, "outlook_to_crm", 1, ITEMS, timeout_s=120)
    assert reverse["ok"] is True, reverse["error"]
    everything_once = {
        "expected": ITEMS,
        "found": ITEMS,
        "missing": 0,
        "duplicates": 0,
        "misplaced": 0,
        "examples": [],
    }
    assert reverse["check"] == everything_once and reverse["source_check"] == everything_once

    doc: dict[str, Any] = {"first_sync": [result], "reverse": [reverse], "idle": []}
    doc["judged"], doc["failures"] = judge(doc), failures(doc)
    assert len(doc["failures"]) == 1 and "DUPLICATES" in doc["failures"][0]
    assert "DUPLICATES 1" in summary(doc)
    assert plot_svg(doc).count("<circle") == 3


async def test_idle_cost_is_counted_per_mailbox_and_table(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    # a mailbox enabled while the worker runs is read after 2.5 config reloads: reload every
    # second so it is read within the settle time
    where = Where(kafka_bootstrap, tmp_path / "logs", worker_args=("--config-refresh", "1"))
    result = await idle_scenario(where, 1, settle_s=5, window_s=10)
    assert result["ok"] is True, result["error"]
    graph, dataverse = result["graph"], result["dataverse"]
    assert graph["per_mailbox_per_min"]["max"] >= graph["per_mailbox_per_min"]["mean"] > 0
    # webhooks on (as make up): To Do has none for app-only access, so it is polled
    assert any(k.endswith("tasks/delta") for k in graph["per_path_per_mailbox_per_min"])
    assert "contacts" in dataverse["per_table_per_min"]
    assert dataverse["max_per_table_per_min"] == max(dataverse["per_table_per_min"].values())
