"""``mailbox plan``'s pure parts: which filter admits a CRM row (a filter's id, or the default
template's name), and what the first sync would do with each listed item."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from pipeline.fanout_rules import MailboxFilters, admitted_by
from pipeline.mailbox_plan import count, plan_items
from pipeline.plan import MailboxRules
from schemas.models import ItemChange
from schemas.types import Side
from tests.unit.fanout.test_fanout_rules import ALICE, NOW, A, change, flt

STAMP = "2026-05-01T09:00:00Z"


def item(side: Side, item_id: str, last: str, **attributes: Any) -> ItemChange:
    return ItemChange(
        change_id=f"{side}:{item_id}:1",
        side=side,
        org_id="org",
        kind="contact",
        op="upsert",
        item_id=item_id,
        version="1",
        observed_at=STAMP,
        mailbox_id=A.mailbox_id,
        table="contact" if side == "crm" else None,
        projection={"firstname": "Pat", "lastname": last, "emailaddress1": f"{last}@x.test"},
        attributes=attributes,
    )


def test_the_default_template_or_the_filter_that_holds_it_is_named() -> None:
    row = change(ownerid=ALICE, statecode=0)
    assert admitted_by(row, MailboxFilters(A), NOW) == ("My active contacts",)
    assert (
        admitted_by(
            replace(row, attributes={"ownerid": ALICE, "statecode": 1}), MailboxFilters(A), NOW
        )
        == ()
    )
    vip = flt(
        "vip",
        "contact",
        '<filter><condition attribute="lastname" operator="eq" value="Lee"/></filter>',
        A.mailbox_id,
    )
    other = flt(
        "none",
        "contact",
        '<filter><condition attribute="lastname" operator="eq" value="Kim"/></filter>',
        A.mailbox_id,
    )
    record = replace(row, attributes={"ownerid": ALICE, "lastname": "Lee"})
    assert admitted_by(record, MailboxFilters(A, (other, vip)), NOW) == ("vip",)


def test_each_item_gets_an_action() -> None:
    tracked = item("outlook", "o-1", "tracked", tracked=True)
    untracked = item("outlook", "o-2", "untracked")
    both_o = item("outlook", "o-3", "both")
    both_c = item("crm", "c-3", "both")
    crm_only = item("crm", "c-1", "crmonly")
    inactive = item("crm", "c-2", "inactive")
    rules = MailboxRules.from_mailbox(A)
    got = plan_items(
        [tracked, untracked, both_o],
        [(both_c, "My active contacts"), (crm_only, "vip")],
        [inactive],
        A,
        rules,
        STAMP,
    )
    by_id = {i.item_id: (i.action, i.filter, i.target) for i in got}
    assert by_id == {
        "o-1": ("create", None, "crm"),
        "o-2": ("leave", None, None),
        "o-3": ("link", None, "c-3"),
        "c-3": ("link", "My active contacts", "o-3"),
        "c-1": ("create", "vip", "outlook"),
        "c-2": ("leave", None, None),
    }
    assert count(got) == {
        "outlook": {"create": 1, "link": 1, "update": 0, "leave": 1},
        "crm": {"create": 1, "link": 1, "update": 0, "leave": 1},
    }
