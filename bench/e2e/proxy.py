"""A counting HTTP reverse proxy: put between the worker and an emulator, it counts each
request by a label of its path (a Dataverse table, a Graph delta stream) and passes it on
unchanged. The emulators build absolute links from the Host header, so links they hand out
(``@odata.nextLink``, ``@odata.deltaLink``) point back through the proxy."""

from __future__ import annotations

import re
import statistics
import time
from collections import Counter
from collections.abc import Callable

import aiohttp
from aiohttp import web

_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "content-encoding",
    }
)

_DV_SET = re.compile(r"^/api/data/v9\.2/([^/(?]+)")
_GRAPH_USER = re.compile(r"^/v1\.0/users/[^/]+/?(.*)$", re.IGNORECASE)
_GRAPH_USER_ID = re.compile(r"^/v1\.0/users/([^/]+)", re.IGNORECASE)
_GUIDISH = re.compile(r"[A-Za-z0-9_=\-]{20,}")


def dataverse_label(path: str) -> str:
    """The entity set (table) a Dataverse Web API path reads or writes; ``$batch`` and
    functions as themselves."""
    found = _DV_SET.match(path)
    return found.group(1) if found else path


def graph_label(path: str) -> str:
    """A Graph path with the user and item ids left out: ``contacts/delta``,
    ``mailFolders/inbox/messages/delta``, ``todo/lists/{id}/tasks/delta``."""
    found = _GRAPH_USER.match(path)
    rest = found.group(1) if found else path
    return _GUIDISH.sub("{id}", rest) or "(user)"


class CountingProxy:
    """Forwards every request to ``upstream`` and counts it under ``label(path)``."""

    def __init__(self, upstream: str, label: Callable[[str], str]) -> None:
        self.upstream = upstream.rstrip("/")
        self.label = label
        self.counts: Counter[str] = Counter()
        self.times: dict[tuple[str, str], list[float]] = {}
        """When each (mailbox or "", label) was asked for, by ``time.monotonic()``."""
        self.statuses: Counter[int] = Counter()
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self.url = ""

    async def start(self) -> str:
        """Listen on an ephemeral port of 127.0.0.1; the proxy's origin."""
        self._session = aiohttp.ClientSession(auto_decompress=False)
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    def intervals(self, since: float) -> dict[str, float]:
        """Per label, the median over its series (one per mailbox, or one) of the last gap
        between two requests at or after ``since``: how often each stream is polled by the
        end of a window."""
        gaps: dict[str, list[float]] = {}
        for (_, label), times in self.times.items():
            recent = [t for t in times if t >= since]
            if len(recent) >= 2:
                gaps.setdefault(label, []).append(recent[-1] - recent[-2])
        return {label: round(statistics.median(g), 1) for label, g in sorted(gaps.items())}

    def snapshot(self) -> Counter[str]:
        """The counts so far (a copy)."""
        return Counter(self.counts)

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        assert self._session is not None
        label = self.label(request.path)
        self.counts[label] += 1
        user = _GRAPH_USER_ID.match(request.path)
        series = (user.group(1) if user else "", label)
        self.times.setdefault(series, []).append(time.monotonic())
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        body = await request.read()
        async with self._session.request(
            request.method,
            f"{self.upstream}{request.path_qs}",
            headers=headers,
            data=body or None,
            allow_redirects=False,
        ) as upstream:
            payload = await upstream.read()
            self.statuses[upstream.status] += 1
            out = {k: v for k, v in upstream.headers.items() if k.lower() not in _HOP}
            if "content-encoding" in upstream.headers:
                out["Content-Encoding"] = upstream.headers["content-encoding"]
            return web.Response(status=upstream.status, body=payload, headers=out)
