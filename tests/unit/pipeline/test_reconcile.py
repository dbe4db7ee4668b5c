"""The resync matcher (pipeline.reconcile): natural keys, link/create/update/leave, the engine's
half (plan_link), and the link record's edge (schemas.resync)."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.dataverse.ids import crm_row_id
from pipeline.plan import MailboxRules
from pipeline.reconcile import (
    Create,
    Leave,
    Link,
    Update,
    key_text,
    match,
    natural_key,
    plan_link,
)
from pipeline.state import correlation_id_for
from schemas.errors import SchemaError
from schemas.models import ItemChange
from schemas.resync import LinkProposal, decode_proposal, encode_proposal
from schemas.types import Kind, Projection, Side

MBX = "mbx-1"
ORG = "org-1"
NOW = "2024-05-01T10:00:00Z"
SYSUSER = "0f8fad5b-d9cb-469f-a165-70867728950e"


def item(
    side: Side,
    item_id: str,
    projection: Projection,
    *,
    kind: Kind = "contact",
    version: str = "1",
    correlation_id: str | None = None,
    mailbox_id: str = MBX,
) -> ItemChange:
    return ItemChange(
        change_id=f"{side}:{item_id}:{version}",
        side=side,
        org_id=ORG,
        kind=kind,
        op="upsert",
        item_id=item_id,
        version=version,
        observed_at=NOW,
        mailbox_id=mailbox_id,
        table=kind if side == "crm" else None,
        correlation_id=correlation_id,
        projection=projection,
    )


def contact(first: str, last: str, email: str) -> Projection:
    return {"firstname": first, "lastname": last, "emailaddress1": email}


def test_natural_keys_normalise_case_and_space() -> None:
    a = natural_key("contact", contact(" Ada ", "LOVELACE", "Ada@Example.COM "))
    b = natural_key("contact", contact("ada", "lovelace", "ada@example.com"))
    assert a == b == ("contact", "ada@example.com", "ada lovelace")
    assert natural_key("contact", {}) is None
    assert natural_key("appointment", {"globalobjectid": "040000AB"}) == ("appointment", "040000AB")
    assert natural_key("appointment", {"globalobjectid": " "}) is None
    assert natural_key("email", {"messageid": "<a@b>"}) == ("email", "<a@b>")
    due = {"subject": "Call  Bob", "scheduledend": "2024-05-02T00:00:00Z"}
    assert natural_key("task", due) == ("task", "call bob", "2024-05-02")
    assert natural_key("task", {"scheduledend": "2024-05-02T00:00:00Z"}) is None


def test_takeover_links_every_pair_and_creates_nothing() -> None:
    outlook = [item("outlook", f"o{i}", contact("A", f"N{i}", f"a{i}@x.com")) for i in range(5)]
    crm = [
        item("crm", f"r{i}", contact("a", f"n{i}", f"A{i}@X.com"), version="7") for i in range(5)
    ]
    actions = list(match(outlook, crm, mailbox_id=MBX, org_id=ORG))
    links = [a for a in actions if isinstance(a, Link)]
    assert len(links) == 5 and len(actions) == 5
    assert {(a.outlook.item_id, a.crm.item_id) for a in links} == {
        (f"o{i}", f"r{i}") for i in range(5)
    }


def test_stamped_items_are_updates_not_links() -> None:
    row = "3f2504e0-4f89-11d3-9a0c-0305e82c3301"
    crm_first = correlation_id_for(MBX, "crm", row)
    created = "7b1e4b1e-0000-5000-8000-000000000001"
    made = crm_row_id(ORG, created, "contact")
    outlook = [
        item("outlook", "o1", contact("A", "B", "a@b.c"), correlation_id=crm_first),
        item("outlook", "o2", contact("C", "D", "c@d.e"), correlation_id=created),
    ]
    crm = [item("crm", row, contact("A", "B", "a@b.c")), item("crm", made, contact("C", "D", ""))]
    actions = list(match(outlook, crm, mailbox_id=MBX, org_id=ORG))
    assert all(isinstance(a, Update) for a in actions) and len(actions) == 4


def test_unmatched_are_creates_and_foreign_items_are_left() -> None:
    outlook = [
        item("outlook", "o1", contact("A", "B", "a@b.c")),
        item("outlook", "o2", contact("X", "Y", "x@y.z"), mailbox_id="other"),
    ]
    crm = [item("crm", "r1", contact("C", "D", "c@d.e")), item("crm", "r2", {})]
    actions = list(match(outlook, crm, mailbox_id=MBX, org_id=ORG))
    kinds = Counter(type(a).__name__ for a in actions)
    assert kinds == {"Create": 3, "Leave": 1}
    assert {a.change.item_id for a in actions if isinstance(a, Create)} == {"o1", "r1", "r2"}


def _projections() -> st.SearchStrategy[Projection]:
    name = st.sampled_from(["Ada", "ada ", "Bob", "BOB", "Cy"])
    email = st.sampled_from(["a@x.io", "A@X.IO", "b@x.io", ""])
    return st.builds(contact, name, st.sampled_from(["L", "l", "M"]), email)


@settings(max_examples=200, deadline=None)
@given(st.lists(_projections(), max_size=12), st.lists(_projections(), max_size=12))
def test_match_accounts_for_every_item_once(
    outlook_p: list[Projection], crm_p: list[Projection]
) -> None:
    outlook = [item("outlook", f"o{i}", p) for i, p in enumerate(outlook_p)]
    crm = [item("crm", f"r{i}", p) for i, p in enumerate(crm_p)]
    actions = list(match(outlook, crm, mailbox_id=MBX, org_id=ORG))
    seen: Counter[str] = Counter()
    for a in actions:
        if isinstance(a, Link):
            seen.update([a.outlook.item_id, a.crm.item_id])
            assert natural_key("contact", a.outlook.projection) == natural_key(
                "contact", a.crm.projection
            )
        elif isinstance(a, (Create, Update, Leave)):
            seen[a.change.item_id] += 1
    assert seen == Counter([c.item_id for c in outlook + crm])
    # a key held on both sides is never created: pairs take min(outlook, crm) of each key
    keys_o = Counter(natural_key("contact", p) for p in outlook_p)
    keys_c = Counter(natural_key("contact", p) for p in crm_p)
    links = Counter(
        natural_key("contact", a.outlook.projection) for a in actions if isinstance(a, Link)
    )
    for key in keys_o.keys() | keys_c.keys():
        if key is not None:
            assert links[key] == min(keys_o[key], keys_c[key])


def _proposal(o_proj: Projection, c_proj: Projection) -> LinkProposal:
    o = item("outlook", "o1", o_proj, version="ck1")
    c = item("crm", "r1", c_proj, version="11")
    key = natural_key("contact", c_proj)
    assert key is not None
    return LinkProposal(MBX, "resync-1", key_text(key), o, c)


def test_plan_link_without_rules_links_and_writes_nothing() -> None:
    p = _proposal({**contact("A", "B", "a@b.c"), "jobtitle": "x"}, contact("A", "B", "a@b.c"))
    result = plan_link(p, None, None, None, NOW)
    assert result.link is not None and not result.commands
    assert result.link.outlook_id == "o1" and result.link.crm_id == "r1"
    assert result.link.correlation_id == correlation_id_for(MBX, "crm", "r1")
    assert result.link.base == contact("A", "B", "a@b.c")
    assert "ck1" in result.link.outlook.recent and "11" in result.link.crm.recent


def test_plan_link_with_rules_converges_a_difference_by_policy() -> None:
    rules = MailboxRules(MBX, ORG, SYSUSER)
    p = _proposal(
        {**contact("A", "B", "a@b.c"), "jobtitle": "old"},
        {**contact("A", "B", "a@b.c"), "jobtitle": "new"},
    )
    result = plan_link(p, None, None, rules, NOW)
    assert result.link is not None
    (command,) = result.commands
    assert command.target == "outlook" and command.action == "update"
    assert command.fields == {"jobtitle": "new"} and command.target_id == "o1"


def test_plan_link_equal_pair_with_rules_writes_nothing() -> None:
    rules = MailboxRules(MBX, ORG, SYSUSER)
    p = _proposal(contact("A", "B", "a@b.c"), contact("A", "B", "a@b.c"))
    result = plan_link(p, None, None, rules, NOW)
    assert result.link is not None and not result.commands


def test_plan_link_leaves_linked_items_alone() -> None:
    p = _proposal(contact("A", "B", "a@b.c"), contact("A", "B", "a@b.c"))
    first = plan_link(p, None, None, None, NOW).link
    assert first is not None
    assert plan_link(p, first, first, None, NOW).dropped == "pair already linked"
    assert plan_link(p, None, first, None, NOW).dropped == "pair already linked"
    other = plan_link(
        _proposal(contact("Z", "Z", "z@z.z"), {"lastname": "Z"}), None, None, None, NOW
    )
    assert other.link is not None
    moved = LinkProposal(MBX, "r", "k", p.outlook, item("crm", "r9", {"lastname": "Q"}))
    assert plan_link(moved, first, None, None, NOW).dropped == "an item is linked to another item"


def test_proposal_round_trip() -> None:
    p = _proposal(contact("A", "B", "a@b.c"), contact("A", "B", "a@b.c"))
    assert decode_proposal(encode_proposal(p)) == p


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"not json",
        b"[]",
        b'{"mailbox_id": "m"}',
        b'{"mailbox_id": "", "resync_id": "r", "key": "k", "outlook": {}, "crm": {}}',
        b'{"mailbox_id": "m", "resync_id": "r", "key": "k", "outlook": {"x": 1}, "crm": {}}',
        b'{"mailbox_id": "m", "resync_id": "r", "key": "k", "extra": 1}',
    ],
)
def test_garbage_link_records_are_refused(raw: bytes) -> None:
    with pytest.raises(SchemaError):
        decode_proposal(raw)


def test_link_record_items_must_agree() -> None:
    p = _proposal(contact("A", "B", "a@b.c"), contact("A", "B", "a@b.c"))
    swapped = LinkProposal(MBX, "r", "k", p.crm, p.outlook)
    with pytest.raises(SchemaError, match="wrong side"):
        decode_proposal(encode_proposal(swapped))
    foreign = LinkProposal("other", "r", "k", p.outlook, p.crm)
    with pytest.raises(SchemaError, match="another mailbox"):
        decode_proposal(encode_proposal(foreign))


def test_plan_link_key_fields_differing_in_case_only_are_agreed() -> None:
    rules = MailboxRules(MBX, ORG, SYSUSER)
    p = _proposal(contact(" pat ", "B", "pat@b.c"), contact("Pat", "B", "PAT@B.C"))
    result = plan_link(p, None, None, rules, NOW)
    assert result.link is not None and not result.commands
    assert result.link.base["emailaddress1"] == "PAT@B.C"
