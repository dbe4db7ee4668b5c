"""The Dataverse emulator on an ephemeral 127.0.0.1 port with the connector's client (fixtures
shared by the contract and integration tests)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from connectors.dataverse.auth import StaticToken
from connectors.dataverse.client import DataverseClient
from connectors.http import RetryPolicy
from emulators.dataverse import EmulatorConfig, create_app

FAST = RetryPolicy(attempts=8, base_delay=0.01, max_delay=0.05, max_retry_after=0.05)
USER_A = "00000000-0000-4000-8000-0000000000aa"
USER_B = "00000000-0000-4000-8000-0000000000bb"


@dataclass
class Emulator:
    """A running emulator: its API root, a control session, the connector client."""

    origin: str
    session: aiohttp.ClientSession
    client: DataverseClient

    @property
    def api(self) -> str:
        return self.origin + "/api/data/v9.2"

    async def control(self, method: str, path: str, body: Any = None) -> Any:
        async with self.session.request(
            method, f"{self.origin}/_emulator/{path}", json=body
        ) as resp:
            assert resp.status < 300, await resp.text()
            return await resp.json() if resp.content_type == "application/json" else None

    async def seed_users(self) -> None:
        await self.control(
            "POST",
            "seed",
            {
                "systemusers": [
                    {
                        "systemuserid": USER_A,
                        "fullname": "Alice A",
                        "internalemailaddress": "alice@contoso.test",
                        "azureactivedirectoryobjectid": "00000000-0000-4000-8000-0000000a0a0a",
                    },
                    {
                        "systemuserid": USER_B,
                        "fullname": "Bob B",
                        "internalemailaddress": "bob@contoso.test",
                        "azureactivedirectoryobjectid": "00000000-0000-4000-8000-0000000b0b0b",
                    },
                ]
            },
        )


MakeEmulator = Callable[..., Awaitable[Emulator]]


@pytest.fixture
async def make_emulator() -> AsyncIterator[MakeEmulator]:
    servers: list[TestServer] = []
    closers: list[Callable[[], Awaitable[None]]] = []

    async def make(config: EmulatorConfig | None = None, **client_kw: Any) -> Emulator:
        server = TestServer(create_app(config or EmulatorConfig()), host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        origin = f"http://127.0.0.1:{server.port}"
        session = aiohttp.ClientSession()
        client = DataverseClient(
            origin + "/api/data/v9.2",
            StaticToken("test-token"),
            policy=client_kw.pop("policy", FAST),
            **client_kw,
        )
        await client.start()
        closers.extend([session.close, client.stop])
        emu = Emulator(origin, session, client)
        await emu.seed_users()
        return emu

    yield make
    for close in closers:
        await close()
    for server in servers:
        await server.close()


@pytest.fixture
async def dv(make_emulator: MakeEmulator) -> Emulator:
    return await make_emulator()
