"""Should an Outlook email be tracked in the CRM, why, and regarding what?

Decision order: an activity already holding the internetMessageId (one activity per message)
→ the tracked category → a tracked folder → the auto-track option (``none`` stops here) → a
correlated CRM email (In-Reply-To, then the tracking token of the subject, then the
conversation) → ``all`` → the counterpart resolving to a contact/account/lead
(``from_crm_records``) or to any email-enabled row (``from_email_enabled``). The counterpart
is the sender of incoming mail and the recipients of outgoing mail. The regarding record is the
tracked folder's, else the correlated email's.

The message's folder and correlation keys come from the Outlook reader's typed
:class:`schemas.models.OutlookAttributes` (the tracking token already found there, with the
organisation's token format); its parties and direction from its synced projection.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

from pipeline.rules.tracking_lookup import CrmEmail, RecordRef, TrackingLookup, normalize_message_id
from pipeline.rules.tracking_settings import TrackingSettings
from schemas.models import OutlookAttributes

TrackReason: TypeAlias = Literal[
    "already_tracked",
    "category",
    "folder",
    "reply",
    "all",
    "from_crm_record",
    "from_email_enabled",
    "auto_track_none",
    "not_matched",
]
Correlation: TypeAlias = Literal["in_reply_to", "token", "conversation"]
_CRM_RECORDS = frozenset({"contact", "account", "lead"})


@dataclass(frozen=True, slots=True)
class Address:
    """An email address with its display name."""

    email: str
    name: str | None = None


@dataclass(frozen=True, slots=True)
class EmailFacts:
    """What tracking looks at in one Outlook message."""

    internet_message_id: str
    token: str | None = None
    sender: Address | None = None
    recipients: tuple[Address, ...] = ()
    in_reply_to: str | None = None
    conversation_id: str | None = None
    categories: tuple[str, ...] = ()
    folder_id: str | None = None
    outgoing: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.internet_message_id, str) or not normalize_message_id(
            self.internet_message_id
        ):
            raise ValueError("an email needs an internetMessageId")

    @classmethod
    def of(cls, projection: Mapping[str, Any], seen: OutlookAttributes) -> EmailFacts:
        """Facts of an Outlook message: its keys, folder and categories as the reader saw
        them (``seen``), its parties and direction (``directioncode`` True = outgoing) from
        its projection. ValueError without an internetMessageId."""

        def party(value: Any) -> Address | None:
            if isinstance(value, Mapping) and isinstance(value.get("email"), str):
                name = value.get("name")
                return Address(value["email"], name if isinstance(name, str) else None)
            return None

        recipients = [
            p
            for key in ("to", "cc", "bcc")
            for p in (party(v) for v in projection.get(key) or ())
            if p is not None
        ]
        return cls(
            internet_message_id=seen.internet_message_id or "",
            token=seen.tracking_token,
            sender=party(projection.get("from")),
            recipients=tuple(recipients),
            in_reply_to=seen.in_reply_to,
            conversation_id=seen.conversation_id,
            categories=tuple(seen.categories),
            folder_id=seen.folder_id,
            outgoing=projection.get("directioncode") is True,
        )


@dataclass(frozen=True, slots=True)
class ContactDraft:
    """A contact to create for an unknown sender."""

    emailaddress1: str
    lastname: str
    firstname: str | None = None


@dataclass(frozen=True, slots=True)
class TrackDecision:
    """The tracking verdict for one message."""

    tracked: bool
    reason: TrackReason
    existing_activity: str | None = None
    correlation: Correlation | None = None
    correlated: CrmEmail | None = None
    token: str | None = None
    regarding: RecordRef | None = None
    sender: RecordRef | None = None
    recipients: tuple[tuple[str, RecordRef | None], ...] = ()
    create_contact: ContactDraft | None = None


def parse_name(name: str | None, address: str) -> tuple[str | None, str]:
    """(firstname, lastname) from a display name; the address's local part when nameless."""
    text = (name or "").strip().strip("\"'").strip()
    if not text or text.lower() == address.strip().lower():
        local = address.strip().split("@", 1)[0] or address.strip()
        return None, local[:50]
    if "," in text:
        last, _, first = text.partition(",")
        if last.strip() and first.strip():
            return first.strip()[:50], last.strip()[:50]
        text = (last or first).strip()
    words = text.split()
    if len(words) == 1:
        return None, words[0][:50]
    return " ".join(words[:-1])[:50], words[-1][:50]


