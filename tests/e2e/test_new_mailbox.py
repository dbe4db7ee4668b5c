"""A mailbox that joins while the pipeline runs gets the CRM records its filters hold that
already existed (not only those that change later), and existing mailboxes get no duplicates."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest

from pipeline.config_store import ConfigStore
from pipeline.runtime import Pipeline, RuntimeOptions
from tests.e2e.world import (
    World,
    by_surname,
    crm_contact_in_outlook,
    eventually,
    open_world,
    register,
)

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(240)]

FAST = RuntimeOptions(
    crm_poll_s=0.5, crm_poll_max_s=0.5, outlook_poll_s=0.5, outlook_poll_max_s=0.5
)


async def test_a_joining_mailbox_gets_existing_rows(kafka_bootstrap: str, tmp_path: Path) -> None:
    async with open_world(kafka_bootstrap, tmp_path) as w:
        await _joining(w)


async def _joining(w: World) -> None:
    # the pipeline reads the configuration as its own process would: through its own store
    async with (
        ConfigStore(w.settings.kafka) as own,
        Pipeline(w.settings, own.snapshot, FAST) as pipeline,
    ):
        first = f"Old{uuid.uuid4().hex[:6]}"
        await crm_contact_in_outlook(w, "Ann", first, "ann@x.test", 90)
        newcomer = await register(w, 1)
        existing = f"Pre{uuid.uuid4().hex[:6]}"
        resp = await w.crm(
            "POST",
            "contacts",
            {"firstname": "Pat", "lastname": existing, "emailaddress1": "pat@x.test"},
            user=newcomer,
        )
        assert resp.status_code in (200, 201), resp.text
        await asyncio.sleep(3)  # the CRM reader (polling every 0.5 s) has read the row
        # only now does the newcomer join: its row exists already and does not change again
        assert newcomer.mailbox_id not in own.snapshot.mailboxes
        await pipeline.refresh(await own.load())

        async def arrived() -> dict[str, Any] | None:
            found = by_surname(await w.outlook_contacts(newcomer), existing)
            return found[0] if found else None

        contact, _ = await eventually(arrived, 60, "the existing row in the new mailbox")
        assert contact["givenName"] == "Pat"
        assert len(by_surname(await w.outlook_contacts(), first)) == 1
        assert by_surname(await w.outlook_contacts(), existing) == []  # not the first user's
