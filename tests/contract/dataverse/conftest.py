"""Fixtures: the Dataverse emulator on an ephemeral 127.0.0.1 port and a plain OData client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from emulators.dataverse import EmulatorConfig, create_app

from .odata import ODataClient, RunningEmulator

MakeEmulator = Callable[..., Awaitable[RunningEmulator]]


@pytest.fixture
async def make_emulator() -> AsyncIterator[MakeEmulator]:
    """Start emulators (real HTTP servers on 127.0.0.1, ephemeral ports) on demand."""
    servers: list[TestServer] = []
    sessions: list[aiohttp.ClientSession] = []

    async def make(
        config: EmulatorConfig | None = None, clock: Callable[[], datetime] | None = None
    ) -> RunningEmulator:
        server = TestServer(create_app(config or EmulatorConfig(), clock=clock), host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        session = aiohttp.ClientSession()
        sessions.append(session)
        origin = f"http://127.0.0.1:{server.port}"
        return RunningEmulator(origin, session, ODataClient(session, origin, "test-token"))

    yield make
    for session in sessions:
        await session.close()
    for server in servers:
        await server.close()


@pytest.fixture
async def dv(make_emulator: MakeEmulator) -> RunningEmulator:
    """A default emulator and its client."""
    return await make_emulator()