def correlate(facts: EmailFacts, lookup: TrackingLookup) -> tuple[Correlation, CrmEmail] | None:
    """The CRM email this message answers: In-Reply-To, then token, then conversation."""
    for reference in (facts.in_reply_to or "").replace(",", " ").split():
        if normalize_message_id(reference):
            found = lookup.email_by_message_id(normalize_message_id(reference))
            if found is not None:
                return "in_reply_to", found
    if facts.token is not None:
        found = lookup.email_by_token(facts.token)
        if found is not None:
            return "token", found
    if facts.conversation_id:
        found = lookup.email_by_conversation(facts.conversation_id)
        if found is not None:
            return "conversation", found
    return None


def _reason(
    facts: EmailFacts,
    settings: TrackingSettings,
    correlated: bool,
    counterparts: list[RecordRef | None],
) -> TrackReason:
    if any(c.strip().casefold() == settings.category.strip().casefold() for c in facts.categories):
        return "category"
    if facts.folder_id is not None and facts.folder_id in settings.folders:
        return "folder"
    option = settings.auto_track
    if option == "none":
        return "auto_track_none"
    if correlated:
        return "reply"
    if option == "all":
        return "all"
    if option == "from_crm_records" and any(
        r is not None and r.table in _CRM_RECORDS for r in counterparts
    ):
        return "from_crm_record"
    if option == "from_email_enabled" and any(r is not None for r in counterparts):
        return "from_email_enabled"
    return "not_matched"


def should_track(
    facts: EmailFacts, settings: TrackingSettings, lookup: TrackingLookup
) -> TrackDecision:
    """Decide whether ``facts`` is tracked, why, regarding what, and who the parties are."""
    sender = lookup.resolve_address(facts.sender.email) if facts.sender else None
    recipients = tuple(
        (r.email.strip().lower(), lookup.resolve_address(r.email)) for r in facts.recipients
    )
    existing = lookup.email_by_message_id(normalize_message_id(facts.internet_message_id))
    link = correlate(facts, lookup)
    token = facts.token
    if existing is not None:
        return TrackDecision(
            tracked=True,
            reason="already_tracked",
            existing_activity=existing.activity_id,
            correlation=link[0] if link else None,
            correlated=link[1] if link else None,
            token=token,
            regarding=existing.regarding,
            sender=sender,
            recipients=recipients,
        )
    counterparts = [r for _, r in recipients] if facts.outgoing else [sender]
    reason = _reason(facts, settings, link is not None, counterparts)
    tracked = reason not in ("auto_track_none", "not_matched")
    regarding = None
    if tracked:
        folder_record = settings.folders.get(facts.folder_id) if facts.folder_id else None
        regarding = folder_record or (link[1].regarding if link else None)
    draft = None
    if (
        tracked
        and settings.auto_create_contact
        and not facts.outgoing
        and facts.sender is not None
        and sender is None
    ):
        first, last = parse_name(facts.sender.name, facts.sender.email)
        draft = ContactDraft(facts.sender.email.strip().lower(), last, first)
    return TrackDecision(
        tracked=tracked,
        reason=reason,
        correlation=link[0] if link else None,
        correlated=link[1] if link else None,
        token=token,
        regarding=regarding,
        sender=sender,
        recipients=recipients,
        create_contact=draft,
    )
