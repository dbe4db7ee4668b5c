"""The default system filter templates, as FetchXML, and their instantiation per user.

Templates say ``eq-userid``, so one text serves every mailbox (the evaluator takes the user
from :class:`~pipeline.rules.fetchxml.EvalContext`). :func:`instantiate` writes the user's id
into the text instead, for a filter stored against one mailbox.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Final

from pipeline.rules.fetchxml import parse_fetchxml
from pipeline.rules.filterset import FilterSet
from schemas.types import CrmTable

_GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


@dataclass(frozen=True, slots=True)
class Template:
    """A system filter template over one CRM table."""

    name: str
    table: CrmTable
    fetchxml: str


def _my_open(table: CrmTable) -> str:
    return (
        f'<fetch><entity name="{table}">'
        '<attribute name="subject"/>'
        '<filter type="and">'
        '<condition attribute="ownerid" operator="eq-userid"/>'
        '<condition attribute="statecode" operator="eq" value="0"/>'
        "</filter></entity></fetch>"
    )


def _my_meetings(table: CrmTable) -> str:
    # participationtypemask 5 = required attendee, 7 = organizer
    return (
        f'<fetch><entity name="{table}">'
        '<attribute name="subject"/>'
        '<link-entity name="activityparty" from="activityid" to="activityid" '
        'link-type="inner" alias="party">'
        '<filter type="and">'
        '<condition attribute="partyid" operator="eq-userid"/>'
        '<condition attribute="participationtypemask" operator="in">'
        "<value>5</value><value>7</value></condition>"
        "</filter></link-entity></entity></fetch>"
    )


MY_ACTIVE_CONTACTS: Final = Template(
    "My active contacts",
    "contact",
    '<fetch><entity name="contact">'
    '<attribute name="fullname"/>'
    '<filter type="and">'
    '<condition attribute="ownerid" operator="eq-userid"/>'
    '<condition attribute="statecode" operator="eq" value="0"/>'
    "</filter></entity></fetch>",
)

#: Every system template: contacts, meetings (single and series), open tasks of each table.
SYSTEM_TEMPLATES: Final[tuple[Template, ...]] = (
    MY_ACTIVE_CONTACTS,
    Template("My appointments", "appointment", _my_meetings("appointment")),
    Template(
        "My recurring appointments",
        "recurringappointmentmaster",
        _my_meetings("recurringappointmentmaster"),
    ),
    Template("My open tasks", "task", _my_open("task")),
    Template("My open phone calls", "phonecall", _my_open("phonecall")),
    Template("My open letters", "letter", _my_open("letter")),
    Template("My open faxes", "fax", _my_open("fax")),
)


def _check_user(user_id: str) -> str:
    if not isinstance(user_id, str):
        raise ValueError(f"user id must be a GUID string, got {type(user_id).__name__}")
    normal = user_id.strip().strip("{}").lower()
    if not _GUID.match(normal):
        raise ValueError(f"user id is not a GUID: {user_id[:80]!r}")
    return normal


def instantiate(template: Template, user_id: str) -> str:
    """The template's FetchXML with ``eq-userid``/``ne-userid`` replaced by the user's id."""
    guid = _check_user(user_id)
    root = ET.fromstring(template.fetchxml)
    for cond in root.iter("condition"):
        op = cond.get("operator")
        if op in ("eq-userid", "ne-userid"):
            cond.set("operator", "eq" if op == "eq-userid" else "ne")
            cond.set("value", guid)
    return ET.tostring(root, encoding="unicode")


def default_filters(user_id: str | None = None) -> FilterSet:
    """The system templates as a filter set: portable (``eq-userid``), or bound to a user."""
    texts = (
        (t.table, t.fetchxml if user_id is None else instantiate(t, user_id))
        for t in SYSTEM_TEMPLATES
    )
    return FilterSet.from_queries(parse_fetchxml(text, table=table) for table, text in texts)
