"""Fixtures: the Graph emulator in-process on an ephemeral port, and clients pointed at it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from aiohttp.test_utils import TestServer
from msgraph.generated.models.user import User
from msgraph.graph_service_client import GraphServiceClient

from connectors.graph.client import StaticTokenCredential, build_graph_client
from emulators.graph import EmulatorConfig, create_app


@dataclass
class Graph:
    """A running emulator with an SDK client and a raw httpx client."""

    server: TestServer
    sdk: GraphServiceClient
    raw: httpx.AsyncClient
    root: str

    @property
    def api(self) -> str:
        return f"{self.root}/v1.0"

    async def user(self, name: str) -> str:
        created = await self.sdk.users.post(
            User(user_principal_name=f"{name}@contoso.test", display_name=name.title())
        )
        assert created is not None and created.id
        return created.id


async def start(config: EmulatorConfig) -> AsyncIterator[Graph]:
    """Start an emulator with ``config`` and yield clients for it."""
    server = TestServer(create_app(config), host="127.0.0.1")
    await server.start_server()
    root = str(server.make_url("")).rstrip("/")
    http = httpx.AsyncClient(timeout=10.0)
    raw = httpx.AsyncClient(timeout=10.0, headers={"Authorization": "Bearer test-token"})
    sdk = build_graph_client(f"{root}/v1.0", StaticTokenCredential("test-token"), http_client=http)
    try:
        yield Graph(server, sdk, raw, root)
    finally:
        await http.aclose()
        await raw.aclose()
        await server.close()


@pytest.fixture
async def graph() -> AsyncIterator[Graph]:
    async for running in start(EmulatorConfig(notify_time_scale=0.0001)):
        yield running
