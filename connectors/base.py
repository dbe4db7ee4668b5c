"""The small interfaces every connector implements.

A *source* yields batches of changes starting from a resume cursor handed in by the caller
(a Graph deltaLink, a Dataverse change token); it keeps no other state between runs, so a
restart from the last committed cursor resumes exactly. A *sink* applies write commands and
returns one outcome per command.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from schemas.models import ItemChange, WriteCommand, WriteOutcome


@dataclass(frozen=True, slots=True)
class ChangeBatch:
    """Changes read in one page, and the cursor to resume after them.

    ``cursor`` is None while more pages of the same round follow; the final page of a round
    carries the cursor to store. ``full_sync`` is True when the batch belongs to a full
    resynchronisation (the old cursor had expired): items absent from it may have been deleted.
    """

    changes: tuple[ItemChange, ...]
    cursor: str | None
    full_sync: bool = False


class ChangeSource(Protocol):
    """Reads changes of one stream (one mailbox folder, one Dataverse table...)."""

    @property
    def stream_id(self) -> str:
        """A stable name of the stream, the key its cursor is stored under."""
        ...

    def read(self, cursor: str | None) -> AsyncIterator[ChangeBatch]:
        """Yield batches from ``cursor`` (None: from the beginning) up to now."""
        ...


class CommandSink(Protocol):
    """Applies write commands to one side."""

    async def apply(self, commands: Sequence[WriteCommand]) -> list[WriteOutcome]:
        """Apply ``commands`` in order; return one outcome per command, in the same order.

        Per-item failures are outcomes (status conflict/forbidden/failed...), not exceptions;
        an exception means nothing can be said about the batch and it must be retried.
        """
        ...
