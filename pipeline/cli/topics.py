"""``dynasync topics``: create the catalogue's topics idempotently, list them."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from pipeline.settings import KafkaSettings
from pipeline.topics import ALL_TOPICS, topic_name


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
    admin = AIOKafkaAdminClient(
        bootstrap_servers=kafka.bootstrap, request_timeout_ms=timeout_ms, client_id="dynasync-cli"
    )
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
