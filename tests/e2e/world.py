"""The world of an end-to-end test: both emulators (in-process, ephemeral ports), a fresh set
of topics on the real broker, registered mailboxes, and helpers that act on either side as the
mailbox's user would."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
from aiohttp.test_utils import TestServer

from emulators.dataverse import EmulatorConfig as DataverseConfig
from emulators.dataverse import create_app as create_dataverse
from emulators.graph.app import create_app as create_graph
from emulators.graph.config import EmulatorConfig as GraphConfig
from pipeline.cli.topics import ensure_topics
from pipeline.config_store import ConfigStore
from pipeline.runtime import Pipeline, RuntimeOptions
from pipeline.settings import DataverseSettings, GraphSettings, KafkaSettings, Settings
from schemas.models import Mailbox, Organisation

TOKEN = "e2e-token"
ORG = "org-e2e"
#: Readers polling every second whether or not they find anything: these tests time latencies
#: at idle. The backoff of idle readers has its own test (test_idle_cost.py).
STEADY = RuntimeOptions(crm_poll_max_s=1.0, outlook_poll_max_s=1.0)
T = TypeVar("T")


def user_id(n: int) -> str:
    """The systemuser id of the ``n``-th test user."""
    return f"00000000-0000-4000-8000-{n + 0xE2E1:012x}"


@dataclass(frozen=True)
class User:
    """One registered mailbox and its CRM user."""

    mailbox_id: str
    upn: str
    systemuser_id: str


@dataclass
class World:
    """Both emulators, the registered mailboxes and the settings of a pipeline over them.

    ``graph_api`` / ``dataverse_api`` are what the pipeline is configured with; tests may put
    a proxy between them and the emulators (:mod:`tests.e2e.netcut`) to take a side offline.
    """

    http: httpx.AsyncClient
    graph: str
    dataverse: str
    users: list[User]
    settings: Settings
    store: ConfigStore

    @property
    def mailbox_id(self) -> str:
        return self.users[0].mailbox_id

    @property
    def upn(self) -> str:
        return self.users[0].upn

    @property
    def api(self) -> str:
        return f"{self.dataverse}/api/data/v9.2"

    async def crm(
        self, method: str, path: str, body: Any = None, *, user: User | None = None
    ) -> httpx.Response:
        """A request to Dataverse as a mailbox's CRM user (the first one by default)."""
        who = user or self.users[0]
        headers = {"Authorization": f"Bearer {TOKEN}", "MSCRMCallerID": who.systemuser_id}
        if method in ("POST", "PATCH"):
            headers["Prefer"] = "return=representation"
        return await self.http.request(method, f"{self.api}/{path}", json=body, headers=headers)

    async def outlook(
        self, method: str, path: str, body: Any = None, *, user: User | None = None
    ) -> httpx.Response:
        """A request to Graph as a mailbox's user in Outlook (429s are waited out)."""
        who = user or self.users[0]
        url = f"{self.graph}/v1.0/users/{who.mailbox_id}/{path}"
        for _ in range(20):
            resp = await self.http.request(
                method, url, json=body, headers={"Authorization": f"Bearer {TOKEN}"}
            )
            if resp.status_code != 429:
                return resp
            await asyncio.sleep(float(resp.headers.get("Retry-After", "1")))
        return resp

    async def outlook_contacts(self, user: User | None = None) -> list[dict[str, Any]]:
        resp = await self.outlook("GET", "contacts?$top=1000", user=user)
        assert resp.status_code == 200, resp.text
        value = resp.json()["value"]
        assert isinstance(value, list)
        return value

    async def crm_contact(self, row_id: str) -> dict[str, Any]:
        resp = await self.crm("GET", f"contacts({row_id})")
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert isinstance(body, dict)
        return body

    async def crm_contacts(self) -> list[dict[str, Any]]:
        resp = await self.crm("GET", "contacts")
        assert resp.status_code == 200, resp.text
        value = resp.json()["value"]
        assert isinstance(value, list)
        return value

    def pipeline(self, options: RuntimeOptions | None = None) -> Pipeline:
        """The whole pipeline in this process (``async with``); readers at a steady 1 s poll
        unless ``options`` say otherwise."""
        return Pipeline(self.settings, self.store.snapshot, options or STEADY)


async def serve(app: Any) -> TestServer:
    """Serve an aiohttp app on an ephemeral port of 127.0.0.1."""
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server


