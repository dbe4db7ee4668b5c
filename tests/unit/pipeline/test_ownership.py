"""MailboxOwnership: Kafka's partition of a mailbox, and listeners told of every change."""

from __future__ import annotations

import pytest
from aiokafka.partitioner import DefaultPartitioner

from pipeline.ownership import MailboxOwnership, partition_of


@pytest.mark.parametrize("key", ["mbx-1", "AAMkAGI2TG93AAA=", "ann@contoso.test", "ü"])
def test_partition_of_is_kafkas_default_partitioner(key: str) -> None:
    parts = list(range(6))
    assert partition_of(key, 6) == DefaultPartitioner()(key.encode(), parts, parts)


async def test_listeners_hear_each_change_once() -> None:
    own = MailboxOwnership(4)
    heard: list[frozenset[int]] = []

    async def listener(owned: frozenset[int]) -> None:
        heard.append(owned)

    own.listen(listener)
    await own.assigned([1, 3])
    await own.assigned([3, 1])  # no change: not heard again
    mine = next(m for m in (f"m{n}" for n in range(100)) if partition_of(m, 4) in {1, 3})
    assert own.owns(mine)
    await own.released()
    assert heard == [frozenset({1, 3}), frozenset()]
    assert not own.owns(mine)


@pytest.mark.parametrize("bad", [0, -1])
def test_partition_count_must_be_positive(bad: int) -> None:
    with pytest.raises(ValueError):
        MailboxOwnership(bad)
    with pytest.raises(ValueError):
        partition_of("m", bad)
