"""The soak's users: CRM users create contacts and edit their job title, Outlook users edit
their mobile phone. The two sides edit different fields, so the final value of every field is
known (the last write of its side) without a conflict to settle."""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from soak.stack import TOKEN, Stack, User

#: Statuses the soak's own requests wait out (its outages hit the users too).
_PASSING = frozenset({429, 500, 502, 503, 504})


@dataclass
class Contact:
    """One contact the soak created in the CRM and what each side last wrote."""

    surname: str
    user: User
    row_id: str
    outlook_id: str | None = None
    title: str | None = None  # the CRM side's last jobtitle
    mobile: str | None = None  # the Outlook side's last mobilePhone
    crm_edits: int = 0
    outlook_edits: int = 0


@dataclass
class Counts:
    """What the users did."""

    creates: int = 0
    crm_edits: int = 0
    outlook_edits: int = 0
    refused_by_outage: int = 0


@dataclass
class Editor:
    """Both sides' users over the stack's mailboxes, seeded."""

    stack: Stack
    rnd: random.Random
    tag: str
    ops_per_s: float = 2.0
    max_per_mailbox: int = 30
    contacts: dict[str, Contact] = field(default_factory=dict)
    counts: Counts = field(default_factory=Counts)
    _seq: int = 0

    def _next(self) -> int:
        self._seq += 1
        return self._seq

    async def request(
        self, method: str, url: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        """A user's request, waiting out 429/5xx as a person retrying would (up to 5 min)."""
        deadline = time.monotonic() + 300
        while True:
            try:
                resp = await self.stack.http.request(method, url, json=body, headers=headers)
            except httpx.TransportError:
                resp = None
            if resp is not None and resp.status_code not in _PASSING:
                return resp
            self.counts.refused_by_outage += 1
            if time.monotonic() > deadline:
                raise RuntimeError(f"{method} {url}: still failing after 5 min")
            wait = float(resp.headers.get("Retry-After", "1")) if resp is not None else 1.0
            await asyncio.sleep(min(max(wait, 0.5), 10.0))

    async def crm(self, method: str, path: str, user: User, body: Any = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {TOKEN}", "MSCRMCallerID": user.systemuser_id}
        if method in ("POST", "PATCH"):
            headers["Prefer"] = "return=representation"
        url = f"{self.stack.dataverse}/api/data/v9.2/{path}"
        return await self.request(method, url, body, headers)

    async def outlook(self, method: str, path: str, user: User, body: Any = None) -> httpx.Response:
        url = f"{self.stack.graph}/v1.0/users/{user.mailbox_id}/{path}"
        return await self.request(method, url, body, {"Authorization": f"Bearer {TOKEN}"})

    async def outlook_contacts(self, user: User) -> list[dict[str, Any]]:
        resp = await self.outlook("GET", "contacts?$top=1000", user)
        if resp.status_code != 200:
            raise RuntimeError(f"listing {user.upn}'s contacts: {resp.status_code} {resp.text}")
        value: list[dict[str, Any]] = resp.json()["value"]
        return value

    async def crm_contacts(self) -> list[dict[str, Any]]:
        resp = await self.crm("GET", "contacts", self.stack.users[0])
        if resp.status_code != 200:
            raise RuntimeError(f"listing CRM contacts: {resp.status_code} {resp.text}")
        value: list[dict[str, Any]] = resp.json()["value"]
        return value

    async def crm_side(self, until: float) -> None:
        """Create contacts (a quarter of the steps, up to the cap) and edit job titles."""
        while time.monotonic() < until:
            user = self.rnd.choice(self.stack.users)
            mine = [c for c in self.contacts.values() if c.user == user]
            if not mine or (len(mine) < self.max_per_mailbox and self.rnd.random() < 0.25):
                await self._create(user)
            else:
                await self._crm_edit(self.rnd.choice(mine))
            await asyncio.sleep(self.rnd.expovariate(self.ops_per_s))

    async def _create(self, user: User) -> None:
        surname = f"Soak{self.tag}n{self._next()}"
        body = {"firstname": "S", "lastname": surname}
        resp = await self.crm("POST", "contacts", user, body)
        if resp.status_code not in (200, 201):
            raise RuntimeError(f"creating {surname}: {resp.status_code} {resp.text}")
        self.contacts[surname] = Contact(surname, user, resp.json()["contactid"])
        self.counts.creates += 1

    async def _crm_edit(self, contact: Contact) -> None:
        title = f"t{self._next()}"
        resp = await self.crm(
            "PATCH", f"contacts({contact.row_id})", contact.user, {"jobtitle": title}
        )
        if resp.status_code not in (200, 204):
            raise RuntimeError(f"editing {contact.surname}: {resp.status_code} {resp.text}")
        contact.title = title
        contact.crm_edits += 1
        self.counts.crm_edits += 1

    async def outlook_side(self, until: float) -> None:
        """Edit the mobile phone of contacts that have arrived in Outlook."""
        while time.monotonic() < until:
            user = self.rnd.choice(self.stack.users)
            mine = [c for c in self.contacts.values() if c.user == user]
            if any(c.outlook_id is None for c in mine) or not mine:
                await self.discover(user)
            arrived = [c for c in mine if c.outlook_id is not None]
            if arrived:
                contact = self.rnd.choice(arrived)
                mobile = f"m{self._next()}"
                resp = await self.outlook(
                    "PATCH", f"contacts/{contact.outlook_id}", user, {"mobilePhone": mobile}
                )
                if resp.status_code != 200:
                    raise RuntimeError(
                        f"editing {contact.surname} in Outlook: {resp.status_code} {resp.text}"
                    )
                contact.mobile = mobile
                contact.outlook_edits += 1
                self.counts.outlook_edits += 1
            await asyncio.sleep(self.rnd.expovariate(self.ops_per_s))

    async def discover(self, user: User) -> None:
        """Learn the Outlook ids of the user's contacts that have arrived."""
        for item in await self.outlook_contacts(user):
            contact = self.contacts.get(item.get("surname") or "")
            if contact is not None and contact.user == user and contact.outlook_id is None:
                contact.outlook_id = item["id"]
