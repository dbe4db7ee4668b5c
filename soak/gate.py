"""A TCP proxy between the worker and one emulator that can fail its connections: ``reset``
aborts what is open and every new connection, ``hang`` accepts and answers nothing (the
client's own timeout fires), ``open`` forwards."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Literal

Mode = Literal["open", "reset", "hang"]


class Gate:
    """Forwards ``127.0.0.1:<ephemeral>`` to ``127.0.0.1:upstream_port``."""

    def __init__(self, upstream_port: int) -> None:
        self._upstream_port = upstream_port
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()
        self._held: set[asyncio.StreamWriter] = set()
        self.mode: Mode = "open"
        self.failed = 0

    async def start(self) -> int:
        """Listen; the port to give the worker."""
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def close(self) -> None:
        self.set("reset")
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def set(self, mode: Mode) -> None:
        """Switch mode. In ``hang`` open connections stop forwarding too; leaving ``hang``
        or entering ``reset`` aborts every connection (a half-dropped HTTP stream is dead)."""
        leaving_hang = self.mode == "hang" and mode != "hang"
        self.mode = mode
        if leaving_hang or mode == "reset":
            _abort(self._held)
            _abort(self._open)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.mode == "reset":
            self.failed += 1
            writer.transport.abort()
            return
        if self.mode == "hang":
            self.failed += 1
            self._held.add(writer)
            with contextlib.suppress(OSError):
                while await reader.read(65536):
                    pass  # swallow the request, answer nothing
            self._held.discard(writer)
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self._upstream_port)
        except OSError:
            writer.transport.abort()
            return
        self._open.update((writer, up_writer))
        try:
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        finally:
            for w in (writer, up_writer):
                self._open.discard(w)
                w.transport.abort()

    async def _pipe(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while chunk := await source.read(65536):
                if self.mode == "hang":
                    continue  # an open connection goes silent too
                sink.write(chunk)
                await sink.drain()
        with contextlib.suppress(OSError):
            sink.write_eof()


def _abort(writers: set[asyncio.StreamWriter]) -> None:
    for writer in list(writers):
        writer.transport.abort()
    writers.clear()
