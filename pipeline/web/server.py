"""The worker's web server (aiohttp) on ``settings.web``:

- ``GET /metrics``: Prometheus text format (:mod:`pipeline.web.metrics`);
- ``GET /healthz``: 200 while the process serves and no stage crashed, else 503;
- ``GET /readyz``: 200 once every stage has started and while none crashed, else 503;
- ``GET /``: the status page; ``GET /mailbox/<id>``: one mailbox (404 for an unknown id).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from aiohttp import web

from pipeline.web.feed import RecentFeed
from pipeline.web.metrics import CONTENT_TYPE, WorkerMetrics
from pipeline.web.page import render_index, render_mailbox
from pipeline.web.status import WorkerView, mailbox_rows, stages

log = logging.getLogger(__name__)

#: The longest mailbox id a drill-down accepts (an address is at most 320 characters).
MAX_ID = 320
_HTML = "text/html"
_NOSNIFF = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"}


class StatusWeb:
    """The routes over one worker (see the module docstring)."""

    def __init__(
        self,
        worker: WorkerView,
        metrics: WorkerMetrics,
        feed: Callable[[], RecentFeed | None],
        app_id: str,
    ) -> None:
        self._worker = worker
        self._metrics = metrics
        self._feed = feed
        self._app_id = app_id

    async def refresh(self) -> None:
        """Read the worker's live state into the metrics."""
        worker, feed = self._worker, self._feed()
        running = stages(worker)
        lag: list[tuple[str, str, int, int]] = []
        for stage in running:
            for tp, behind in (await stage.lag()).items():
                lag.append((stage.name, tp.topic, tp.partition, behind))
        readers = []
        for mailbox_id in worker.config.mailboxes:
            runner = worker.mailbox_runner(mailbox_id)
            if runner is not None:
                readers.append(runner.state)
        sizes = {}
        if feed is not None:
            try:
                sizes = await feed.sizes()
            except Exception as exc:  # the broker away: the rest of the scrape still answers
                log.debug("topic sizes not read: %s", exc)
        self._metrics.set_live(
            ready=worker.ready and worker.failure() is None,
            stages=running,
            lag=lag,
            snapshot=worker.config,
            readers=readers,
            topic_records=sizes,
        )

    async def metrics(self, request: web.Request) -> web.Response:
        await self.refresh()
        return web.Response(
            body=self._metrics.exposition(), headers={"Content-Type": CONTENT_TYPE, **_NOSNIFF}
        )

    async def healthz(self, request: web.Request) -> web.Response:
        failure = self._worker.failure()
        if failure is not None:
            return web.json_response({"status": "crashed"}, status=503, headers=_NOSNIFF)
        return web.json_response({"status": "ok"}, headers=_NOSNIFF)

    async def readyz(self, request: web.Request) -> web.Response:
        worker = self._worker
        if worker.failure() is not None:
            return web.json_response({"status": "crashed"}, status=503, headers=_NOSNIFF)
        if not worker.ready:
            return web.json_response({"status": "starting"}, status=503, headers=_NOSNIFF)
        return web.json_response({"status": "ready"}, headers=_NOSNIFF)

    async def index(self, request: web.Request) -> web.Response:
        await self.refresh()
        feed = self._feed()
        running = stages(self._worker)
        lags: dict[str, int] = {}
        for stage in running:
            lags[stage.name] = sum((await stage.lag()).values())
        page = render_index(
            app_id=self._app_id,
            ready=self._worker.ready,
            failure=self._worker.failure(),
            rows=mailbox_rows(self._worker, feed),
            stages=[
                (s.name, s.records_in, s.records_out, s.in_flight(), lags.get(s.name, 0))
                for s in running
            ],
            conflicts=list(feed.conflicts) if feed is not None else [],
            alerts=list(feed.alerts) if feed is not None else [],
        )
        return web.Response(text=page, content_type=_HTML, headers=_NOSNIFF)

    async def mailbox(self, request: web.Request) -> web.Response:
        wanted = request.match_info.get("mailbox_id", "")
        feed = self._feed()
        row = None
        if 0 < len(wanted) <= MAX_ID and wanted in self._worker.config.mailboxes:
            row = next(
                (r for r in mailbox_rows(self._worker, feed) if r.mailbox.mailbox_id == wanted),
                None,
            )
        if row is None:
            return web.Response(
                text="no such mailbox", status=404, content_type="text/plain", headers=_NOSNIFF
            )
        conflicts = [c for c in feed.conflicts if c.mailbox_id == wanted] if feed else []
        alerts = [a for a in feed.alerts if a.mailbox_id == wanted] if feed else []
        page = render_mailbox(row, conflicts, alerts)
        return web.Response(text=page, content_type=_HTML, headers=_NOSNIFF)


def create_web_app(routes: StatusWeb) -> web.Application:
    """The aiohttp app of ``routes``."""
    app = web.Application(client_max_size=4096)
    app.router.add_get("/metrics", routes.metrics)
    app.router.add_get("/healthz", routes.healthz)
    app.router.add_get("/readyz", routes.readyz)
    app.router.add_get("/", routes.index)
    app.router.add_get("/mailbox/{mailbox_id}", routes.mailbox)
    return app


class WebServer:
    """Serves an app on host:port (0: any free port; see :attr:`port`)."""

    def __init__(self, app: web.Application, host: str, port: int) -> None:
        self._app = app
        self._host = host
        self.port = port
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        """Listen; an OSError (the port is taken) says which setting to change."""
        runner = web.AppRunner(self._app, access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, self._host, self.port).start()
        except OSError as exc:
            await runner.cleanup()
            raise OSError(
                exc.errno,
                f"the web port {self._host}:{self.port} cannot be used ({exc.strerror}); "
                "set DYNASYNC_WEB__PORT (0: any free port) or DYNASYNC_WEB__ENABLED=false",
            ) from None
        self._runner = runner
        addresses = runner.addresses
        if addresses:
            self.port = int(addresses[0][1])

    async def stop(self) -> None:
        """Stop listening."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    @property
    def url(self) -> str:
        """The base URL."""
        return f"http://{self._host}:{self.port}"
