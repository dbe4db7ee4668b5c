"""A TCP proxy that can take a service offline: :meth:`NetCut.cut` resets every open connection
and every new one until :meth:`NetCut.restore`. Put it between the pipeline and one emulator
(``open_world(graph_api=…)``) while the tests keep talking to the emulator directly."""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import urlsplit


class NetCut:
    """Forwards ``127.0.0.1:<port>`` to ``upstream`` (an ``http://host:port`` origin)."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        if parts.hostname is None or parts.port is None:
            raise ValueError(f"upstream must be http://host:port, got {upstream!r}")
        self._host, self._port = parts.hostname, parts.port
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()
        self.online = True
        self.refused = 0

    async def start(self, upstream: str | None = None) -> str:
        """Listen on an ephemeral port; the proxy's origin (the argument is ignored, so this
        method can be handed to ``open_world`` as a URL mapping)."""
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def cut(self) -> None:
        """Go offline: reset what is open, refuse what comes."""
        self.online = False
        for writer in list(self._open):
            writer.transport.abort()
        self._open.clear()

    def restore(self) -> None:
        self.online = True

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.online:
            self.refused += 1
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(self._host, self._port)
        except OSError:
            writer.transport.abort()
            return
        self._open.update((writer, up_writer))
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            for w in (writer, up_writer):
                self._open.discard(w)
                w.transport.abort()


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError, asyncio.IncompleteReadError):
        while chunk := await source.read(65536):
            sink.write(chunk)
            await sink.drain()
    with contextlib.suppress(OSError):
        sink.write_eof()
