"""``dynasync topics create|list``: create the catalogue's topics idempotently, list them."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

import click

from pipeline.cli.clients import admin_client
from pipeline.cli.common import (
    bootstrap_option,
    emit,
    json_option,
    kafka_settings,
    print_table,
    run_kafka,
    write_json,
)
from pipeline.cli.params import POSITIVE, TOPIC_PREFIX

if TYPE_CHECKING:
    from aiokafka.admin import AIOKafkaAdminClient

    from pipeline.settings import KafkaSettings


@dataclass(frozen=True, slots=True)
class TopicReport:
    """What ``ensure_topics`` found or did for one topic."""

    name: str
    created: bool
    partitions: int


class TopicMismatchError(RuntimeError):
    """An existing topic has a partition count other than the catalogue's."""


async def ensure_topics(kafka: KafkaSettings, *, timeout_ms: int = 30_000) -> list[TopicReport]:
    """Create every catalogue topic that is missing; check the partition count of the others.

    Mailbox topics must share one partition count so one worker owns a mailbox everywhere.
    """
    from aiokafka.admin import NewTopic
    from aiokafka.errors import TopicAlreadyExistsError

    from pipeline.topics import ALL_TOPICS, topic_name

    admin = admin_client(kafka, request_timeout_ms=timeout_ms, client_id="dynasync-cli")
    try:
        await admin.start()
        existing = await _partition_counts(admin)
        wanted = {topic_name(spec, kafka): spec for spec in ALL_TOPICS}
        missing = [
            NewTopic(
                name=name,
                num_partitions=kafka.partitions,
                replication_factor=kafka.replication_factor,
                topic_configs=spec.config(),
            )
            for name, spec in wanted.items()
            if name not in existing
        ]
        if missing:
            # another process may win the race: fine, the counts are checked below
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(missing, timeout_ms=timeout_ms)
            created = {t.name for t in missing}
            existing = await _wait_for(admin, set(wanted), created, kafka.partitions, timeout_ms)
        reports = []
        for name in wanted:
            count = existing.get(name)
            if count is None:
                raise TopicMismatchError(f"topic {name} was not created")
            if count != kafka.partitions:
                raise TopicMismatchError(
                    f"topic {name} has {count} partitions, the catalogue wants "
                    f"{kafka.partitions}: mailbox topics must share one partition count"
                )
            reports.append(TopicReport(name, any(t.name == name for t in missing), count))
        return reports
    finally:
        await admin.close()


async def _wait_for(
    admin: AIOKafkaAdminClient, names: set[str], created: set[str], partitions: int, timeout_ms: int
) -> dict[str, int]:
    # CreateTopics answers before every broker's metadata knows the topics and all their
    # partitions: poll until it does.
    deadline = asyncio.get_running_loop().time() + timeout_ms / 1000
    while True:
        counts = await _partition_counts(admin)
        settled = names <= set(counts) and all(counts[n] == partitions for n in created)
        if settled or asyncio.get_running_loop().time() > deadline:
            return counts
        await asyncio.sleep(0.2)


async def _partition_counts(admin: AIOKafkaAdminClient) -> dict[str, int]:
    metadata = await admin.describe_topics()
    return {
        t["topic"]: len(t["partitions"])
        for t in metadata
        if t.get("error_code", 0) == 0 and not t["topic"].startswith("__")
    }


@click.group(name="topics")
def topics() -> None:
    """The Kafka topics of the catalogue (every mailbox topic with one partition count)."""


def _layout(
    bootstrap: str | None,
    topic_prefix: str | None,
    partitions: int | None,
    replication_factor: int | None,
) -> KafkaSettings:
    return kafka_settings(
        bootstrap, topic_prefix, partitions=partitions, replication_factor=replication_factor
    )


def _layout_options(func: click.decorators.FC) -> click.decorators.FC:
    func = click.option("--replication-factor", type=POSITIVE, help="replication factor")(func)
    func = click.option("--partitions", type=POSITIVE, help="partition count of every topic")(func)
    func = click.option("--topic-prefix", type=TOPIC_PREFIX, help="prefix of the topic names")(func)
    return bootstrap_option(func)


@topics.command("create")
@_layout_options
@json_option
def create(
    bootstrap: str | None,
    topic_prefix: str | None,
    partitions: int | None,
    replication_factor: int | None,
    as_json: bool,
) -> int:
    """Create the missing topics (idempotent; existing ones must have the same partitions)."""
    kafka = _layout(bootstrap, topic_prefix, partitions, replication_factor)

    async def body() -> list[TopicReport]:
        try:
            return await ensure_topics(kafka)
        except TopicMismatchError as exc:
            raise LookupError(str(exc)) from None

    reports = run_kafka(kafka, body)
    lines = [
        f"{'created' if r.created else 'exists '} {r.name} ({r.partitions} partitions)"
        for r in reports
    ]
    emit(as_json, reports, lines)
    return 0


@topics.command("list")
@_layout_options
@json_option
def list_(
    bootstrap: str | None,
    topic_prefix: str | None,
    partitions: int | None,
    replication_factor: int | None,
    as_json: bool,
) -> int:
    """Print the topic catalogue (names with this prefix; nothing is read from Kafka)."""
    from pipeline.topics import ALL_TOPICS, topic_name

    kafka = _layout(bootstrap, topic_prefix, partitions, replication_factor)
    data = [
        {
            "name": topic_name(spec, kafka),
            "key": spec.key,
            "compacted": spec.compacted,
            "retention_ms": None if spec.compacted else spec.retention_ms,
            "partitions": kafka.partitions,
            "description": spec.description,
        }
        for spec in ALL_TOPICS
    ]
    if as_json:
        write_json(data)
        return 0
    rows = [
        (
            str(d["name"]),
            str(d["key"]),
            "compacted" if d["compacted"] else f"retention {d['retention_ms']} ms",
            str(d["description"]),
        )
        for d in data
    ]
    print_table(("TOPIC", "KEY", "RETENTION", "CONTENT"), rows, empty="no topics")
    return 0
