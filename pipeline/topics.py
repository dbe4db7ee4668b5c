"""The topic catalogue: every topic, its key, partitions and retention, in one place."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pipeline.settings import KafkaSettings

DAY_MS = 24 * 60 * 60 * 1000


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """One Kafka topic of the pipeline."""

    name: str
    key: Literal["mailbox_id", "record_id", "config_key", "cursor_key"]
    description: str
    retention_ms: int | None = 7 * DAY_MS
    compacted: bool = False

    def config(self) -> dict[str, str]:
        """Topic-level configuration for CreateTopics."""
        if self.compacted:
            return {"cleanup.policy": "compact", "min.compaction.lag.ms": "0"}
        return {"cleanup.policy": "delete", "retention.ms": str(self.retention_ms)}


GRAPH_NOTIFICATIONS = TopicSpec(
    "graph.notifications", "mailbox_id", "Validated Graph change notifications"
)
CHANGES_OUTLOOK = TopicSpec("changes.outlook", "mailbox_id", "Normalised Outlook item changes")
CRM_RAW = TopicSpec("crm.raw", "record_id", "Dataverse row changes, before fan-out")
CHANGES_CRM = TopicSpec("changes.crm", "mailbox_id", "CRM changes fanned out to mailboxes")
COMMANDS_CRM = TopicSpec("commands.crm", "mailbox_id", "Writes to apply to Dataverse")
COMMANDS_OUTLOOK = TopicSpec("commands.outlook", "mailbox_id", "Writes to apply to Outlook")
OUTCOMES = TopicSpec("outcomes", "mailbox_id", "Results of applied writes")
EVENTS_V1 = TopicSpec(
    "events.v1", "mailbox_id", "Public CloudEvents change feed", retention_ms=30 * DAY_MS
)
CONFLICTS = TopicSpec(
    "conflicts", "mailbox_id", "Recorded conflicts and manual cases", retention_ms=90 * DAY_MS
)
DLQ = TopicSpec("dlq", "mailbox_id", "Poison events with their error", retention_ms=30 * DAY_MS)
CONFIG = TopicSpec(
    "config", "config_key", "Organisations, mailboxes, filters, directions", compacted=True
)
CURSORS = TopicSpec(
    "cursors", "cursor_key", "Delta links, change tokens, subscriptions", compacted=True
)
MAILBOX_STATUS = TopicSpec(
    "mailbox.status",
    "mailbox_id",
    "Each mailbox's health as its worker sees it (MailboxHealth)",
    compacted=True,
)

ALL_TOPICS: tuple[TopicSpec, ...] = (
    GRAPH_NOTIFICATIONS,
    CHANGES_OUTLOOK,
    CRM_RAW,
    CHANGES_CRM,
    COMMANDS_CRM,
    COMMANDS_OUTLOOK,
    OUTCOMES,
    EVENTS_V1,
    CONFLICTS,
    DLQ,
    CONFIG,
    CURSORS,
    MAILBOX_STATUS,
)


def topic_name(spec: TopicSpec, kafka: KafkaSettings) -> str:
    """The full topic name with the configured prefix."""
    return f"{kafka.topic_prefix}{spec.name}"
