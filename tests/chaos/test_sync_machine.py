"""A Hypothesis state machine over the whole system: random contact creates, edits and deletes
in Dataverse, random edits in Outlook, random kill -9 and restart of ``dynasync run``; at
quiescence both sides agree on every synced field, nothing is duplicated, and nothing keeps
being rewritten (no echo loop).

The emulators, topics and the worker process live on an event loop in a background thread
and are shared by the examples; each example works on its own contacts.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import uuid
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    precondition,
    rule,
    run_state_machine_as_test,
)

from tests.e2e.proc import PipelineProcess
from tests.e2e.world import User, World, crm_contact_in_outlook, eventually, open_world

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(600)]

T = TypeVar("T")
KILLS_PER_EXAMPLE = 1
#: Synced both ways by default: Dataverse column -> Graph property.
FIELDS = {"firstname": "givenName", "jobtitle": "jobTitle"}
values = st.sampled_from(["Ada", "Bo", "Cy", "Di", "Ed", "Flo"])


class Harness:
    """An event loop in a thread holding the world and the worker for every example."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self._stack = contextlib.AsyncExitStack()
        self.world: World
        self.proc: PipelineProcess

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 240) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def open(self, kafka_bootstrap: str, data_dir: Path) -> None:
        self.world = await self._stack.enter_async_context(
            open_world(kafka_bootstrap, data_dir, users=2)
        )
        self.proc = PipelineProcess(self.world, data_dir / "pipeline.log", poll_s=0.3)
        await self.proc.start()
        self._stack.push_async_callback(self.proc.kill)
        for user in self.world.users:  # partitions assigned, first full syncs done
            await crm_contact_in_outlook(
                self.world, "Warm", f"Up{uuid.uuid4().hex[:6]}", "", 90, user
            )

    def close(self) -> None:
        try:
            self.run(self._stack.aclose())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)


@dataclass
class Contact:
    surname: str
    user: User
    row_id: str
    deleted: bool = False
    outlook_edited: bool = False
    #: every value each side wrote to each field, in order
    written: dict[str, dict[str, list[str]]] = field(
        default_factory=lambda: {"crm": {}, "outlook": {}}
    )


