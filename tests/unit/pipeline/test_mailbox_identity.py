"""One Graph mailbox ↔ one CRM user ↔ one organisation, on normalised identities: every
spelling of a registered mailbox (UPN and SMTP address in any case, an address or an object id
as the mailbox id, the Graph object id in any case) and of a CRM user (systemuserid in any case,
with braces, in another organisation record for the same Dataverse) is a clash, on write and on
load; other mailboxes are not."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.config_store import (
    ConfigError,
    ConfigSnapshot,
    mailbox_clash,
    mailbox_identities,
    org_identity,
)
from schemas.models import Mailbox, Organisation

SU1 = "11111111-1111-1111-1111-11111111aaaa"
SU2 = "22222222-2222-2222-2222-22222222bbbb"
SU3 = "33333333-3333-3333-3333-33333333cccc"
OID = "0f8fad5b-d9cb-469f-a165-70867728950e"


def snapshot(*mailboxes: Mailbox) -> ConfigSnapshot:
    snap = ConfigSnapshot()
    for org_id, url in (
        ("contoso", "https://contoso.crm.dynamics.com"),
        ("fabrikam", "https://fabrikam.crm.dynamics.com"),
        ("contoso-again", "HTTPS://Contoso.CRM.dynamics.com/"),  # the same Dataverse org
    ):
        snap.apply(Organisation(org_id=org_id, url=url))
    for mailbox in mailboxes:
        snap.apply(mailbox)
    return snap


ANN = Mailbox(
    mailbox_id="ann@contoso.com", upn="ann@contoso.com", org_id="contoso", systemuser_id=SU1
)
BY_OID = Mailbox(
    mailbox_id=OID,
    upn="olga@contoso.com",
    org_id="contoso",
    systemuser_id=SU3,
    aad_object_id=OID,
    smtp_address="olga.smith@contoso.com",
)


@pytest.mark.parametrize(
    ("registered", "second", "named"),
    [
        # the brief's case: ANN@ and ann@, another organisation, another CRM user
        (
            ANN,
            Mailbox("ANN@contoso.com", "ANN@Contoso.COM", "fabrikam", SU2),
            "UPN ANN@Contoso.COM",
        ),
        # an address as the mailbox id, whatever UPN was typed beside it
        (ANN, Mailbox("ANN@CONTOSO.COM", "ann.smith@contoso.com", "fabrikam", SU2), "mailbox id"),
        # the SMTP address of one is the UPN of the other, either way round
        (
            ANN,
            Mailbox(
                "bob@contoso.com",
                "bob@contoso.com",
                "fabrikam",
                SU2,
                smtp_address="Ann@contoso.com",
            ),
            "SMTP address Ann@contoso.com",
        ),
        (BY_OID, Mailbox("x@contoso.com", "OLGA.SMITH@contoso.com", "fabrikam", SU2), "UPN"),
        # the Graph object id, as the mailbox id or as aad_object_id, in any case
        (BY_OID, Mailbox(OID.upper(), "o2@contoso.com", "fabrikam", SU2), "Graph user mailbox id"),
        (
            BY_OID,
            Mailbox("o3@contoso.com", "o3@contoso.com", "fabrikam", SU2, aad_object_id=OID.upper()),
            "Graph user object id",
        ),
        # one CRM user: its GUID in any case, in one organisation or another record of it
        (ANN, Mailbox("bob@contoso.com", "bob@contoso.com", "contoso", SU1.upper()), "CRM user"),
        (ANN, Mailbox("bob@contoso.com", "bob@contoso.com", "contoso-again", SU1), "CRM user"),
    ],
)
def test_a_second_spelling_is_a_clash(registered: Mailbox, second: Mailbox, named: str) -> None:
    snap = snapshot(registered)
    with pytest.raises(ConfigError, match=named) as info:
        snap.check(second)
    assert repr(registered.mailbox_id) in str(info.value)
    # left on the topic by a racing writer: the loaded snapshot names one of the two
    raced = snapshot(registered, second)
    (problem,) = raced.clashes()
    assert problem.key in {f"mailbox:{registered.mailbox_id}", f"mailbox:{second.mailbox_id}"}


def test_other_mailboxes_and_updates_are_not_clashes() -> None:
    snap = snapshot(ANN, BY_OID)
    snap.check(replace(ANN, status="enabled", smtp_address="ann.smith@contoso.com"))
    snap.check(Mailbox("bob@contoso.com", "bob@contoso.com", "contoso", SU2))
    # the same systemuser GUID in another Dataverse is another user
    snap.check(Mailbox("bob@contoso.com", "bob@contoso.com", "fabrikam", SU1))
    assert snap.clashes() == [] and snapshot().clashes() == []


def test_identities_are_normalised() -> None:
    assert set(mailbox_identities(BY_OID)) == {
        "address:olga@contoso.com",
        "address:olga.smith@contoso.com",
        f"object:{OID}",
    }
    assert set(mailbox_identities(Mailbox("mb1", "Ann@X.com", "o", SU1))) == {
        "address:ann@x.com",
        "id:mb1",
    }
    braces = Mailbox("a@x.com", "a@x.com", "o", "{" + SU1.upper() + "}")
    assert mailbox_clash(braces, [Mailbox("b@x.com", "b@x.com", "o", SU1)]) is not None


def test_of_many_mailboxes_the_later_of_each_pair_in_id_order_is_named() -> None:
    boxes = [
        Mailbox(
            f"user{i}@contoso.com",
            f"user{i}@contoso.com",
            "contoso",
            f"{i:08x}-0000-0000-0000-000000000000",
        )
        for i in range(2000)
    ]
    dupes = [
        replace(boxes[i], mailbox_id=f"USER{i}@CONTOSO.COM", org_id="fabrikam") for i in (3, 1500)
    ]
    found = snapshot(*boxes, *dupes).clashes()
    later = [max(boxes[i].mailbox_id, d.mailbox_id) for i, d in zip((3, 1500), dupes, strict=True)]
    assert sorted(p.key for p in found) == sorted(f"mailbox:{m}" for m in later)


_UPNS = ["ann@contoso.test", "ANN@contoso.test", "bob@contoso.test", "cy@contoso.test"]
_USERS = [f"{i:08d}-0000-4000-8000-000000000000" for i in range(3)]
_ORG_URLS = {"o1": "https://o1.crm.dynamics.com", "o2": "https://O1.crm.dynamics.com/"}


@st.composite
def _mailboxes(draw: st.DrawFn) -> Mailbox:
    return Mailbox(
        mailbox_id=draw(st.sampled_from(["m1", "m2", "m3", "m4"])),
        upn=draw(st.sampled_from(_UPNS)),
        org_id=draw(st.sampled_from(sorted(_ORG_URLS))),
        systemuser_id=draw(st.sampled_from(_USERS)),
    )


@given(
    st.lists(st.tuples(st.booleans(), _mailboxes()), max_size=12),
    _mailboxes(),
)
@settings(max_examples=300, deadline=None)
def test_the_claim_index_agrees_with_a_pass_over_every_mailbox(
    steps: list[tuple[bool, Mailbox]], candidate: Mailbox
) -> None:
    """``check`` looks up an index kept by apply/remove; after any sequence of puts and
    deletes it refuses exactly what comparing with every mailbox refuses."""
    snap = ConfigSnapshot()
    for org_id, url in _ORG_URLS.items():
        snap.apply(Organisation(org_id=org_id, url=url))
    for put, mailbox in steps:
        snap.check(Organisation(org_id="o1", url=_ORG_URLS["o1"]))  # builds the index early
        if put:
            snap.apply(mailbox)
        else:
            snap.remove(f"mailbox:{mailbox.mailbox_id}")
        expected = mailbox_clash(
            candidate, snap.mailboxes.values(), org_identity(snap.organisations)
        )
        refused: str | None = None
        try:
            snap.check(candidate)
        except ConfigError as exc:
            refused = str(exc)
        assert (refused is None) == (expected is None), (refused, expected)