@asynccontextmanager
async def open_world(
    kafka_bootstrap: str,
    data_dir: Path,
    *,
    users: int = 1,
    partitions: int = 2,
    graph_api: Callable[[str], Awaitable[str]] | None = None,
    dataverse_api: Callable[[str], Awaitable[str]] | None = None,
) -> AsyncIterator[World]:
    """Start both emulators, create fresh topics, seed and register ``users`` mailboxes.

    ``graph_api`` / ``dataverse_api`` map an emulator's base URL to the one the pipeline is
    given (e.g. through a proxy); identity by default.
    """
    graph = await serve(create_graph(GraphConfig()))
    dataverse = await serve(create_dataverse(DataverseConfig()))
    run = uuid.uuid4().hex[:10]
    kafka = KafkaSettings(
        bootstrap=kafka_bootstrap,
        topic_prefix=f"e2e.{run}.",
        partitions=partitions,
        session_timeout_s=6.0,  # a killed worker's successor gets its partitions sooner
    )
    graph_url = f"http://127.0.0.1:{graph.port}"
    dv_url = f"http://127.0.0.1:{dataverse.port}"
    try:
        await ensure_topics(kafka)
        graph_for_pipeline = await graph_api(graph_url) if graph_api else graph_url
        dv_for_pipeline = await dataverse_api(dv_url) if dataverse_api else dv_url
        settings = Settings(
            app_id=f"dynasync-e2e-{run}",
            kafka=kafka,
            data_dir=data_dir,
            graph=GraphSettings(base_url=f"{graph_for_pipeline}/v1.0", static_token=TOKEN),
            dataverse=DataverseSettings(
                base_url=f"{dv_for_pipeline}/api/data/v9.2", static_token=TOKEN
            ),
        )
        async with httpx.AsyncClient(timeout=10) as http, ConfigStore(kafka) as store:
            await store.put(Organisation(org_id=ORG, url=dv_for_pipeline, display_name="E2E"))
            registered = [
                await _register(http, store, graph_url, dv_url, run, n) for n in range(users)
            ]
            await store.load()  # the snapshot as a fresh process would read it from the topic
            assert all(u.mailbox_id in store.snapshot.mailboxes for u in registered)
            yield World(http, graph_url, dv_url, registered, settings, store)
    finally:
        await graph.close()
        await dataverse.close()


async def register(w: World, n: int) -> User:
    """Seed and register test user ``n`` in a running world (its pipeline sees it on refresh)."""
    run = w.settings.kafka.topic_prefix.split(".")[1]
    user = await _register(w.http, w.store, w.graph, w.dataverse, run, n)
    w.users.append(user)
    return user


async def _register(
    http: httpx.AsyncClient, store: ConfigStore, graph_url: str, dv_url: str, run: str, n: int
) -> User:
    upn = f"user{n}.{run}@contoso.test"
    systemuser = user_id(n)
    name = f"User{n} E2E"
    seeded = await http.post(
        f"{dv_url}/_emulator/seed",
        json={
            "systemusers": [
                {"systemuserid": systemuser, "fullname": name, "internalemailaddress": upn}
            ]
        },
    )
    assert seeded.status_code < 300, seeded.text
    created = await http.post(
        f"{graph_url}/v1.0/users",
        json={"userPrincipalName": upn, "mail": upn, "displayName": name},
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    assert created.status_code == 201, created.text
    mailbox_id = created.json()["id"]
    await store.put(
        Mailbox(
            mailbox_id=mailbox_id,
            upn=upn,
            org_id=ORG,
            systemuser_id=systemuser,
            status="enabled",
        )
    )
    return User(mailbox_id, upn, systemuser)


async def eventually(
    probe: Callable[[], Awaitable[T | None]], within: float, what: str, every: float = 0.05
) -> tuple[T, float]:
    """Poll ``probe`` until it returns a value; that value and the seconds it took."""
    start = time.monotonic()
    while True:
        found = await probe()
        if found is not None:
            return found, time.monotonic() - start
        if time.monotonic() - start > within:
            raise AssertionError(f"{what}: not seen within {within:.0f}s")
        await asyncio.sleep(every)


def by_surname(contacts: list[dict[str, Any]], surname: str) -> list[dict[str, Any]]:
    return [c for c in contacts if c.get("surname") == surname]


async def crm_contact_in_outlook(
    w: World, first: str, last: str, email: str, within: float, user: User | None = None
) -> tuple[str, dict[str, Any], float]:
    """Create a contact in Dataverse; wait for it in Outlook. (row id, Outlook contact, s)."""
    resp = await w.crm(
        "POST",
        "contacts",
        {"firstname": first, "lastname": last, "emailaddress1": email},
        user=user,
    )
    assert resp.status_code in (200, 201), resp.text
    row_id = resp.json()["contactid"]

    async def arrived() -> dict[str, Any] | None:
        found = by_surname(await w.outlook_contacts(user), last)
        return found[0] if found else None

    contact, took = await eventually(arrived, within, f"CRM contact {last} in Outlook")
    return row_id, contact, took
