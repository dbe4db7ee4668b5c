"""Which mailboxes this worker serves, when several workers share a deployment.

Every mailbox-keyed topic has the same number of partitions and is keyed by the mailbox id, so
a mailbox lives in the same partition number everywhere (Kafka's default partitioner:
``murmur2(mailbox id) % partitions``). The Outlook writer's consumer group decides who owns
which partition; the worker that owns a mailbox's partition also reads its Outlook side
(delta passes, webhook-driven passes, To Do polling, subscriptions).

:class:`MailboxOwnership` carries that decision from the writer to the readers. The writer
calls :meth:`assigned` once its partitions are assigned and :meth:`released` when they are
revoked; both await every listener, so the readers of a mailbox have stopped before its
partition can go to another worker (rebalances are eager: all partitions are revoked first).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable

from aiokafka.partitioner import murmur2

log = logging.getLogger(__name__)

Listener = Callable[[frozenset[int]], Awaitable[None]]
"""Called with the partitions owned after a change."""


def partition_of(key: str, partitions: int) -> int:
    """The partition Kafka's default partitioner puts ``key`` in."""
    if partitions < 1:
        raise ValueError("partitions must be >= 1")
    return (int(murmur2(key.encode("utf-8"))) & 0x7FFFFFFF) % partitions


class MailboxOwnership:
    """The mailbox partitions this worker owns (none until the writer's group assigns)."""

    def __init__(self, partitions: int) -> None:
        if partitions < 1:
            raise ValueError("partitions must be >= 1")
        self.partitions = partitions
        self._owned: frozenset[int] = frozenset()
        self._listeners: list[Listener] = []

    @property
    def owned(self) -> frozenset[int]:
        """The partitions owned now."""
        return self._owned

    def owns(self, mailbox_id: str) -> bool:
        """Whether this worker serves ``mailbox_id`` now."""
        return partition_of(mailbox_id, self.partitions) in self._owned

    def listen(self, listener: Listener) -> None:
        """Call ``listener`` after every change of the owned partitions."""
        self._listeners.append(listener)

    async def assigned(self, partitions: Iterable[int]) -> None:
        """The writer's group assigned ``partitions`` (all this worker owns now)."""
        await self._set(frozenset(partitions))

    async def released(self) -> None:
        """The writer's partitions are being revoked: this worker owns none until assigned."""
        await self._set(frozenset())

    async def _set(self, owned: frozenset[int]) -> None:
        if owned == self._owned:
            return
        self._owned = owned
        log.info("mailbox partitions owned: %s", sorted(owned) or "none")
        for listener in list(self._listeners):
            await listener(owned)
