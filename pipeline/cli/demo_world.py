"""The demo's world: demo users seeded in both emulators, their registration on the config
topic, and the user actions (CRM and Outlook requests) the demo narrates.

CRM user ids are fixed per demo user and Graph users are found by UPN, so running the demo
again reuses the same users and mailbox registrations. The emulators keep their data in memory:
after a restart the Graph user gets a new id, and the registration of the old one (whose
reader cursors and links point into the lost mailbox) is replaced.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from typing import Any

import httpx

from pipeline.config_store import ConfigError, ConfigStore, mailbox_clash
from schemas.models import Mailbox, Organisation

DEMO_ORG = "org-demo"
_NAMES = ("Ann", "Bob", "Cho")
MAX_USERS = len(_NAMES)


class DemoError(Exception):
    """Something the demo needs is missing or refused (printed as one line, exit 1)."""


@dataclass(frozen=True, slots=True)
class DemoUser:
    """One demo mailbox: its CRM user, its name and (once seeded) its Graph user id."""

    first_name: str
    systemuser_id: str
    mailbox_id: str = ""

    @property
    def upn(self) -> str:
        return f"{self.first_name.lower()}.demo@contoso.test"

    @property
    def full_name(self) -> str:
        return f"{self.first_name} Demo"


def demo_users(count: int) -> list[DemoUser]:
    """The first ``count`` demo users (1 to :data:`MAX_USERS`)."""
    if not 1 <= count <= MAX_USERS:
        raise ValueError(f"between 1 and {MAX_USERS} demo users, not {count}")
    return [
        DemoUser(name, systemuser_id=f"00000000-0000-4000-8000-{0xDE50 + n:012x}")
        for n, name in enumerate(_NAMES[:count])
    ]


class DemoSides:
    """Requests to both emulators, as the demo users would make them (429s are waited out)."""

    def __init__(self, http: httpx.AsyncClient, graph: str, dataverse: str, token: str) -> None:
        self.http = http
        self.graph = graph
        self.dataverse = dataverse
        self._auth = {"Authorization": f"Bearer {token}"}

    async def _request(
        self, method: str, url: str, body: Any, headers: dict[str, str]
    ) -> httpx.Response:
        resp: httpx.Response | None = None
        for _ in range(30):
            try:
                resp = await self.http.request(method, url, json=body, headers=headers)
            except httpx.TransportError as exc:
                raise DemoError(f"{method} {url} failed: {exc!r}") from None
            if resp.status_code not in (429, 503):
                return resp
            await asyncio.sleep(min(float(resp.headers.get("Retry-After", "1") or 1), 5.0))
        assert resp is not None
        return resp

    async def crm(self, user: DemoUser, method: str, path: str, body: Any = None) -> dict[str, Any]:
        """A Dataverse Web API request as ``user``; the JSON body (DemoError on failure)."""
        headers = {**self._auth, "MSCRMCallerID": user.systemuser_id}
        if method in ("POST", "PATCH"):
            headers["Prefer"] = "return=representation"
        url = f"{self.dataverse}/api/data/v9.2/{path}"
        return _json(await self._request(method, url, body, headers), method, url)

    async def outlook(
        self, user: DemoUser, method: str, path: str, body: Any = None
    ) -> dict[str, Any]:
        """A Graph request in ``user``'s mailbox; the JSON body (DemoError on failure)."""
        return await self.graph_as(user.mailbox_id, method, path, body)

    async def graph_as(
        self, graph_user_id: str, method: str, path: str, body: Any = None
    ) -> dict[str, Any]:
        """A Graph request in the mailbox of the Graph user ``graph_user_id``."""
        url = f"{self.graph}/v1.0/users/{graph_user_id}/{path}"
        return _json(await self._request(method, url, body, self._auth), method, url)

    async def graph_user(self, upn: str, display_name: str) -> str:
        """The Graph id of the user ``upn``, created unless it exists."""
        found = await self._request("GET", f"{self.graph}/v1.0/users/{upn}", None, self._auth)
        if found.status_code != 200:
            url = f"{self.graph}/v1.0/users"
            body = {"userPrincipalName": upn, "mail": upn, "displayName": display_name}
            found = await self._request("POST", url, body, self._auth)
        graph_id = _json(found, "GET", f"{self.graph}/v1.0/users/{upn}").get("id")
        if not isinstance(graph_id, str) or not graph_id:
            raise DemoError(f"the Graph emulator returned no id for {upn}")
        return graph_id

    async def check_reachable(self) -> None:
        """DemoError naming the emulator that does not answer."""
        for name, url in (("Graph", self.graph), ("Dataverse", self.dataverse)):
            try:
                await self.http.get(f"{url}/", timeout=5)
            except httpx.TransportError:
                raise DemoError(
                    f"the {name} emulator does not answer at {url} (start the stack: make up)"
                ) from None

    async def seed(self, user: DemoUser) -> DemoUser:
        """Create ``user`` in both emulators unless it exists (the CRM seed is an upsert);
        the user with its Graph id."""
        seeded = await self.http.post(
            f"{self.dataverse}/_emulator/seed",
            json={
                "systemusers": [
                    {
                        "systemuserid": user.systemuser_id,
                        "fullname": user.full_name,
                        "internalemailaddress": user.upn,
                    }
                ]
            },
        )
        if seeded.status_code >= 300:
            raise DemoError(f"seeding {user.upn} in Dataverse failed: {seeded.text[:300]}")
        return replace(user, mailbox_id=await self.graph_user(user.upn, user.full_name))


