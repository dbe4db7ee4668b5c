"""Email tracking: every auto-track option, category, folders, correlation steps, resolution."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, cast

import pytest

from pipeline.rules.tracking import (
    Address,
    ContactDraft,
    EmailFacts,
    correlate,
    parse_name,
    should_track,
)
from pipeline.rules.tracking_lookup import InMemoryTrackingLookup, RecordRef, StoredEmail
from pipeline.rules.tracking_settings import (
    MAX_TRACKED_FOLDERS,
    TrackingConfigError,
    TrackingSettings,
)
from schemas.models import OutlookAttributes
from schemas.types import AutoTrack


def guid(n: int) -> str:
    return f"{n:08x}-0000-0000-0000-000000000000"


OPP = RecordRef("opportunity", guid(100))
ACCOUNT = RecordRef("account", guid(101))
ORIGINAL = StoredEmail(
    "act-1",
    message_id="<orig@crm.example>",
    token="CRM:0001234",
    conversation_id="conv-1",
    regarding=OPP,
)


def lookup() -> InMemoryTrackingLookup:
    return InMemoryTrackingLookup(
        emails=[ORIGINAL, StoredEmail("act-2", message_id="done@x")],
        addresses=[
            ("systemuser", "colleague@corp.example", guid(1)),
            ("contact", "jane@client.example", guid(2)),
            ("account", "info@client.example", guid(3)),
            ("lead", "prospect@new.example", guid(4)),
            ("contact", "shared@both.example", guid(5)),
            ("lead", "shared@both.example", guid(6)),
            ("systemuser", "both@corp.example", guid(7)),
            ("contact", "both@corp.example", guid(8)),
        ],
    )


def mail(sender: str = "stranger@nowhere.example", **kwargs: Any) -> EmailFacts:
    return EmailFacts(
        internet_message_id=kwargs.pop("internet_message_id", "<new@mail.example>"),
        sender=Address(sender, kwargs.pop("name", None)),
        recipients=kwargs.pop("recipients", (Address("me@corp.example"),)),
        **kwargs,
    )


def decide(facts: EmailFacts, option: AutoTrack = "replies", **settings: Any) -> Any:
    return should_track(facts, TrackingSettings(auto_track=option, **settings), lookup())


# --- auto-track options ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("option", "sender", "tracked", "reason"),
    [
        ("all", "stranger@nowhere.example", True, "all"),
        ("replies", "stranger@nowhere.example", False, "not_matched"),
        ("replies", "jane@client.example", False, "not_matched"),
        ("from_crm_records", "jane@client.example", True, "from_crm_record"),
        ("from_crm_records", "info@client.example", True, "from_crm_record"),
        ("from_crm_records", "prospect@new.example", True, "from_crm_record"),
        ("from_crm_records", "colleague@corp.example", False, "not_matched"),
        ("from_crm_records", "stranger@nowhere.example", False, "not_matched"),
        ("from_email_enabled", "colleague@corp.example", True, "from_email_enabled"),
        ("from_email_enabled", "JANE@client.example", True, "from_email_enabled"),
        ("from_email_enabled", "stranger@nowhere.example", False, "not_matched"),
        ("none", "jane@client.example", False, "auto_track_none"),
    ],
)
def test_auto_track_options_for_new_mail(
    option: AutoTrack, sender: str, tracked: bool, reason: str
) -> None:
    decision = decide(mail(sender), option)
    assert (decision.tracked, decision.reason) == (tracked, reason)


@pytest.mark.parametrize("option", ["all", "replies", "from_crm_records", "from_email_enabled"])
def test_replies_to_crm_email_are_tracked_under_every_option_but_none(option: AutoTrack) -> None:
    decision = decide(mail(in_reply_to="<orig@crm.example>"), option)
    assert decision.tracked and decision.reason == "reply"
    assert decision.regarding == OPP
    assert decide(mail(in_reply_to="<orig@crm.example>"), "none").tracked is False


def test_outgoing_mail_looks_at_recipients() -> None:
    facts = mail(
        "me@corp.example",
        outgoing=True,
        recipients=(Address("stranger@nowhere.example"), Address("Jane@Client.example")),
    )
    decision = decide(facts, "from_crm_records")
    assert decision.tracked and decision.reason == "from_crm_record"
    assert decision.recipients == (
        ("stranger@nowhere.example", None),
        ("jane@client.example", RecordRef("contact", guid(2))),
    )
    assert (
        decide(replace(facts, recipients=(Address("x@y.example"),)), "from_crm_records").tracked
        is False
    )


# --- category and folders ----------------------------------------------------------------------


def test_tracked_category_tracks_even_with_auto_track_none() -> None:
    decision = decide(mail(categories=("Red", "tracked to dynamics 365")), "none")
    assert decision.tracked and decision.reason == "category"
    custom = decide(mail(categories=("CRM",)), "none", category="CRM")
    assert custom.tracked and custom.reason == "category"


def test_folder_tracking_sets_regarding() -> None:
    settings = TrackingSettings.from_config(
        {"auto_track": "none", "folders": {"folder-a": {"table": "account", "id": guid(101)}}}
    )
    decision = should_track(mail(folder_id="folder-a"), settings, lookup())
    assert decision.tracked and decision.reason == "folder"
    assert decision.regarding == ACCOUNT
    # the folder's record wins over the correlated email's regarding
    reply = should_track(
        mail(folder_id="folder-a", in_reply_to="<orig@crm.example>"), settings, lookup()
    )
    assert reply.regarding == ACCOUNT and reply.correlation == "in_reply_to"
    assert should_track(mail(folder_id="folder-b"), settings, lookup()).tracked is False


# --- correlation order -------------------------------------------------------------------------


def test_correlation_in_reply_to_first() -> None:
    facts = mail(in_reply_to="<done@x>", token="CRM:0001234", conversation_id="conv-1")
    decision = decide(facts)
    assert decision.correlation == "in_reply_to"
    assert decision.correlated is not None and decision.correlated.activity_id == "act-2"


def test_correlation_token_second() -> None:
    facts = mail(in_reply_to="<unknown@x>", token="CRM:0001234", conversation_id="c9")
    decision = decide(facts)
    assert decision.correlation == "token" and decision.token == "CRM:0001234"
    assert decision.tracked and decision.regarding == OPP


def test_correlation_conversation_last() -> None:
    decision = decide(mail(token="CRM:0009999", conversation_id="conv-1"))
    assert decision.correlation == "conversation"
    assert decision.correlated is not None and decision.correlated.activity_id == "act-1"
    assert decide(mail(conversation_id="conv-x")).correlation is None


def test_a_token_alone_correlates() -> None:
    """A reply carrying only the token (no In-Reply-To, a conversation the CRM never saw)."""
    decision = decide(mail(token="crm:0001234"))
    assert decision.tracked and decision.reason == "reply" and decision.correlation == "token"
    assert decision.regarding == OPP


def test_in_reply_to_with_several_references() -> None:
    found = correlate(mail(in_reply_to="<a@b> <orig@crm.example>"), lookup())
    assert found is not None and found[0] == "in_reply_to" and found[1].activity_id == "act-1"


# --- one activity per internetMessageId ------------------------------------------------------


def test_message_already_in_crm_is_not_created_again() -> None:
    decision = decide(mail(internet_message_id="orig@crm.example"), "none")
    assert decision.tracked and decision.reason == "already_tracked"
    assert decision.existing_activity == "act-1"
    assert decision.create_contact is None


# --- sender resolution and auto-create ---------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("colleague@corp.example", RecordRef("systemuser", guid(1))),
        ("both@corp.example", RecordRef("systemuser", guid(7))),
        ("shared@both.example", RecordRef("contact", guid(5))),
        ("info@client.example", RecordRef("account", guid(3))),
        ("prospect@new.example", RecordRef("lead", guid(4))),
        ("nobody@nowhere.example", None),
    ],
)
def test_sender_resolution_order(address: str, expected: RecordRef | None) -> None:
    assert decide(mail(address), "all").sender == expected


def test_auto_create_contact_for_unknown_sender() -> None:
    decision = decide(
        mail("New.Person@Else.example", name="Doe, Jane"), "all", auto_create_contact=True
    )
    assert decision.create_contact == ContactDraft("new.person@else.example", "Doe", "Jane")
    assert (
        decide(mail("jane@client.example"), "all", auto_create_contact=True).create_contact is None
    )
    assert decide(mail("x@y.example"), "all").create_contact is None
    assert decide(mail("x@y.example"), "replies", auto_create_contact=True).create_contact is None


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Jane Doe", ("Jane", "Doe")),
        ("Doe, Jane", ("Jane", "Doe")),
        ('"Mary Ann Smith"', ("Mary Ann", "Smith")),
        ("Prince", (None, "Prince")),
        (None, (None, "j.doe")),
        ("j.doe@x.example", (None, "j.doe")),
        ("Doe,", (None, "Doe")),
    ],
)
def test_parse_name(name: str | None, expected: tuple[str | None, str]) -> None:
    assert parse_name(name, "j.doe@x.example") == expected


def test_facts_of_a_message() -> None:
    """Keys, folder and categories from what the reader saw; parties from the projection."""
    projection = {
        "messageid": "<ignored@x>",
        "subject": "Re:",
        "from": {"email": "jane@client.example", "name": "Jane"},
        "to": [{"email": "me@corp.example", "name": None}],
        "cc": None,
        "directioncode": False,
    }
    seen = OutlookAttributes(
        folder_id="f",
        categories=["x"],
        internet_message_id="<m1@x>",
        tracking_token="CRM:0001234",
        conversation_id="c",
    )
    facts = EmailFacts.of(projection, seen)
    assert facts.internet_message_id == "<m1@x>" and facts.token == "CRM:0001234"
    assert facts.sender == Address("jane@client.example", "Jane")
    assert facts.recipients == (Address("me@corp.example"),)
    assert not facts.outgoing and facts.folder_id == "f" and facts.categories == ("x",)
    assert decide(facts).correlation == "token"
    with pytest.raises(ValueError, match="needs an internetMessageId"):
        EmailFacts.of(projection, OutlookAttributes(tracking_token="CRM:0001234"))


# --- settings validation ------------------------------------------------------------------------


def test_at_most_25_tracked_folders() -> None:
    folders = {f"folder-{i}": None for i in range(MAX_TRACKED_FOLDERS)}
    assert len(TrackingSettings.from_config({"folders": folders}).folders) == 25
    folders["one-too-many"] = None
    with pytest.raises(TrackingConfigError, match="26 tracked folders; at most 25"):
        TrackingSettings.from_config({"folders": folders})


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"auto_track": "sometimes"}, "auto_track: 'sometimes' is not one of"),
        ({"token_pattern": r"CRM:\d+"}, r"unknown setting\(s\) \['token_pattern'\]"),
        ({"folders": ["a"]}, "folders: expected an object"),
        ({"folders": {"f": {"table": "account"}}}, r"folders\['f'\]: expected"),
        ({"folders": {"f": {"table": "account", "id": "nope"}}}, "not a lowercase GUID"),
        ({"folders": {"f": {"table": "Bad Table", "id": guid(1)}}}, "not a table logical name"),
        ({"folders": {"": None}}, "bad folder id"),
        ({"auto_create_contact": "yes"}, "auto_create_contact: expected a boolean"),
        ({"category": " "}, "category: expected a non-empty string"),
        ({"colour": "red"}, r"unknown setting\(s\) \['colour'\]"),
    ],
)
def test_garbage_settings_are_refused(config: dict[str, Any], message: str) -> None:
    with pytest.raises(TrackingConfigError, match=message):
        TrackingSettings.from_config(config)


def test_settings_must_be_an_object() -> None:
    with pytest.raises(TrackingConfigError, match="expected an object, got list"):
        TrackingSettings.from_config(cast(Any, []))


def test_in_memory_lookup_refuses_unknown_tables() -> None:
    with pytest.raises(ValueError, match="'queue' is not one of"):
        InMemoryTrackingLookup(addresses=[("queue", "q@x", guid(1))])
