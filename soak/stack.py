"""What the soak runs against: the three-node cluster (started here only if it is not
running, and then stopped here), fresh RF 3 topics on it, both emulators in this process
behind a :class:`~soak.gate.Gate` each, and the registered mailboxes.

The emulators run in the soak's own process (ephemeral ports, as in ``tests/e2e``): nothing
outlives an interrupted soak, ports never clash with a ``make up`` stack on 8081/8082, and
their fault switches sit next to the gates that reset or hang their connections. The worker
is the separate process, the one that is killed."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from aiohttp.test_utils import TestServer

from connectors.kafka_clients import KafkaClients
from emulators.dataverse import EmulatorConfig as DataverseConfig
from emulators.dataverse import create_app as create_dataverse
from emulators.graph.app import create_app as create_graph
from emulators.graph.config import EmulatorConfig as GraphConfig
from pipeline.cli.topics import ensure_topics
from pipeline.config_store import ConfigStore
from pipeline.settings import KafkaSettings
from schemas.models import Mailbox, Organisation
from soak.gate import Gate

TOKEN = "soak-token"
ORG = "org-soak"
KAFKA_SH = Path(__file__).resolve().parent.parent / "deploy" / "kafka" / "kafka.sh"


@dataclass(frozen=True)
class User:
    """One registered mailbox and its CRM user."""

    index: int
    mailbox_id: str
    upn: str
    systemuser_id: str


@dataclass
class Stack:
    """Both emulators (direct URLs for the soak's own edits), their gates (the URLs the worker
    is given), the Kafka settings of this run's topics and the mailboxes."""

    http: httpx.AsyncClient
    graph: str
    dataverse: str
    graph_gate: Gate
    dataverse_gate: Gate
    graph_for_worker: str
    dataverse_for_worker: str
    kafka: KafkaSettings
    users: list[User]


async def kafka_sh(*args: str) -> tuple[int, str]:
    """Run ``deploy/kafka/kafka.sh`` with ``args``: exit code and combined output."""
    proc = await asyncio.create_subprocess_exec(
        str(KAFKA_SH),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode(errors="replace")


async def cluster_running() -> bool:
    """Whether all three cluster nodes run."""
    _, out = await kafka_sh("status")
    lines = out.splitlines()
    return sum(ln.startswith("cluster node") and "running" in ln for ln in lines) == 3


@asynccontextmanager
async def cluster() -> AsyncIterator[bool]:
    """The three-node cluster for the run; yields whether this soak started it (and then stops
    it at the end; a cluster found running is left running)."""
    if await cluster_running():
        yield False
        return
    code, out = await kafka_sh("cluster-up")
    if code != 0:
        raise RuntimeError(f"kafka.sh cluster-up failed:\n{out[-2000:]}")
    try:
        yield True
    finally:
        await kafka_sh("cluster-down")


async def _serve(app: Any) -> TestServer:
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server


@asynccontextmanager
async def open_stack(bootstrap: str, mailboxes: int, partitions: int) -> AsyncIterator[Stack]:
    """Emulators, gates, RF 3 topics with a fresh prefix, ``mailboxes`` registered users.
    The run's topics are deleted at the end."""
    run = uuid.uuid4().hex[:8]
    kafka = KafkaSettings(
        bootstrap=bootstrap,
        topic_prefix=f"soak.{run}.",
        partitions=partitions,
        replication_factor=3,
        session_timeout_s=6.0,
    )
    graph = await _serve(create_graph(GraphConfig()))
    dataverse = await _serve(create_dataverse(DataverseConfig()))
    assert graph.port is not None and dataverse.port is not None
    graph_gate, dataverse_gate = Gate(graph.port), Gate(dataverse.port)
    try:
        graph_gate_port = await graph_gate.start()
        dataverse_gate_port = await dataverse_gate.start()
        await ensure_topics(kafka)
        graph_url = f"http://127.0.0.1:{graph.port}"
        dv_url = f"http://127.0.0.1:{dataverse.port}"
        dv_for_worker = f"http://127.0.0.1:{dataverse_gate_port}"
        async with httpx.AsyncClient(timeout=30) as http:
            async with ConfigStore(kafka) as store:
                await store.put(Organisation(org_id=ORG, url=dv_for_worker, display_name="Soak"))
                users = [
                    await _register(http, store, graph_url, dv_url, run, n)
                    for n in range(mailboxes)
                ]
            yield Stack(
                http=http,
                graph=graph_url,
                dataverse=dv_url,
                graph_gate=graph_gate,
                dataverse_gate=dataverse_gate,
                graph_for_worker=f"http://127.0.0.1:{graph_gate_port}/v1.0",
                dataverse_for_worker=f"{dv_for_worker}/api/data/v9.2",
                kafka=kafka,
                users=users,
            )
    finally:
        await graph_gate.close()
        await dataverse_gate.close()
        await graph.close()
        await dataverse.close()
        with contextlib.suppress(Exception):
            await delete_topics(kafka)


async def delete_topics(kafka: KafkaSettings) -> None:
    """Delete every topic of this run (its prefix)."""
    admin = KafkaClients(kafka).admin()
    await admin.start()
    try:
        names = [t for t in await admin.list_topics() if t.startswith(kafka.topic_prefix)]
        if names:
            await admin.delete_topics(names)
    finally:
        await admin.close()


def systemuser_id(n: int) -> str:
    """The systemuser id of soak user ``n``."""
    return f"00000000-0000-4000-8000-{n + 0x50A4000:012x}"


async def _register(
    http: httpx.AsyncClient, store: ConfigStore, graph_url: str, dv_url: str, run: str, n: int
) -> User:
    upn = f"soak{n}.{run}@contoso.test"
    name = f"Soak{n} User"
    seeded = await http.post(
        f"{dv_url}/_emulator/seed",
        json={
            "systemusers": [
                {"systemuserid": systemuser_id(n), "fullname": name, "internalemailaddress": upn}
            ]
        },
    )
    if seeded.status_code >= 300:
        raise RuntimeError(f"seeding systemuser {n}: {seeded.status_code} {seeded.text}")
    created = await http.post(
        f"{graph_url}/v1.0/users",
        json={"userPrincipalName": upn, "mail": upn, "displayName": name},
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    if created.status_code != 201:
        raise RuntimeError(f"creating Graph user {n}: {created.status_code} {created.text}")
    mailbox_id = created.json()["id"]
    await store.put(
        Mailbox(
            mailbox_id=mailbox_id,
            upn=upn,
            org_id=ORG,
            systemuser_id=systemuser_id(n),
            status="enabled",
        )
    )
    return User(n, mailbox_id, upn, systemuser_id(n))