def _json(resp: httpx.Response, method: str, url: str) -> dict[str, Any]:
    if resp.status_code >= 300:
        raise DemoError(f"{method} {url} answered {resp.status_code}: {resp.text[:300]}")
    if resp.status_code == 204 or not resp.content:
        return {}
    body = resp.json()
    if not isinstance(body, dict):
        raise DemoError(f"{method} {url} answered with a non-object body")
    return body


async def register(store: ConfigStore, dataverse: str, users: list[DemoUser]) -> list[str]:
    """Register the demo organisation and mailboxes (enabled) on the config topic, reusing
    what is already there; one line per record saying what was done."""
    lines: list[str] = []
    org = Organisation(org_id=DEMO_ORG, url=dataverse, display_name="Dynasync demo")
    if store.snapshot.organisations.get(DEMO_ORG) == org:
        lines.append(f"organisation {DEMO_ORG} ({dataverse}) already registered")
    else:
        await store.put(org)
        lines.append(f"organisation {DEMO_ORG} registered ({dataverse})")
    for user in users:
        mailbox = Mailbox(
            mailbox_id=user.mailbox_id,
            upn=user.upn,
            org_id=DEMO_ORG,
            systemuser_id=user.systemuser_id,
            status="enabled",
        )
        existing = store.snapshot.mailboxes.get(user.mailbox_id)
        if existing == mailbox:
            lines.append(f"mailbox {user.upn} already registered and enabled")
            continue
        for stale in _stale(store, mailbox):
            await store.delete(f"mailbox:{stale.mailbox_id}")
            lines.append(
                f"mailbox {user.upn}: registration of Graph user {stale.mailbox_id} removed "
                "(that user is gone: the Graph emulator was restarted)"
            )
        clash = mailbox_clash(mailbox, store.snapshot.mailboxes.values())
        if clash:
            raise DemoError(f"cannot register the demo mailbox {user.upn}: {clash}")
        try:
            await store.put(mailbox)
        except ConfigError as exc:
            raise DemoError(f"cannot register the demo mailbox {user.upn}: {exc}") from None
        verb = "enabled" if existing is not None else "registered"
        lines.append(f"mailbox {user.upn} {verb} (CRM user {user.systemuser_id})")
    return lines


def _stale(store: ConfigStore, mailbox: Mailbox) -> list[Mailbox]:
    """Registrations of the demo UPN and CRM user under another Graph user id (one the Graph
    emulator no longer has, since the UPN now resolves to ``mailbox``)."""
    return [
        m
        for m in store.snapshot.mailboxes.values()
        if m.mailbox_id != mailbox.mailbox_id
        and m.upn.casefold() == mailbox.upn.casefold()
        and (m.org_id, m.systemuser_id.lower()) == (mailbox.org_id, mailbox.systemuser_id)
    ]