class SyncMachine(RuleBasedStateMachine):
    harness: ClassVar[Harness]
    contacts = Bundle("contacts")

    def __init__(self) -> None:
        super().__init__()
        self.tag = uuid.uuid4().hex[:6]
        self.model: list[Contact] = []
        self.kills = 0

    @property
    def w(self) -> World:
        return self.harness.world

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.harness.run(coro)

    def count(self, what: str) -> None:
        self.harness.counts[what] += 1

    @initialize(target=contacts, user=st.integers(0, 1), first=values)
    def synced_contact(self, user: int, first: str) -> Contact:
        """A contact that has reached Outlook already, so Outlook edits have a target."""
        contact = self._create(user, first)
        self.run(eventually(lambda: self._outlook_copy(contact), 30, contact.surname))
        return contact

    @rule(target=contacts, user=st.integers(0, 1), first=values)
    def crm_create(self, user: int, first: str) -> Contact:
        return self._create(user, first)

    def _create(self, user: int, first: str) -> Contact:
        who = self.w.users[user]
        surname = f"Sm{self.tag}n{len(self.model)}"
        body = {"firstname": first, "lastname": surname}
        resp = self.run(self.w.crm("POST", "contacts", body, user=who))
        assert resp.status_code in (200, 201), resp.text
        self.count("crm creates")
        contact = Contact(surname, who, resp.json()["contactid"])
        contact.written["crm"]["firstname"] = [first]
        self.model.append(contact)
        return contact

    @rule(contact=contacts, column=st.sampled_from(sorted(FIELDS)), value=values)
    def crm_edit(self, contact: Contact, column: str, value: str) -> None:
        if contact.deleted:
            return
        resp = self.run(
            self.w.crm("PATCH", f"contacts({contact.row_id})", {column: value}, user=contact.user)
        )
        assert resp.status_code in (200, 204), resp.text
        contact.written["crm"].setdefault(column, []).append(value)
        self.count("crm edits")

    @rule(contact=contacts, column=st.sampled_from(sorted(FIELDS)), value=values)
    def outlook_edit(self, contact: Contact, column: str, value: str) -> None:
        copy = self.run(self._outlook_copy(contact))
        if copy is None:
            return  # not there yet (or deleted): the user cannot edit it
        prop = FIELDS[column]
        resp = self.run(
            self.w.outlook("PATCH", f"contacts/{copy['id']}", {prop: value}, user=contact.user)
        )
        if resp.status_code == 404:
            return  # deleted by the pipeline meanwhile
        assert resp.status_code == 200, resp.text
        contact.outlook_edited = True
        self.count("outlook edits")
        contact.written["outlook"].setdefault(column, []).append(value)

    @rule(contact=contacts)
    def crm_delete(self, contact: Contact) -> None:
        if contact.deleted:
            return
        resp = self.run(self.w.crm("DELETE", f"contacts({contact.row_id})", user=contact.user))
        assert resp.status_code == 204, resp.text
        contact.deleted = True
        self.count("crm deletes")

    @rule(pause=st.floats(0.0, 1.0))
    def wait(self, pause: float) -> None:
        self.run(asyncio.sleep(pause))

    @precondition(lambda self: self.kills < KILLS_PER_EXAMPLE)
    @rule(pause=st.floats(0.0, 1.0))
    def kill_and_restart(self, pause: float) -> None:
        self._kill(pause)

    def _kill(self, pause: float) -> None:
        self.run(self._kill_and_restart(pause))
        self.kills += 1
        self.count("kills")

    async def _kill_and_restart(self, pause: float) -> None:
        await asyncio.sleep(pause)
        await self.harness.proc.kill()
        await self.harness.proc.start()

    def teardown(self) -> None:
        if self.model:
            if not self.kills:  # every example sees at least one kill, right after its last step
                self._kill(0.0)
            self.run(self._converged())
            self.count("examples converged")

    async def _outlook_copy(self, contact: Contact) -> dict[str, Any] | None:
        mine = await self.w.outlook_contacts(contact.user)
        found = [c for c in mine if c.get("surname") == contact.surname]
        return found[0] if found else None

    async def _state(self) -> dict[str, tuple[list[dict[str, Any]], list[dict[str, Any]]]]:
        """surname -> (CRM rows, Outlook copies in any mailbox)."""
        rows = await self.w.crm_contacts()
        copies = [
            {**c, "_mailbox": u.mailbox_id}
            for u in self.w.users
            for c in await self.w.outlook_contacts(u)
        ]
        return {
            c.surname: (
                [r for r in rows if r.get("lastname") == c.surname],
                [o for o in copies if o.get("surname") == c.surname],
            )
            for c in self.model
        }

    async def _converged(self) -> None:
        async def agreed() -> dict[str, Any] | None:
            state = await self._state()
            return state if all(self._agrees(c, *state[c.surname]) for c in self.model) else None

        try:
            await eventually(agreed, 90, f"convergence of {len(self.model)} contacts", 0.5)
        except AssertionError as exc:  # say what disagrees, and what the worker said last
            state = await self._state()
            apart = {
                c.surname: state[c.surname]
                for c in self.model
                if not self._agrees(c, *state[c.surname])
            }
            proc = self.harness.proc
            tail = proc.log_text()[-3000:] if proc is not None else ""
            raise AssertionError(f"{exc}: {apart}\n{tail}") from None
        before = _versions(await self._state())
        await asyncio.sleep(2.5)
        after = await self._state()
        assert all(self._agrees(c, *after[c.surname]) for c in self.model)
        assert _versions(after) == before, "items keep being rewritten after quiescence"

    def _agrees(self, c: Contact, rows: list[dict[str, Any]], copies: list[dict[str, Any]]) -> bool:
        assert len(rows) <= 1, f"{c.surname}: {len(rows)} CRM rows"
        assert len(copies) <= 1, f"{c.surname}: {len(copies)} Outlook copies"
        if c.deleted and not c.outlook_edited:
            return not rows and not copies
        if c.deleted and not rows and not copies:
            return True  # deleted everywhere (the Outlook edit had synced before the delete)
        if len(rows) != 1 or len(copies) != 1:
            return False  # not yet (an edit racing the delete recreates the row)
        row, copy = rows[0], copies[0]
        assert copy["_mailbox"] == c.user.mailbox_id, f"{c.surname} synced to another mailbox"
        for column, prop in FIELDS.items():
            if (row.get(column) or "") != (copy.get(prop) or ""):
                return False
            crm, outlook = c.written["crm"].get(column), c.written["outlook"].get(column)
            if crm and not outlook and row.get(column) != crm[-1]:
                return False
            if outlook and not crm and row.get(column) != outlook[-1]:
                return False
            if (crm or outlook) and row.get(column) not in (crm or []) + (outlook or []):
                raise AssertionError(f"{c.surname}.{column} = {row.get(column)!r}: never written")
        return True


def _versions(state: dict[str, tuple[list[dict[str, Any]], list[dict[str, Any]]]]) -> set[str]:
    return {
        f"{surname}:{r['versionnumber']}:{o['changeKey']}"
        for surname, (rows, copies) in state.items()
        for r in rows
        for o in copies
    }


def test_both_sides_converge_through_kills(kafka_bootstrap: str, tmp_path: Path) -> None:
    harness = Harness()
    try:
        harness.run(harness.open(kafka_bootstrap, tmp_path))
        SyncMachine.harness = harness
        run_state_machine_as_test(
            SyncMachine,
            settings=settings(
                max_examples=int(os.environ.get("DYNASYNC_MACHINE_EXAMPLES", "6")),
                stateful_step_count=16,
                deadline=None,
                phases=[Phase.explicit, Phase.reuse, Phase.generate],  # a shrink is minutes
                suppress_health_check=list(HealthCheck),
                database=None,
                print_blob=True,
            ),
        )
        print(f"\nstate machine: {dict(harness.counts)}")
        assert harness.counts["examples converged"] >= 1
    finally:
        harness.close()
