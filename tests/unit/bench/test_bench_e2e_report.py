"""The end-to-end section's options, targets, summary, plot and JSON merge (no broker)."""

from __future__ import annotations

import xml.dom.minidom
from pathlib import Path
from typing import Any

import pytest

from bench.args import parse
from bench.e2e.proxy import dataverse_label, graph_label
from bench.e2e.report import failures, judge, plot_svg, summary
from bench.e2e.verify import Tally
from bench.report import merged, read_previous


def test_e2e_defaults_and_sizes_parse() -> None:
    params = parse([])
    assert params.only == ("engine", "e2e")
    assert params.e2e_mailboxes == (1, 10, 50)
    assert params.e2e_reverse_mailboxes == (1, 10)
    assert params.e2e_workers == (1,)
    picked = parse(["--only", "e2e", "--e2e-mailboxes", "1,10", "--e2e-items", "5"])
    assert picked.only == ("e2e",) and not picked.engine and picked.e2e
    assert picked.e2e_mailboxes == (1, 10) and picked.e2e_items == 5
    args = parse(["--e2e-worker-args=--config-refresh 2 --crm-poll 1"])
    assert args.e2e_worker_args == ("--config-refresh", "2", "--crm-poll", "1")
    assert not args.e2e_polling and parse(["--e2e-polling"]).e2e_polling
    several = parse(["--e2e-workers", "1,2,3", "--e2e-scenarios", "rss"])
    assert several.e2e_workers == (1, 2, 3) and several.e2e_scenarios == ("rss",)
    assert several.e2e_rss_mailboxes == 10_000 and several.e2e_rss_active == 1_000
    assert "rss" not in params.e2e_scenarios  # only when named


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--only", "e2e,speed"], "--only takes engine and/or e2e"),
        (["--only", ","], "--only takes engine and/or e2e"),
        (["--e2e-mailboxes", "1,ten"], "expected comma-separated whole numbers"),
        (["--e2e-mailboxes", "0,10"], "--e2e-mailboxes must be between 1 and 500"),
        (["--e2e-mailboxes", "10,10"], "--e2e-mailboxes lists a size twice"),
        (["--e2e-reverse-mailboxes", "-1"], "expected comma-separated whole numbers"),
        (["--e2e-items", "0"], "--e2e-items must be between 1 and 10000"),
        (["--e2e-scenarios", "first-sync,nap"], "--e2e-scenarios takes first-sync, reverse"),
        (["--e2e-idle-window", "1"], "--e2e-idle-window must be between 10 and 3600"),
        (["--e2e-idle-settle", "nan"], "--e2e-idle-settle must be between"),
        (["--e2e-timeout", "5"], "--e2e-timeout must be between"),
        (["--e2e-workers", "1,7"], "--e2e-workers must be between 1 and 6"),
        (["--e2e-rss-mailboxes", "0"], "--e2e-rss-mailboxes must be between 1 and 50000"),
        (["--e2e-rss-mailboxes", "100", "--e2e-rss-active", "200"], "--e2e-rss-active must be"),
        (["--e2e-worker-args=--graph-url http://x"], "--e2e-worker-args must not set --graph"),
        (["--e2e-worker-args=--graph-token=abc"], "must not set --graph-token"),
        (["--e2e-worker-args=--notification-url http://x"], "must not set --notification-url"),
        (["--e2e-worker-args=--crm-poll 'x"], "cannot split"),
        (["--plot", "plot.png"], "--plot must be an .svg file path"),
    ],
)
def test_garbage_e2e_options_fail_with_one_clear_error(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.count("error:") == 1 and "Traceback" not in err


def _sync(
    direction: str, n: int, rate: float, per_item: float, ok: bool = True, workers: int = 1
) -> dict[str, Any]:
    return {
        "scenario": f"{direction}-{n}",
        "direction": direction,
        "mailboxes": n,
        "items_per_mailbox": 200,
        "items": n * 200,
        "workers": workers,
        "items_per_s": rate,
        "seconds": n * 200 / rate,
        "pickup_s": 2.0,
        "graph": {"per_item": per_item, "throttled_429": 0},
        "dataverse": {"per_item": 0.1, "throttled_429": 0},
        "cpu_s": {"worker-0": 3.0},
        "check": {"duplicates": 0 if ok else 2},
        "ok": ok,
        "error": None if ok else "DUPLICATES: 2 extra item(s) in Outlook",
    }


def _doc() -> dict[str, Any]:
    return {
        "first_sync": [
            _sync("crm_to_outlook", 1, 20.0, 1.05),
            _sync("crm_to_outlook", 10, 180.0, 1.2),
            _sync("crm_to_outlook", 50, 300.0, 1.0, ok=False),
        ],
        "reverse": [_sync("outlook_to_crm", 1, 10.0, 1.1), _sync("outlook_to_crm", 10, 50.0, 1)],
        "idle": [
            {
                "scenario": "idle-10-w1",
                "mailboxes": 10,
                "workers": 1,
                "settle_s": 60.0,
                "window_s": 120.0,
                "graph": {"per_mailbox_per_min": {"mean": 1.5, "max": 2.5}},
                "dataverse": {"max_per_table_per_min": 0.5},
                "ok": True,
                "error": None,
            }
        ],
    }


def test_targets_are_judged_per_scenario() -> None:
    doc = _doc()
    judged = {(j["target"], j["scope"]): j for j in judge(doc)}
    per_item = "first sync Graph requests/item <="
    assert judged[(per_item, "CRM->Outlook 1x200")]["met"] is True
    assert judged[(per_item, "CRM->Outlook 10x200")]["met"] is False
    assert judged[(per_item, "CRM->Outlook 50x200")]["complete"] is False
    scaling = "10 mailboxes' items/s vs 1 mailbox's >="
    assert judged[(scaling, "CRM->Outlook")]["value"] == 9.0
    assert judged[(scaling, "CRM->Outlook")]["met"] is True
    assert judged[(scaling, "Outlook->CRM")]["met"] is False
    idle = "10 mailboxes, window 120 s"
    assert judged[("idle Graph requests/min per mailbox <=", idle)]["met"] is False
    assert judged[("idle Dataverse requests/min per table <=", idle)]["met"] is True
    assert failures(doc) == ["crm_to_outlook-50: DUPLICATES: 2 extra item(s) in Outlook"]


def test_a_stalled_scenario_is_judged_not_divided_by() -> None:
    doc = _doc()
    doc["reverse"][0] = {**doc["reverse"][0], "items_per_s": 0.0, "ok": False, "error": "stall"}
    judged = {(j["target"], j["scope"]): j for j in judge(doc)}
    stalled = judged[("10 mailboxes' items/s vs 1 mailbox's >=", "Outlook->CRM")]
    assert stalled["value"] is None and stalled["met"] is None
    assert "not judged" in summary({**doc, "judged": judge(doc)})


def test_summary_fits_a_screen_and_says_what_failed() -> None:
    doc = _doc()
    doc["judged"], doc["failures"] = judge(doc), failures(doc)
    text = summary(doc)
    lines = text.splitlines()
    assert len(lines) <= 30 and max(map(len, lines)) <= 130
    assert "DUPLICATES 2" in text and "NOT met" in text and "FAILED crm_to_outlook-50" in text


def test_plot_is_an_svg_with_a_point_per_scenario() -> None:
    svg = plot_svg(_doc())
    dom = xml.dom.minidom.parseString(svg)
    circles = dom.getElementsByTagName("circle")
    assert len(circles) == 5 + 1  # five scenarios and the legend's open marker
    assert "CRM-&gt;Outlook" in svg
    assert plot_svg({"first_sync": [], "reverse": []}).startswith("<svg")


def test_merge_keeps_the_section_that_did_not_run(tmp_path: Path) -> None:
    engine = {"engine_changes_per_s": 3000.0, "params": {}}
    e2e: dict[str, Any] = {"first_sync": []}
    both = merged({}, engine, e2e)
    assert both == {"engine_changes_per_s": 3000.0, "params": {}, "e2e": e2e}
    newer_e2e = {"first_sync": [1]}
    assert merged(both, None, newer_e2e) == {**engine, "e2e": newer_e2e}
    newer_engine = {"engine_changes_per_s": 4000.0}
    assert merged(both, newer_engine, None) == {"e2e": e2e, **newer_engine}
    garbage = tmp_path / "latest.json"
    garbage.write_text("{not json")
    assert read_previous(garbage) == {}
    assert read_previous(tmp_path / "missing.json") == {}


def test_tally_counts_duplicates_missing_and_misplaced() -> None:
    tally = Tally()
    tally.add(["a", "b", "c"], ["a", "a", "b", "x"], ["x", "y"])
    tally.add(["x", "y"], ["x", "y"], ["a", "b", "c"])
    assert (tally.expected, tally.found, tally.missing) == (5, 4, 1)
    assert (tally.duplicates, tally.misplaced) == (1, 1)
    problem = tally.problem("Outlook")
    assert problem is not None and problem.startswith("DUPLICATES: 1 extra item(s) in Outlook")
    assert Tally().problem("Outlook") is None


def test_proxy_labels() -> None:
    assert dataverse_label("/api/data/v9.2/contacts") == "contacts"
    assert dataverse_label("/api/data/v9.2/contacts(0f8fad5b-d9cb-469f)") == "contacts"
    assert dataverse_label("/api/data/v9.2/$batch") == "$batch"
    user = "/v1.0/users/6300d84f-f387-473f-a0d5-01e258c1abbe"
    assert graph_label(f"{user}/contacts/delta") == "contacts/delta"
    assert graph_label(f"{user}/mailFolders/inbox/messages/delta") == (
        "mailFolders/inbox/messages/delta"
    )
    assert graph_label(f"{user}/todo/lists/AAMkADQ3ZTJmNGI2LWE0NDMtNGJm/tasks/delta") == (
        "todo/lists/{id}/tasks/delta"
    )
    assert graph_label("/v1.0/$batch") == "/v1.0/$batch"


def test_several_workers_are_judged_plotted_and_summed_apart() -> None:
    doc = _doc()
    two = [_sync("crm_to_outlook", 1, 25.0, 1.0, workers=2)]
    two.append(
        {
            **_sync("crm_to_outlook", 10, 250.0, 1.0, workers=2),
            "cpu_s": {"worker-0": 2.0, "worker-1": 1.5, "workers_total": 3.5},
        }
    )
    doc["first_sync"] += two
    judged = {(j["target"], j["scope"]): j for j in judge(doc)}
    scaling = "10 mailboxes' items/s vs 1 mailbox's >="
    assert judged[(scaling, "CRM->Outlook")]["value"] == 9.0  # 1 worker's, not mixed
    assert judged[(scaling, "CRM->Outlook, 2 workers")]["value"] == 10.0
    text = summary({**doc, "judged": judge(doc)})
    row = next(line for line in text.splitlines() if "CRM->Outlook 10x200 w2" in line)
    assert "3.5" in row  # both workers' CPU
    svg = plot_svg(doc)
    dom = xml.dom.minidom.parseString(svg)
    assert len(dom.getElementsByTagName("polyline")) >= 4  # a line per direction and count
    assert "CRM-&gt;Outlook, 2 w" in svg and "CRM-&gt;Outlook, 1 w" in svg


def test_rss_is_judged_against_its_target_and_summarised() -> None:
    doc: dict[str, Any] = {
        "rss": [
            {
                "scenario": "rss-10000a1000",
                "mailboxes": 10_000,
                "active": 1_000,
                "target_mb": 512.0,
                "rss_mb": {"peak_vmhwm": 600.0, "settled": 450.0},
                "steps": {"ready_s": 12.0, "all_mailboxes_read_s": 300.0, "all_applied_s": 320.0},
                "ok": True,
                "error": None,
            }
        ]
    }
    judged = judge(doc)
    assert [(j["value"], j["met"]) for j in judged] == [(600.0, False)]
    text = summary({**doc, "judged": judged})
    assert "peak 600 MB, settled 450 MB" in text and "NOT met" in text
    assert failures({"rss": [{**doc["rss"][0], "ok": False, "error": "stall"}]}) == [
        "rss-10000a1000: stall"
    ]
