"""``privacy.event_bodies``: with it off, ``events.v1`` carries no item bodies; the rest of the
event, and the commands that write the body to the other side, are unchanged."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest

from pipeline.settings import PrivacySettings, Settings
from pipeline.stages.publish import Publisher
from schemas.models import ChangeEvent, ChangeEventData, WriteCommand


class Recorder:
    """A producer that keeps what it was asked to send."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None]] = []

    async def send(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        partition: int | None = None,
        timestamp_ms: int | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> asyncio.Future[Any]:
        self.sent.append((topic, value))
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


FIELDS = {"subject": "Quote", "description": "<p>the body</p>"}


def _event() -> ChangeEvent:
    return ChangeEvent(
        ce_id="e1",
        ce_source="/dynasync/org/m1",
        ce_type="com.dynasync.item.synced.v1",
        ce_specversion="1.0",
        ce_time="2026-01-01T00:00:00Z",
        ce_subject="c1",
        data=ChangeEventData(
            mailbox_id="m1",
            org_id="org",
            kind="email",
            op="upsert",
            origin_side="outlook",
            correlation_id="c1",
            fields=dict(FIELDS),
        ),
    )


def _command() -> WriteCommand:
    return WriteCommand(
        command_id="k1",
        mailbox_id="m1",
        org_id="org",
        target="crm",
        kind="email",
        action="create",
        correlation_id="c1",
        caused_by="test",
        issued_at="2026-01-01T00:00:00Z",
        fields=dict(FIELDS),
    )


@pytest.mark.parametrize("bodies", [True, False])
async def test_event_bodies_setting(tmp_path: Path, bodies: bool) -> None:
    settings = Settings(data_dir=tmp_path, privacy=PrivacySettings(event_bodies=bodies))
    producer = Recorder()
    await Publisher.over(producer, settings).emit([_event(), _command()])
    (event_topic, event), (command_topic, command) = producer.sent
    assert event_topic.endswith("events.v1") and command_topic.endswith("commands.crm")
    data = orjson.loads(event or b"")
    assert data["fields"] == (FIELDS if bodies else {"subject": "Quote"})
    assert data["correlation_id"] == "c1"
    assert orjson.loads(command or b"")["fields"] == FIELDS  # the sync itself needs the body


def test_garbage_privacy_setting_is_refused() -> None:
    with pytest.raises(ValueError):
        PrivacySettings.model_validate({"event_bodies": "sometimes"})
