"""One end-to-end stack: the Graph and Dataverse emulators at their real throttle figures and
``dynasync run`` workers, each a separate process (as ``make up`` runs them), fresh topics on the
real broker, and the requests the benchmark makes to either side as the mailboxes' users."""

from __future__ import annotations

import asyncio
import re
import shutil
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx
import orjson

from bench.e2e.procs import ChildProcess, free_port, log_has, port_answers
from bench.e2e.proxy import CountingProxy, dataverse_label, graph_label
from connectors.kafka_clients import KafkaClients
from pipeline.cli.receiver import READY_LINE as RECEIVER_READY_LINE
from pipeline.cli.run import READY_LINE
from pipeline.cli.topics import ensure_topics
from pipeline.config_store import ConfigStore
from pipeline.settings import KafkaSettings
from pipeline.topics import CONFIG, topic_name
from schemas.models import Mailbox, Organisation

ORG = "org-bench-e2e"
#: What the worker authenticates with (the emulators take any bearer token; Graph throttles
#: per token, i.e. per app, so the benchmark's own requests never spend the worker's budget).
WORKER_TOKEN = "bench-e2e-worker"
DRIVER_TOKEN = "bench-e2e-driver"
ROOT = Path(__file__).resolve().parents[2]
DV_API = "/api/data/v9.2"


class SetupError(RuntimeError):
    """An emulator refused a request the benchmark's setup or check needed."""


@dataclass(frozen=True, slots=True)
class BenchUser:
    """One mailbox and its CRM user."""

    index: int
    mailbox_id: str
    upn: str
    systemuser_id: str


@dataclass(frozen=True, slots=True)
class StackOptions:
    """What one stack runs."""

    bootstrap: str
    name: str
    log_dir: Path
    workers: int = 1
    worker_args: tuple[str, ...] = ()
    webhooks: bool = True
    """As ``make up``: the worker's receiver is the subscriptions' notification URL, so Graph
    notifications drive the Outlook reads (To Do is still polled). Off: every stream polled."""
    count_paths: bool = False
    """Put a counting proxy between the workers and each emulator (per table / stream)."""
    keep_topics: bool = False
    """Leave the scenario's topics on the broker (to look into them afterwards)."""
    start_timeout_s: float = 120.0
    start_workers: bool = True
    """Off: :meth:`E2EStack.start` leaves the workers to :meth:`E2EStack.start_workers`
    (mailboxes registered before a worker starts)."""


@dataclass
class Stats:
    """One reading of both emulators' request counters and the processes' CPU."""

    graph: dict[str, Any]
    dataverse: dict[str, Any]
    cpu: dict[str, float | None]
    graph_paths: dict[str, int] = field(default_factory=dict)
    dataverse_paths: dict[str, int] = field(default_factory=dict)


