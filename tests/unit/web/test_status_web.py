"""The worker's web side without a broker: metrics, probes, the status page and its escaping,
and garbage fed to each edge (feed records, drill-down paths, request methods)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
import pytest

from pipeline.app import App
from pipeline.config_store import ConfigSnapshot
from pipeline.mailbox_runner import MailboxRunner
from pipeline.web.feed import RecentFeed, parse_conflict
from pipeline.web.metrics import WorkerMetrics, mailbox_states
from pipeline.web.server import StatusWeb, WebServer, create_web_app
from schemas.models import Mailbox
from tests.metrics_text import samples

EVIL = '<script>alert("x")</script>&'


def _mailbox(n: int, **kw: Any) -> Mailbox:
    return Mailbox(
        mailbox_id=f"user{n}@contoso.test",
        upn=f"user{n}@contoso.test",
        org_id="org",
        systemuser_id=f"00000000-0000-0000-0000-00000000000{n}",
        status="enabled",
        **kw,
    )


@dataclass
class FakeWorker:
    config: ConfigSnapshot = field(default_factory=ConfigSnapshot)
    app: App | None = None
    ready: bool = True
    crashed: str | None = None

    def failure(self) -> str | None:
        return self.crashed

    def mailbox_runner(self, mailbox_id: str) -> MailboxRunner | None:
        return None


@dataclass
class Rec:
    value: bytes | None
    key: bytes | None = None
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    partition: int = 0
    offset: int = 0
    timestamp: int = 1_700_000_000_000


def _feed() -> RecentFeed:
    return RecentFeed("127.0.0.1:1", "conflicts", "dlq", keep=5)


@pytest.fixture
async def served() -> AsyncIterator[tuple[FakeWorker, WorkerMetrics, RecentFeed, str]]:
    worker = FakeWorker()
    worker.config.mailboxes = {
        m.mailbox_id: m
        for m in (
            _mailbox(1),
            _mailbox(2, failing_since="2024-01-01T00:00:00Z", last_error=EVIL),
        )
    }
    metrics, feed = WorkerMetrics(), _feed()
    server = WebServer(
        create_web_app(StatusWeb(worker, metrics, lambda: feed, "app")), "127.0.0.1", 0
    )
    await server.start()
    try:
        yield worker, metrics, feed, server.url
    finally:
        await server.stop()


def test_request_counts_by_side_and_code() -> None:
    m = WorkerMetrics()
    for status in (200, 200, 429, None, 999):
        m.request_done("graph", status)
    m.request_done("dataverse", 429)
    m.write_done("outlook", 0.3)
    got = samples(m.exposition().decode())
    assert got['dynasync_api_requests_total{code="200",side="graph"}'] == 2
    assert got['dynasync_api_requests_total{code="none",side="graph"}'] == 2  # none and garbage
    assert got['dynasync_api_throttled_total{side="graph"}'] == 1
    assert got['dynasync_api_throttled_total{side="dataverse"}'] == 1
    assert got['dynasync_sync_latency_seconds_count{target="outlook"}'] == 1
    assert got['dynasync_sync_latency_seconds_bucket{le="0.5",target="outlook"}'] == 1
    assert got['dynasync_sync_latency_seconds_bucket{le="0.25",target="outlook"}'] == 0


def test_two_workers_have_separate_registries() -> None:
    a, b = WorkerMetrics(), WorkerMetrics()
    a.request_done("graph", 200)
    assert 'dynasync_api_requests_total{code="200",side="graph"}' not in samples(
        b.exposition().decode()
    )


def test_mailboxes_by_state() -> None:
    snap = ConfigSnapshot()
    snap.mailboxes = {
        m.mailbox_id: m for m in (_mailbox(1), _mailbox(2, failing_since="2024-01-01T00:00:00Z"))
    }
    states = mailbox_states(snap)
    assert states["enabled"] == 1
    assert states["failing"] == 1
    assert states["disabled"] == 0


@pytest.mark.parametrize(
    "raw",
    [b"", b"{not json", b"[]", b'"x"', b"null", b'{"mailbox_id": 3}', b'{"mailbox_id": "m"}'],
)
def test_garbage_conflict_records_are_counted_not_shown(raw: bytes) -> None:
    assert parse_conflict(raw) is None
    feed = _feed()
    feed.take("conflicts", Rec(raw))
    assert feed.unreadable == 1
    assert list(feed.conflicts) == []


def test_feed_keeps_the_last_conflicts_and_alerts() -> None:
    feed = _feed()
    for n in range(8):
        conflict = {"mailbox_id": f"m{n}", "kind": "contact", "field": "x", "policy": "crm_wins"}
        feed.take("conflicts", Rec(orjson.dumps(conflict)))
    feed.take(
        "dlq", Rec(b"{}", b"m1", [("x-dynasync-reason", b"alert"), ("x-dynasync-error", b"boom")])
    )
    feed.take("dlq", Rec(b"raw", b"m1", [("x-dynasync-reason", b"poison")]))
    feed.take("dlq", Rec(None, None, []))  # no headers, no key: parked, unknown
    feed.take("elsewhere", Rec(b"{}"))
    assert [c.mailbox_id for c in feed.conflicts] == ["m3", "m4", "m5", "m6", "m7"]
    assert [(a.mailbox_id, a.reason) for a in feed.alerts] == [("m1", "boom")]
    assert feed.parked == {"m1": 1, "": 1}


async def test_metrics_endpoint_scrapes(
    served: tuple[FakeWorker, WorkerMetrics, RecentFeed, str],
) -> None:
    _, metrics, _, url = served
    metrics.request_done("dataverse", 201)
    async with httpx.AsyncClient(base_url=url) as http:
        resp = await http.get("/metrics")
    assert resp.status_code == 200
    got = samples(resp.text)
    assert got['dynasync_api_requests_total{code="201",side="dataverse"}'] == 1
    assert got["dynasync_worker_ready"] == 1
    assert got['dynasync_mailboxes{state="failing"}'] == 1


async def test_probes_follow_the_worker(
    served: tuple[FakeWorker, WorkerMetrics, RecentFeed, str],
) -> None:
    worker, _, _, url = served
    async with httpx.AsyncClient(base_url=url) as http:
        assert (await http.get("/healthz")).status_code == 200
        assert (await http.get("/readyz")).status_code == 200
        worker.ready = False
        assert (await http.get("/healthz")).status_code == 200
        assert (await http.get("/readyz")).status_code == 503
        worker.ready, worker.crashed = True, "RuntimeError('boom')"
        assert (await http.get("/healthz")).status_code == 503
        assert (await http.get("/readyz")).status_code == 503
        assert (await http.post("/readyz")).status_code == 405


async def test_status_page_escapes_what_it_shows(
    served: tuple[FakeWorker, WorkerMetrics, RecentFeed, str],
) -> None:
    _, _, feed, url = served
    conflict = {"mailbox_id": EVIL, "kind": "contact", "field": EVIL, "policy": "manual"}
    feed.take("conflicts", Rec(orjson.dumps(conflict)))
    feed.take(
        "dlq",
        Rec(
            b"{}",
            EVIL.encode(),
            [("x-dynasync-reason", b"alert"), ("x-dynasync-error", EVIL.encode())],
        ),
    )
    async with httpx.AsyncClient(base_url=url) as http:
        page = await http.get("/")
        one = await http.get("/mailbox/user2%40contoso.test")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "<script>" not in page.text and "<script>" not in one.text
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;" in page.text
    assert 'href="/mailbox/user1%40contoso.test"' in page.text
    assert "failing" in one.text and "&lt;script&gt;" in one.text


@pytest.mark.parametrize(
    "path",
    [
        "/mailbox/nobody%40contoso.test",
        "/mailbox/" + "a" * 400,
        "/mailbox/%3Cscript%3E",
        "/mailbox/%00",
        "/mailbox/",
        "/nothing-here",
    ],
)
async def test_unknown_or_garbage_mailbox_is_404_without_echo(
    served: tuple[FakeWorker, WorkerMetrics, RecentFeed, str], path: str
) -> None:
    _, _, _, url = served
    async with httpx.AsyncClient(base_url=url) as http:
        resp = await http.get(path)
    assert resp.status_code == 404
    assert "script" not in resp.text


async def test_a_taken_port_names_the_setting(
    served: tuple[FakeWorker, WorkerMetrics, RecentFeed, str],
) -> None:
    worker, metrics, feed, url = served
    port = int(url.rsplit(":", 1)[1])
    second = WebServer(
        create_web_app(StatusWeb(worker, metrics, lambda: feed, "app")), "127.0.0.1", port
    )
    with pytest.raises(OSError, match="DYNASYNC_WEB__PORT"):
        await second.start()
