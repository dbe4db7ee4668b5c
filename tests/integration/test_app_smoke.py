"""A worker app from build_app runs a trivial echo stage through the real broker end to end."""

from __future__ import annotations

import pytest

from pipeline.cli.demo_echo import demo_echo
from pipeline.cli.topics import ensure_topics
from pipeline.settings import KafkaSettings

pytestmark = pytest.mark.kafka


async def test_echo_agent_round_trip(kafka_bootstrap: str) -> None:
    lines = await demo_echo(kafka_bootstrap, messages=3, timeout_s=60)
    assert len(lines) == 3
    assert [line.rsplit("offset=", 1)[1] for line in lines] == ["0", "1", "2"]
    assert "value='hello #2'" in lines[2]


async def test_topics_create_is_idempotent(kafka_bootstrap: str) -> None:
    kafka = KafkaSettings(bootstrap=kafka_bootstrap, topic_prefix="smoke.", partitions=2)
    first = await ensure_topics(kafka)
    second = await ensure_topics(kafka)
    assert {r.name for r in first} == {r.name for r in second}
    assert not any(r.created for r in second)
    assert all(r.partitions == 2 for r in second)
