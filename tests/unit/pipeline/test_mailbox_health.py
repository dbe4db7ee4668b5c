"""The mailbox status record a worker builds and publishes (pipeline/mailbox_health.py)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from connectors.base import outcome_for
from pipeline.mailbox_health import HealthBook, HealthPublisher, worst
from schemas import codec
from schemas.models import Mailbox, MailboxHealth, WriteCommand
from schemas.types import Kind, Side

BOX = Mailbox(
    mailbox_id="ada@contoso.com",
    upn="ada@contoso.com",
    org_id="contoso",
    systemuser_id="0f8fad5b-d9cb-469f-a165-70867728950e",
    status="enabled",
)


@dataclass
class Reader:
    state: str = "ok"
    failed_tries: int = 0


def command(kind: Kind = "contact", target: Side = "crm") -> WriteCommand:
    return WriteCommand(
        command_id="c1",
        mailbox_id=BOX.mailbox_id,
        org_id="contoso",
        target=target,
        kind=kind,
        action="create",
        correlation_id="k1",
        caused_by="ch1",
        issued_at="2026-12-02T14:00:00Z",
    )


def test_worst_orders_states() -> None:
    assert worst([]) == "idle"
    assert worst(["ok", "idle"]) == "ok"
    assert worst(["ok", "retrying", "failing"]) == "failing"
    assert worst(["failing", "disabled"]) == "disabled"


def test_a_healthy_mailbox_shows_its_reads_and_writes() -> None:
    book = HealthBook("w1", clock=lambda: 1_800_000_000.0)
    book.read(BOX.mailbox_id, [("contact", "ada/contacts"), ("task", "ada/todo/1")])
    cmd = command()
    book.wrote("crm", cmd, outcome_for(cmd, "applied", target_id="x"))
    record = book.record(BOX, Reader())
    assert (record.incoming, record.outgoing) == ("ok", "idle")
    assert record.kinds["contact"] == "ok"
    assert record.errors == {}
    streams = {(s.side, s.kind, s.stream): s.last_success for s in record.streams}
    assert streams[("outlook", "contact", "ada/contacts")] == "2027-01-15T08:00:00Z"
    assert ("crm", "contact", "crm writes") in streams
    # what travels validates against the published schema
    assert codec.loads(MailboxHealth, codec.dumps(record)) == record


def test_a_failing_reader_fails_both_directions_and_every_kind() -> None:
    book = HealthBook("w1")
    book.error(BOX.mailbox_id, "reader", "ForbiddenError: HTTP 403 0x8004a104: disabled")
    book.failing(BOX.mailbox_id, True)
    record = book.record(BOX, Reader("failing", failed_tries=2), alerts=["a1"], open_conflicts=3)
    assert (record.incoming, record.outgoing) == ("failing", "failing")
    assert set(record.kinds.values()) == {"failing"}
    assert record.errors == {"reader": 1}
    assert record.last_error is not None and "0x8004a104" in record.last_error
    assert record.failing_since is not None and record.failed_tries == 2
    assert (record.alerts, record.open_conflicts) == (["a1"], 3)
    book.failing(BOX.mailbox_id, False)
    assert book.record(BOX, Reader()).failing_since is None


def test_parked_and_failed_writes_count_per_side() -> None:
    book = HealthBook("w1")
    task = command("task", "outlook")
    book.wrote("outlook", task, RuntimeError("gave up after 5 attempts"))
    contact = command()
    book.wrote("crm", contact, outcome_for(contact, "forbidden", error_message="no privilege"))
    record = book.record(BOX, Reader())
    assert record.outgoing == "retrying" and record.kinds["task"] == "retrying"
    assert record.incoming == "ok"  # a refused item is its own outcome, not the direction's
    assert record.errors == {"crm_writes": 1, "outlook_writes": 1}
    assert record.last_error == "forbidden: no privilege"


def test_a_disabled_mailbox_says_so_everywhere() -> None:
    from dataclasses import replace

    record = HealthBook("w1").record(replace(BOX, status="disabled"), None)
    assert (record.incoming, record.outgoing) == ("disabled", "disabled")
    assert set(record.kinds.values()) == {"disabled"}


async def test_publisher_sends_on_change_at_a_bounded_rate_and_a_heartbeat() -> None:
    now = [0.0]
    reader = Reader()
    book = HealthBook("w1", clock=lambda: 1_800_000_000.0 + now[0])
    sent: list[MailboxHealth] = []

    async def send(key: str, record: MailboxHealth) -> None:
        assert key == record.mailbox_id
        sent.append(record)

    publisher = HealthPublisher(
        lambda: [book.record(BOX, reader)],
        send,
        every_s=1,
        min_interval_s=2,
        heartbeat_s=60,
        clock=lambda: now[0],
    )
    assert await publisher.tick() == 1
    now[0] = 1
    assert await publisher.tick() == 0  # nothing changed
    reader.state = "retrying"
    assert await publisher.tick() == 0  # changed, but within min_interval_s
    now[0] = 2
    assert await publisher.tick() == 1 and sent[-1].incoming == "retrying"
    now[0] = 30
    assert await publisher.tick() == 0
    now[0] = 62
    assert await publisher.tick() == 1  # heartbeat
    assert publisher.sent == 3


def test_publisher_refuses_nonsense_intervals() -> None:
    async def send(key: str, record: MailboxHealth) -> None:
        raise AssertionError

    with pytest.raises(ValueError):
        HealthPublisher(list, send, every_s=5, min_interval_s=2)