class E2EStack:
    """``async with E2EStack(options) as stack:`` starts everything, stops it, deletes topics."""

    def __init__(self, options: StackOptions) -> None:
        self.options = options
        tag = uuid.uuid4().hex[:8]
        self.tag = tag
        self.app_id = f"bench-e2e-{options.name}-{tag}"
        self.kafka = KafkaSettings(
            bootstrap=options.bootstrap, topic_prefix=f"bench-e2e.{options.name}.{tag}."
        )
        self.log_dir = options.log_dir / options.name
        self.data_dir = self.log_dir / "data"
        self.graph_port = free_port()
        self.dataverse_port = free_port()
        self.graph = f"http://127.0.0.1:{self.graph_port}"
        self.dataverse = f"http://127.0.0.1:{self.dataverse_port}"
        self.emulators: list[ChildProcess] = []
        self.workers: list[ChildProcess] = []
        self.receiver: ChildProcess | None = None
        self._for_worker = (self.graph, self.dataverse)
        self.proxies: dict[str, CountingProxy] = {}
        self.users: list[BenchUser] = []
        self.http = httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=64))
        self.store = ConfigStore(self.kafka)
        self._store_started = False

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Self:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        """Emulators, topics, the organisation, then the workers (ready once they log it)."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        within = self.options.start_timeout_s
        for name, module, port in (
            ("graph", "emulators.graph", self.graph_port),
            ("dataverse", "emulators.dataverse", self.dataverse_port),
        ):
            # --throttle-scale 1: Graph's and Dataverse's real service protection limits
            args = ["--host", "127.0.0.1", "--port", str(port), "--throttle-scale", "1"]
            proc = ChildProcess(name, module, args, {}, self.log_dir / f"{name}.log", ROOT)
            self.emulators.append(proc)
        ports = (self.graph_port, self.dataverse_port)
        starts = zip(self.emulators, ports, strict=True)
        await asyncio.gather(*(p.start(port_answers(port), within) for p, port in starts))
        graph_for_worker, dataverse_for_worker = self.graph, self.dataverse
        if self.options.count_paths:
            self.proxies = {
                "graph": CountingProxy(self.graph, graph_label),
                "dataverse": CountingProxy(self.dataverse, dataverse_label),
            }
            graph_for_worker = await self.proxies["graph"].start()
            dataverse_for_worker = await self.proxies["dataverse"].start()
        await ensure_topics(self.kafka)
        await self._wait_for_leaders([topic_name(CONFIG, self.kafka)], within)
        await self.store.start()
        self._store_started = True
        await self.store.put(
            Organisation(org_id=ORG, url=dataverse_for_worker, display_name="Bench")
        )
        self._for_worker = (graph_for_worker, dataverse_for_worker)
        if self.options.start_workers:
            await self.start_workers()

    async def start_workers(self) -> float:
        """The workers (and, for several with webhooks, the one ``dynasync receiver`` they
        share, as ``make up WORKERS=N`` runs them); seconds until all logged ready."""
        within = self.options.start_timeout_s
        graph_for_worker, _ = self._for_worker
        shared = self.options.workers > 1
        notification_url: str | None = None
        base_env = {
            "DYNASYNC_APP_ID": self.app_id,
            "DYNASYNC_KAFKA__TOPIC_PREFIX": self.kafka.topic_prefix,
            # tokens through the environment, never argv (as make up does); the receiver
            # derives the clientState key from the same Graph credential as the workers
            "DYNASYNC_GRAPH__STATIC_TOKEN": WORKER_TOKEN,
            "DYNASYNC_DATAVERSE__STATIC_TOKEN": WORKER_TOKEN,
            # each worker's status page and metrics on a port of its own
            "DYNASYNC_WEB__PORT": "0",
        }
        began = time.perf_counter()
        if shared and self.options.webhooks:
            receiver_port = free_port()
            notification_url = f"http://127.0.0.1:{receiver_port}"
            log_path = self.log_dir / "receiver.log"
            args = ["receiver", "--bootstrap", self.kafka.bootstrap, "--port", str(receiver_port)]
            env = base_env | {"DYNASYNC_RECEIVER__PORT": str(receiver_port)}
            self.receiver = ChildProcess("receiver", "pipeline.cli", args, env, log_path, ROOT)
            await self.receiver.start(log_has(log_path, RECEIVER_READY_LINE), within)
        starting = []
        for n in range(self.options.workers):
            log_path = self.log_dir / f"worker-{n}.log"
            args = [
                "run",
                "--bootstrap",
                self.kafka.bootstrap,
                "--graph-url",
                f"{graph_for_worker}/v1.0",
            ]
            env = dict(base_env)
            if shared:
                # the receiver process serves the notification URL (make up WORKERS=N)
                env["DYNASYNC_RECEIVER__ENABLED"] = "false"
                if notification_url is not None:
                    args += ["--notification-url", notification_url]
            elif self.options.webhooks:
                receiver_port = free_port()  # one worker: its own receiver (make up)
                args += ["--notification-url", f"http://127.0.0.1:{receiver_port}"]
                env["DYNASYNC_RECEIVER__PORT"] = str(receiver_port)
            args += self.options.worker_args
            env["DYNASYNC_DATA_DIR"] = str(self.data_dir / f"worker-{n}")
            worker = ChildProcess(f"worker-{n}", "pipeline.cli", args, env, log_path, ROOT)
            self.workers.append(worker)
            starting.append(worker.start(log_has(log_path, READY_LINE), within))
        await asyncio.gather(*starting)
        return time.perf_counter() - began

    async def stop(self) -> None:
        """Workers, then proxies and emulators; the scenario's topics are deleted."""
        await asyncio.gather(*(worker.stop() for worker in self.workers))
        if self.receiver is not None:
            await self.receiver.stop()
        for proxy in self.proxies.values():
            await proxy.stop()
        for emulator in self.emulators:
            await emulator.stop()
        if self._store_started:
            self._store_started = False
            await self.store.stop()
            if not self.options.keep_topics:
                await self._delete_topics()
        await self.http.aclose()
        shutil.rmtree(self.data_dir, ignore_errors=True)

    async def _wait_for_leaders(self, topics: list[str], within_s: float) -> None:
        """Until every partition of ``topics`` has a leader (a fresh topic has none for a
        moment, and reading it then logs errors)."""
        admin = KafkaClients(self.kafka).admin()
        await admin.start()
        try:
            deadline = time.monotonic() + within_s
            while True:
                described = await admin.describe_topics(topics)
                if all(
                    t.get("error_code", 0) == 0
                    and t.get("partitions")
                    and all(int(p.get("leader", -1)) >= 0 for p in t["partitions"])
                    for t in described
                ):
                    return
                if time.monotonic() > deadline:
                    raise SetupError(f"topics {topics} have no leaders after {within_s:.0f} s")
                await asyncio.sleep(0.2)
        finally:
            await admin.close()

    async def _delete_topics(self) -> None:
        admin = KafkaClients(self.kafka).admin()
        try:
            await admin.start()
            names = [
                t
                for t in await admin.list_topics()
                if t.startswith(self.kafka.topic_prefix) or t.startswith(f"{self.app_id}-")
            ]
            if names:
                await admin.delete_topics(names)
        except Exception as exc:  # leftovers on the broker are untidy, not wrong
            print(f"bench: could not delete topics of {self.app_id}: {exc!r}", flush=True)
        finally:
            await admin.close()

    def worker_failure(self) -> str | None:
        """Why a worker is no longer running (None while all run)."""
        for worker in [*self.workers, *([self.receiver] if self.receiver else [])]:
            if not worker.running:
                code = None if worker.proc is None else worker.proc.returncode
                return f"{worker.name} exited ({code}): {worker.log_tail()}"
        return None

    # ------------------------------------------------------------------ mailboxes

    async def add_users(self, count: int) -> list[BenchUser]:
        """``count`` new users: a CRM systemuser and a Graph mailbox each (not registered)."""
        first = len(self.users)
        made = [
            BenchUser(
                index=first + n,
                mailbox_id="",
                upn=f"bench{first + n}.{self.tag}@contoso.test",
                systemuser_id=str(uuid.uuid4()),
            )
            for n in range(count)
        ]
        seed = {
            "systemusers": [
                {
                    "systemuserid": u.systemuser_id,
                    "fullname": f"Bench User{u.index}",
                    "internalemailaddress": u.upn,
                }
                for u in made
            ]
        }
        for start in range(0, len(made), 1000):
            chunk = {"systemusers": seed["systemusers"][start : start + 1000]}
            resp = await self.http.post(f"{self.dataverse}/_emulator/seed", json=chunk)
            _ok(resp, "seeding CRM users")
        gate = asyncio.Semaphore(8)

        async def graph_user(u: BenchUser) -> BenchUser:
            body = {"userPrincipalName": u.upn, "mail": u.upn, "displayName": f"User{u.index}"}
            async with gate:
                resp = await self._graph("POST", "/v1.0/users", body)
            _ok(resp, f"creating Graph user {u.upn}")
            return BenchUser(u.index, str(resp.json()["id"]), u.upn, u.systemuser_id)

        out = list(await asyncio.gather(*(graph_user(u) for u in made)))
        self.users.extend(out)
        return out

    async def enable(self, users: Sequence[BenchUser]) -> None:
        """Register and enable ``users``' mailboxes on the config topic (the workers pick them
        up at their next config reload)."""
        for start in range(0, len(users), 200):  # the producer batches each 200's sends
            await asyncio.gather(
                *(
                    self.store.put(
                        Mailbox(
                            mailbox_id=u.mailbox_id,
                            upn=u.upn,
                            org_id=ORG,
                            systemuser_id=u.systemuser_id,
                            status="enabled",
                        )
                    )
                    for u in users[start : start + 200]
                )
            )

    # ------------------------------------------------------------------ the two sides

    async def _graph(self, method: str, path: str, body: Any = None) -> httpx.Response:
        """A Graph request as the benchmark's own app (429s waited out)."""
        resp: httpx.Response | None = None
        for _ in range(60):
            resp = await self.http.request(
                method,
                f"{self.graph}{path}",
                json=body,
                headers={"Authorization": f"Bearer {DRIVER_TOKEN}"},
            )
            if resp.status_code not in (429, 503):
                return resp
            await asyncio.sleep(float(resp.headers.get("Retry-After", "1") or 1))
        assert resp is not None
        return resp

    async def crm_create(self, user: BenchUser, table_set: str, rows: list[dict[str, Any]]) -> None:
        """Create ``rows`` in Dataverse as ``user`` (so ``user`` owns them): ``$batch``
        changesets of up to 1,000."""
        for start in range(0, len(rows), 1000):
            body, content_type = _changeset(f"{DV_API}/{table_set}", rows[start : start + 1000])
            for _ in range(60):
                resp = await self.http.post(
                    f"{self.dataverse}{DV_API}/$batch",
                    content=body,
                    headers={
                        "Authorization": f"Bearer {DRIVER_TOKEN}",
                        "MSCRMCallerID": user.systemuser_id,
                        "Content-Type": content_type,
                    },
                )
                if resp.status_code not in (429, 503):
                    break
                await asyncio.sleep(float(resp.headers.get("Retry-After", "1") or 1))
            _ok(resp, f"creating {table_set} as {user.upn}")
            statuses = [int(s) for s in _INNER_STATUS.findall(resp.content)]
            if len(statuses) != len(rows[start : start + 1000]) or any(s >= 300 for s in statuses):
                raise SetupError(f"$batch create of {table_set}: {resp.text[:500]}")

    async def outlook_create(
        self, user: BenchUser, collection: str, items: list[dict[str, Any]]
    ) -> None:
        """Create ``items`` in ``user``'s mailbox through Graph ``$batch`` (20 a batch)."""
        for start in range(0, len(items), 20):
            chunk = items[start : start + 20]
            pending = {
                str(n): {
                    "id": str(n),
                    "method": "POST",
                    "url": f"/users/{user.mailbox_id}/{collection}",
                    "headers": {"Content-Type": "application/json"},
                    "body": item,
                }
                for n, item in enumerate(chunk)
            }
            for _ in range(60):
                batch = {"requests": list(pending.values())}
                resp = await self._graph("POST", "/v1.0/$batch", batch)
                _ok(resp, f"creating {collection} in {user.upn}")
                retry_after = 0.0
                for answer in resp.json()["responses"]:
                    status = int(answer["status"])
                    if status in (429, 503):
                        wait = float(answer["headers"].get("Retry-After", 1))
                        retry_after = max(retry_after, wait)
                    elif status >= 300:
                        raise SetupError(f"creating {collection} in {user.upn}: {answer}")
                    else:
                        pending.pop(str(answer["id"]))
                if not pending:
                    break
                await asyncio.sleep(retry_after or 1)
            if pending:
                raise SetupError(f"creating {collection} in {user.upn}: still throttled")

    async def outlook_list(
        self, user: BenchUser, collection: str, select: str
    ) -> list[dict[str, Any]]:
        """Every item of ``collection`` in ``user``'s mailbox (pages followed)."""
        path: str | None = f"/v1.0/users/{user.mailbox_id}/{collection}?$top=1000&$select={select}"
        out: list[dict[str, Any]] = []
        while path is not None:
            resp = await self._graph("GET", path)
            _ok(resp, f"listing {collection} of {user.upn}")
            body = resp.json()
            out.extend(body["value"])
            link = body.get("@odata.nextLink")
            path = link[len(self.graph) :] if isinstance(link, str) else None
        return out

    async def crm_list(self, table_set: str, query: str) -> list[dict[str, Any]]:
        """Every row of ``table_set`` matching ``query`` (as the application user)."""
        url: str | None = f"{self.dataverse}{DV_API}/{table_set}?{query}"
        out: list[dict[str, Any]] = []
        while url is not None:
            resp = await self.http.get(
                url,
                headers={
                    "Authorization": f"Bearer {DRIVER_TOKEN}",
                    "Prefer": "odata.maxpagesize=5000",
                },
            )
            _ok(resp, f"listing {table_set}")
            body = resp.json()
            out.extend(body["value"])
            link = body.get("@odata.nextLink")
            url = link if isinstance(link, str) else None
        return out

    # ------------------------------------------------------------------ measuring

    async def picked_up(self, users: Sequence[BenchUser], before: Stats) -> bool:
        """Whether a worker has begun on ``users`` since ``before``: a Graph request for one
        of their mailboxes, or any Dataverse request (no reader runs before a mailbox does).
        Reading the counters is not itself counted."""
        graph, dataverse = await asyncio.gather(
            self.http.get(f"{self.graph}/_emulator/stats"),
            self.http.get(f"{self.dataverse}/_emulator/stats"),
        )
        by_mailbox = graph.json()["by_mailbox"]
        was = before.graph["by_mailbox"]
        return int(dataverse.json()["total"]) > int(before.dataverse["total"]) or any(
            int(by_mailbox.get(u.mailbox_id, 0)) > int(was.get(u.mailbox_id, 0)) for u in users
        )

    async def stats(self) -> Stats:
        """Both emulators' counters, the counting proxies' and every process's CPU now."""
        graph, dataverse = await asyncio.gather(
            self.http.get(f"{self.graph}/_emulator/stats"),
            self.http.get(f"{self.dataverse}/_emulator/stats"),
        )
        _ok(graph, "reading Graph stats")
        _ok(dataverse, "reading Dataverse stats")
        procs = [*self.workers, *([self.receiver] if self.receiver else []), *self.emulators]
        cpu: dict[str, float | None] = {p.name: p.cpu() for p in procs}
        return Stats(
            graph=graph.json(),
            dataverse=dataverse.json(),
            cpu=cpu,
            graph_paths=dict(self.proxies["graph"].snapshot()) if self.proxies else {},
            dataverse_paths=dict(self.proxies["dataverse"].snapshot()) if self.proxies else {},
        )


def _ok(resp: httpx.Response, what: str) -> None:
    if resp.status_code >= 300:
        raise SetupError(f"{what}: {resp.status_code} {resp.text[:500]}")


_INNER_STATUS = re.compile(rb"\nHTTP/1\.1 (\d{3})")


def _changeset(target: str, rows: list[dict[str, Any]]) -> tuple[bytes, str]:
    """A Dataverse ``$batch`` body with one changeset POSTing each row to ``target``."""
    batch, changeset = f"batch_{uuid.uuid4().hex}", f"changeset_{uuid.uuid4().hex}"
    lines = [f"--{batch}", f"Content-Type: multipart/mixed; boundary={changeset}", ""]
    for n, row in enumerate(rows, 1):
        lines += [
            f"--{changeset}",
            "Content-Type: application/http",
            "Content-Transfer-Encoding: binary",
            f"Content-ID: {n}",
            "",
            f"POST {target} HTTP/1.1",
            "Content-Type: application/json",
            "",
            orjson.dumps(row).decode(),
        ]
    lines += [f"--{changeset}--", f"--{batch}--", ""]
    return "\r\n".join(lines).encode(), f"multipart/mixed; boundary={batch}"
