"""Typed event contracts. The JSON Schema files in ``schemas/json/`` are generated from these.

Each model is a frozen, slotted dataclass. Field ``metadata`` carries the extra JSON Schema
constraints (``pattern``, ``maxLength``, ``minLength``, ``format``, ``description``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final, Literal, TypeAlias

from schemas.derive import BASE_ID
from schemas.token import DEFAULT_TOKEN_PREFIX, MAX_TOKEN_LENGTH, TOKEN_PREFIX_PATTERN
from schemas.types import (
    AutoTrack,
    ConflictPolicy,
    CrmTable,
    Direction,
    EditVsDelete,
    Kind,
    LeaveFilter,
    Op,
    Projection,
    Side,
)

_ID = {"minLength": 1, "maxLength": 512}
_TIME = {
    "format": "date-time",
    "pattern": r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$",
}
_GUID = {
    "pattern": r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
}
#: An RFC 5322 message id as Graph shows it (a header line holds at most 998 characters).
_MESSAGE_ID = {"minLength": 1, "maxLength": 998}
#: A Graph item or folder id (URL-safe base64; never a path).
_GRAPH_ID = {"pattern": r"^[A-Za-z0-9=_\-]{1,512}$"}
_ADDRESS = {"pattern": r"^[^@\s]+@[^@\s]+$", "maxLength": 320}

Origin: TypeAlias = Literal["webhook", "delta", "full_sync", "change_tracking", "replay", "engine"]
CommandAction: TypeAlias = Literal[
    "create", "update", "delete", "send", "mark_sent", "set_categories"
]
OutcomeStatus: TypeAlias = Literal[
    "applied", "conflict", "not_found", "forbidden", "failed", "skipped"
]
MailboxStatus: TypeAlias = Literal["registered", "approved", "enabled", "paused", "disabled"]
FilterSource: TypeAlias = Literal["template", "userquery", "custom"]


@dataclass(frozen=True, slots=True)
class OutlookAttributes:
    """What the Outlook reader saw of an item besides its synced fields, for the rules.

    Email tracking reads the folder, the categories and a message's correlation keys here;
    the reader fills them from the Graph item, so a renamed key fails type-checking.
    """

    folder_id: str | None = field(
        default=None, metadata=_ID | {"description": "parentFolderId: the item's folder"}
    )
    categories: list[str] = field(
        default_factory=list, metadata={"maxItems": 256, "description": "Outlook categories"}
    )
    internet_message_id: str | None = field(
        default=None, metadata=_MESSAGE_ID | {"description": "A message's internetMessageId"}
    )
    in_reply_to: str | None = field(
        default=None,
        metadata=_MESSAGE_ID | {"description": "The In-Reply-To header (message ids)"},
    )
    tracking_token: str | None = field(
        default=None,
        metadata={
            "minLength": 1,
            "maxLength": MAX_TOKEN_LENGTH,
            "description": "The CRM tracking token in the subject (organisation's prefix)",
        },
    )
    conversation_id: str | None = field(
        default=None, metadata=_ID | {"description": "A message's Graph conversationId"}
    )


@dataclass(frozen=True, slots=True)
class ItemChange:
    """A normalised change of one item observed on one side (topics changes.*, crm.raw)."""

    change_id: str = field(metadata=_ID | {"description": "Deterministic id: side, item, version"})
    side: Side
    org_id: str = field(metadata=_ID)
    kind: Kind
    op: Op
    item_id: str = field(metadata=_ID | {"description": "The item's id on its own side"})
    version: str = field(metadata={"maxLength": 512, "description": "changeKey or versionnumber"})
    observed_at: str = field(metadata=_TIME)
    mailbox_id: str | None = field(
        default=None, metadata=_ID | {"description": "Null on crm.raw, before fan-out"}
    )
    table: CrmTable | None = field(default=None, metadata={"description": "CRM table of the item"})
    correlation_id: str | None = field(default=None, metadata=_ID)
    projection: Projection = field(
        default_factory=dict, metadata={"description": "Synced fields, canonical names"}
    )
    attributes: dict[str, Any] = field(
        default_factory=dict, metadata={"description": "Source attributes filters need"}
    )
    outlook: OutlookAttributes | None = field(
        default=None, metadata={"description": "What the Outlook reader saw (Outlook side)"}
    )
    origin: Origin = "delta"


@dataclass(frozen=True, slots=True)
class WriteCommand:
    """An instruction to change one item on one side (topics commands.*)."""

    command_id: str = field(metadata=_ID | {"description": "Idempotency key"})
    mailbox_id: str = field(metadata=_ID)
    org_id: str = field(metadata=_ID)
    target: Side
    kind: Kind
    action: CommandAction
    correlation_id: str = field(metadata=_ID)
    caused_by: str = field(metadata=_ID | {"description": "change_id this command derives from"})
    issued_at: str = field(metadata=_TIME)
    table: CrmTable | None = None
    target_id: str | None = field(default=None, metadata=_ID)
    if_match: str | None = field(default=None, metadata={"maxLength": 512})
    fields: Projection = field(default_factory=dict)
    run_as: str | None = field(
        default=None, metadata=_GUID | {"description": "systemuser to impersonate on CRM writes"}
    )


@dataclass(frozen=True, slots=True)
class WriteOutcome:
    """What happened when a command was applied (topic outcomes)."""

    command_id: str = field(metadata=_ID)
    mailbox_id: str = field(metadata=_ID)
    org_id: str = field(metadata=_ID)
    target: Side
    kind: Kind
    action: CommandAction
    correlation_id: str = field(metadata=_ID)
    status: OutcomeStatus
    completed_at: str = field(metadata=_TIME)
    target_id: str | None = field(default=None, metadata=_ID)
    version: str | None = field(default=None, metadata={"maxLength": 512})
    written: Projection = field(default_factory=dict)
    error_code: str | None = field(default=None, metadata={"maxLength": 256})
    error_message: str | None = field(default=None, metadata={"maxLength": 4096})
    retriable: bool = False


@dataclass(frozen=True, slots=True)
class ChangeEventData:
    """Payload of the public change event."""

    mailbox_id: str = field(metadata=_ID)
    org_id: str = field(metadata=_ID)
    kind: Kind
    op: Op
    origin_side: Side
    correlation_id: str = field(metadata=_ID)
    outlook_id: str | None = field(default=None, metadata=_ID)
    crm_id: str | None = field(default=None, metadata=_ID)
    crm_table: CrmTable | None = None
    fields: Projection = field(default_factory=dict)


#: The revision of the events.v1 data schema that :class:`ChangeEventData` is: its file is
#: ``schemas/json/<this>.schema.json``. A backward-compatible change (an optional property
#: added) is a new revision; the files of earlier revisions stay as they are (README, Change feed).
EVENT_DATA_SCHEMA: Final = "change_event_data.r1"
#: ``ce_dataschema`` of every events.v1 record: the ``$id`` of that file.
EVENT_DATA_SCHEMA_URI: Final = f"{BASE_ID}{EVENT_DATA_SCHEMA}.schema.json"


@dataclass(frozen=True, slots=True)
class ChangeEvent:
    """Public change event (topic events.v1): CloudEvents 1.0, Kafka binary mode.

    The ``ce_*`` attributes travel as Kafka headers, ``data`` as the message value.
    ``ce_id`` is derived from the change or outcome that caused the event, so a record sent
    again after a crash repeats it: consumers dedupe by it.
    """

    ce_id: str = field(metadata=_ID)
    ce_source: str = field(metadata=_ID | {"format": "uri-reference"})
    ce_type: Literal[
        "com.dynasync.item.synced.v1",
        "com.dynasync.item.deleted.v1",
        "com.dynasync.item.unlinked.v1",
        "com.dynasync.conflict.recorded.v1",
    ]
    ce_specversion: Literal["1.0"]
    ce_time: str = field(metadata=_TIME)
    ce_subject: str = field(metadata=_ID)
    data: ChangeEventData
    ce_dataschema: str = field(
        default=EVENT_DATA_SCHEMA_URI,
        metadata={
            "format": "uri",
            "maxLength": 2048,
            "description": "$id of the JSON Schema data conforms to (absent before it was sent)",
        },
    )


@dataclass(frozen=True, slots=True)
class Organisation:
    """A Dataverse organisation (topic config, key ``organisation:<org_id>``)."""

    org_id: str = field(metadata=_ID)
    url: str = field(metadata={"format": "uri", "pattern": r"^https?://", "maxLength": 2048})
    tenant_id: str | None = field(default=None, metadata=_GUID)
    display_name: str | None = field(default=None, metadata={"maxLength": 256})
    token_prefix: str = field(
        default=DEFAULT_TOKEN_PREFIX,
        metadata={
            "pattern": TOKEN_PREFIX_PATTERN,
            "description": "Prefix of the CRM tracking token in email subjects (then digits)",
        },
    )
    record_type: Literal["organisation"] = "organisation"


@dataclass(frozen=True, slots=True)
class TrackedFolder:
    """An Outlook mail folder whose messages are tracked against a regarding record."""

    folder_id: str = field(metadata=_GRAPH_ID | {"description": "Graph mailFolder id"})
    regarding_table: str = field(metadata={"pattern": r"^[a-z_]{1,64}$"})
    regarding_id: str = field(metadata=_GUID)


@dataclass(frozen=True, slots=True)
class Mailbox:
    """One synchronizing mailbox: one Graph user, one CRM user, one organisation."""

    mailbox_id: str = field(metadata=_ID | {"description": "Graph user id"})
    upn: str = field(metadata=_ADDRESS)
    org_id: str = field(metadata=_ID)
    systemuser_id: str = field(metadata=_GUID)
    status: MailboxStatus = "registered"
    aad_object_id: str | None = field(default=None, metadata=_GUID)
    smtp_address: str | None = field(
        default=None,
        metadata=_ADDRESS | {"description": "Primary SMTP address, when it is not the UPN"},
    )
    auto_track: AutoTrack = "replies"
    auto_create_contact: bool = field(
        default=False,
        metadata={"description": "Create a CRM contact for the unknown sender of tracked mail"},
    )
    tracked_folders: list[TrackedFolder] = field(default_factory=list, metadata={"maxItems": 25})
    field_groups: list[str] = field(default_factory=list)
    failing_since: str | None = field(
        default=None,
        metadata=_TIME
        | {"description": "Since when Graph refuses the mailbox (user gone, access denied)"},
    )
    last_error: str | None = field(
        default=None,
        metadata={
            "maxLength": 500,
            "description": "Why it is failing, or why the runtime disabled it",
        },
    )
    record_type: Literal["mailbox"] = "mailbox"


@dataclass(frozen=True, slots=True)
class FilterRecord:
    """A synchronization filter: FetchXML over one CRM table (OR-combined per table)."""

    filter_id: str = field(metadata=_ID)
    org_id: str = field(metadata=_ID)
    table: CrmTable
    name: str = field(metadata={"minLength": 1, "maxLength": 256})
    fetchxml: str = field(metadata={"minLength": 1, "maxLength": 100_000})
    source: FilterSource = "custom"
    mailbox_id: str | None = field(
        default=None, metadata=_ID | {"description": "Null for an organisation-wide template"}
    )
    enabled: bool = True
    record_type: Literal["filter"] = "filter"


@dataclass(frozen=True, slots=True)
class FieldDirections:
    """Per-organisation directions and policies for one kind of item."""

    org_id: str = field(metadata=_ID)
    kind: Kind
    directions: dict[str, Direction] = field(default_factory=dict)
    conflict_policy: ConflictPolicy = "crm_wins"
    edit_vs_delete: EditVsDelete = "edit_wins"
    leave_filter: LeaveFilter = "unlink"
    record_type: Literal["field_directions"] = "field_directions"


SyncState: TypeAlias = Literal["ok", "retrying", "failing", "disabled", "paused", "idle"]
"""How one direction or kind of a mailbox fares: ``ok`` (its last try worked), ``retrying``
(a passing failure, backing off), ``failing`` (a permanent refusal, tried again before it is
disabled), ``disabled``, ``paused`` (mass-delete guard) or ``idle`` (nothing tried yet)."""


@dataclass(frozen=True, slots=True)
class StreamSync:
    """The last successful sync of one stream (an Outlook folder or list, a CRM table)."""

    side: Side
    kind: Kind
    stream: str = field(metadata={"minLength": 1, "maxLength": 600})
    last_success: str | None = field(default=None, metadata=_TIME)


@dataclass(frozen=True, slots=True)
class MailboxHealth:
    """One mailbox as the worker that owns it sees it (topic ``mailbox.status``, compacted,
    key: the mailbox id). ``incoming`` is Outlook→CRM, ``outgoing`` CRM→Outlook."""

    mailbox_id: str = field(metadata=_ID)
    worker: str = field(metadata={"minLength": 1, "maxLength": 256})
    updated_at: str = field(metadata=_TIME)
    incoming: SyncState = "idle"
    outgoing: SyncState = "idle"
    kinds: dict[str, SyncState] = field(
        default_factory=dict,
        metadata={
            "maxProperties": 4,
            "propertyNames": {"enum": ["email", "contact", "appointment", "task"]},
            "description": "Each kind's state (email, contact, appointment, task)",
        },
    )
    streams: list[StreamSync] = field(default_factory=list, metadata={"maxItems": 64})
    errors: dict[str, int] = field(
        default_factory=dict,
        metadata={
            "maxProperties": 8,
            "propertyNames": {"pattern": "^[a-z_]{1,32}$"},
            "description": "Errors counted since the worker took the mailbox, by where",
        },
    )
    last_error: str | None = field(default=None, metadata={"maxLength": 500})
    last_error_at: str | None = field(default=None, metadata=_TIME)
    failing_since: str | None = field(default=None, metadata=_TIME)
    failed_tries: int = field(default=0, metadata={"minimum": 0})
    open_conflicts: int = field(default=0, metadata={"minimum": 0})
    alerts: list[str] = field(
        default_factory=list, metadata={"maxItems": 20, "description": "Recent alerts"}
    )
    record_type: Literal["mailbox_health"] = "mailbox_health"


#: Every top-level message type, by the file stem of its JSON Schema.
MESSAGE_TYPES: dict[str, type[Any]] = {
    "item_change": ItemChange,
    "write_command": WriteCommand,
    "write_outcome": WriteOutcome,
    "change_event": ChangeEvent,
    EVENT_DATA_SCHEMA: ChangeEventData,
    "organisation": Organisation,
    "mailbox": Mailbox,
    "filter": FilterRecord,
    "field_directions": FieldDirections,
    "mailbox_health": MailboxHealth,
}

ConfigRecord: TypeAlias = Organisation | Mailbox | FilterRecord | FieldDirections
