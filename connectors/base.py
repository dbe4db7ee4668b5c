"""The small interfaces every connector implements.

A *source* yields batches of changes starting from a resume cursor handed in by the caller
(a Graph deltaLink, a Dataverse change token); it keeps no other state between runs, so a
restart from the last committed cursor resumes exactly. A *sink* applies write commands and
returns one outcome per command.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol, runtime_checkable

from schemas.models import ItemChange, OutcomeStatus, WriteCommand, WriteOutcome
from schemas.types import Projection


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


@runtime_checkable
class MailboxMemory(Protocol):
    """A sink that caches what it learnt of a mailbox (what exists there, list ids). Such
    knowledge holds only while this process alone writes the mailbox: the writer stage calls
    ``forget`` when the mailbox's partition goes to another worker."""

    def forget(self, mailbox_id: str) -> None:
        """Drop everything cached of ``mailbox_id``."""
        ...


def utc_now() -> str:
    """The current time as the contracts write it: UTC, seconds precision, ``Z``."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def outcome_for(
    cmd: WriteCommand,
    status: OutcomeStatus,
    *,
    target_id: str | None = None,
    version: str | None = None,
    written: Projection | None = None,
    error_code: str | None = None,
    error_message: str | None = None,
    retriable: bool = False,
) -> WriteOutcome:
    """The outcome of ``cmd``: every sink reports through this one constructor."""
    return WriteOutcome(
        command_id=cmd.command_id,
        mailbox_id=cmd.mailbox_id,
        org_id=cmd.org_id,
        target=cmd.target,
        kind=cmd.kind,
        action=cmd.action,
        correlation_id=cmd.correlation_id,
        status=status,
        completed_at=utc_now(),
        target_id=target_id or cmd.target_id,
        version=version,
        written=dict(written) if written else {},
        error_code=error_code[:256] if error_code else None,
        error_message=error_message[:4096] if error_message else None,
        retriable=retriable,
    )
