"""Issue 12.5 and the secret proof of 14, end to end: a ``dynasync run`` process over both
emulators and the real broker, with webhooks (its receiver on a port of its own) and
distinctive secrets given as an operator would (environment only).

It syncs a CRM contact into Outlook, then: ``/metrics`` is scraped and must have moved (Graph
and Dataverse requests, the engine's and the Outlook writer's records out, a sync latency
observed, the mailbox counted enabled); ``/healthz`` and ``/readyz`` answer 200 on the worker
and on its receiver; the status page renders in headless Chromium (the mailbox row in the DOM,
a per-mailbox page, a 1280x900 screenshot that is not blank). Then the secrets (both bearer
tokens and the clientState key) must appear in none of: the worker's argv (and its
children's), its whole log (after a clean stop), the pages and metrics served,
and any file the run left in its data directory. What this does not cover: other tests' and
harnesses' processes (``tests/e2e/test_stack.py`` scans a ``make up`` stack the same way),
and the Kafka topics' contents.
"""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

from tests.chromium import CHROMIUM, WINDOW, dump_dom, read_png, screenshot
from tests.e2e.proc import PipelineProcess
from tests.e2e.world import World, crm_contact_in_outlook
from tests.metrics_text import samples
from tests.ports import free_port

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(300)]

GRAPH_TOKEN = "graph-tok-3f9a1c7e52d84b0f9e61a2c4d8b7e0f1"
DATAVERSE_TOKEN = "dv-tok-8c2e4a6f1b3d5e7f9a0b2c4d6e8f0a1b"
CLIENT_STATE_KEY = "csk-5d7f9b1e3a5c7e9f1b3d5f7a9c1e3b5d7f9a"
SECRETS = (GRAPH_TOKEN, DATAVERSE_TOKEN, CLIENT_STATE_KEY)


class ObservedProcess(PipelineProcess):
    """The e2e worker with the secrets above, webhooks and fixed ports."""

    def __init__(self, world: World, log_path: Path, web_port: int, receiver_port: int) -> None:
        super().__init__(world, log_path)
        self.web_port = web_port
        self.receiver_port = receiver_port

    def _env(self) -> dict[str, str]:
        return {
            **super()._env(),
            "DYNASYNC_GRAPH__STATIC_TOKEN": GRAPH_TOKEN,
            "DYNASYNC_DATAVERSE__STATIC_TOKEN": DATAVERSE_TOKEN,
            "DYNASYNC_GRAPH__CLIENT_STATE_KEY": CLIENT_STATE_KEY,
            "DYNASYNC_GRAPH__NOTIFICATION_URL": f"http://127.0.0.1:{self.receiver_port}",
            "DYNASYNC_RECEIVER__PORT": str(self.receiver_port),
            "DYNASYNC_WEB__PORT": str(self.web_port),
        }


def _read(path: Path) -> bytes:
    return path.read_bytes()


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants (from /proc)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        for child in Path(f"/proc/{current}/task").glob("*/children"):
            todo += [int(p) for p in child.read_text().split()]
    return found


def _leaks(where: str, blob: bytes) -> list[str]:
    return [f"{where}: {s[:8]}..." for s in SECRETS if s.encode() in blob]


def _argv_leaks(pid: int) -> list[str]:
    """Secrets in the argv of ``pid`` or of any process it started."""
    return [
        leak
        for each in _tree(pid)
        for leak in _leaks(f"argv of {each}", Path(f"/proc/{each}/cmdline").read_bytes())
    ]


def _file_leaks(root: Path) -> list[str]:
    """Secrets in any file under ``root``."""
    return [
        leak
        for file in root.rglob("*")
        if file.is_file()
        for leak in _leaks(str(file), file.read_bytes())
    ]


@pytest.mark.skipif(
    CHROMIUM is None and os.environ.get("CI") != "true",
    reason="chromium is not installed here (apt-get install chromium; CI installs it)",
)
async def test_metrics_probes_status_page_and_no_secret_anywhere(
    world: World, tmp_path: Path
) -> None:
    log_path = tmp_path / "worker.log"
    proc = ObservedProcess(world, log_path, free_port(), free_port())
    web = f"http://127.0.0.1:{proc.web_port}"
    receiver = f"http://127.0.0.1:{proc.receiver_port}"
    leaks: list[str] = []
    async with proc, httpx.AsyncClient(timeout=10) as http:
        await crm_contact_in_outlook(world, "Ada", "Metrics", "ada.metrics@example.test", 60)
        assert proc.proc is not None
        leaks += _argv_leaks(proc.proc.pid)
        # the scan can see them: the worker has each, in its environment (not a leak)
        assert len(_leaks("environ", _read(Path(f"/proc/{proc.proc.pid}/environ")))) == 3

        scraped = await http.get(f"{web}/metrics")
        assert scraped.status_code == 200
        got = samples(scraped.text)
        graph = sum(
            v
            for k, v in got.items()
            if k.startswith("dynasync_api_requests_total{") and 'side="graph"' in k
        )
        dataverse = sum(
            v
            for k, v in got.items()
            if k.startswith("dynasync_api_requests_total{") and 'side="dataverse"' in k
        )
        assert graph > 0 and dataverse > 0, got
        assert got['dynasync_stage_records_in_total{stage="engine"}'] > 0
        assert got['dynasync_stage_records_out_total{stage="engine"}'] > 0
        assert got['dynasync_stage_records_out_total{stage="writers-outlook"}'] >= 1
        assert got['dynasync_sync_latency_seconds_count{target="outlook"}'] >= 1
        assert got['dynasync_mailboxes{state="enabled"}'] == 1
        assert got["dynasync_worker_ready"] == 1
        assert "dynasync_dlq_records" in got and "dynasync_conflicts_records" in got
        assert any(k.startswith("dynasync_consumer_lag{") for k in got)
        assert any(k.startswith("dynasync_webhook_notifications_total") for k in got)

        for base in (web, receiver):
            for path in ("/healthz", "/readyz"):
                assert (await http.get(f"{base}{path}")).status_code == 200, f"{base}{path}"
        receiver_metrics = samples((await http.get(f"{receiver}/metrics")).text)
        assert "dynasync_webhook_notifications_total" in receiver_metrics

        upn = world.upn
        dom = await dump_dom(f"{web}/")
        assert upn in dom and "Mailboxes (1)" in dom
        assert f'href="/mailbox/{world.mailbox_id.replace("@", "%40")}"' in dom
        one = await dump_dom(f"{web}/mailbox/{world.mailbox_id}")
        assert f"Mailbox {world.mailbox_id}" in one and "reader here" in one
        png = await screenshot(f"{web}/", tmp_path / "status.png")
        image = read_png(png)
        assert (image.width, image.height) == WINDOW
        assert image.variance() > 50, "the screenshot is blank"
        for where, blob in (
            ("metrics", scraped.content),
            ("status page", dom.encode()),
            ("mailbox page", one.encode()),
        ):
            leaks += _leaks(where, blob)
    log = _read(log_path)
    assert b"dynasync run: ready" in log and b"dynasync run: stopped" in log
    leaks += _leaks("worker log", log)
    leaks += _file_leaks(world.settings.data_dir)
    assert leaks == []
