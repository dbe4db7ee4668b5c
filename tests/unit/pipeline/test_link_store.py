"""The engine's link store knows a CRM row it created before the create's outcome is planned:
change tracking can deliver the row first (``changes.crm`` and ``outcomes`` are read side by
side), and an unknown row would be taken for a new CRM record and created in Outlook again."""

from __future__ import annotations

from collections.abc import Mapping

from connectors.dataverse.ids import crm_row_id
from pipeline.plan import MailboxRules, plan
from pipeline.stages.engine import LinkStore
from schemas.models import ItemChange

NOW = "2030-01-01T00:00:00Z"
USER = "11111111-2222-3333-4444-555555555555"


class Table(dict[bytes, bytes]):
    """A KeyValue in a dict."""


def _change(side: str, item_id: str, projection: Mapping[str, object]) -> ItemChange:
    return ItemChange(
        change_id=f"{side}:{item_id}:1",
        side="outlook" if side == "outlook" else "crm",
        org_id="org",
        kind="contact",
        op="upsert",
        item_id=item_id,
        version="1",
        observed_at=NOW,
        mailbox_id="mbx",
        projection=dict(projection),
        attributes={"tracked": True} if side == "outlook" else {},
    )


def test_a_created_row_read_back_before_its_outcome_is_known_as_ours() -> None:
    rules = MailboxRules("mbx", "org", USER, {})
    store = LinkStore(Table(), Table())
    fields = {"firstname": "Ann", "lastname": "Lee"}
    first = plan(_change("outlook", "AAMk1", fields), None, rules, NOW)
    assert first.link is not None
    (create,) = first.commands
    assert (create.target, create.action) == ("crm", "create")
    store.put(first.link)

    row = crm_row_id("org", create.correlation_id, "contact").lower()
    echo = _change("crm", row, fields)
    link = store.find(echo, "mbx")
    assert link is not None and link.correlation_id == create.correlation_id
    after = plan(echo, link, rules, NOW)
    assert not after.commands  # not created in Outlook a second time

    stranger = _change("crm", crm_row_id("org", "someone-else", "contact").lower(), fields)
    assert store.find(stranger, "mbx") is None
