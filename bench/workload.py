"""The changes the benchmark feeds: tracked Outlook contact upserts, each a first sight."""

from __future__ import annotations

from schemas.codec import dumps
from schemas.models import ItemChange

ORG = "org-bench"
USER = "11111111-2222-3333-4444-555555555555"


def mailbox_ids(count: int) -> list[str]:
    """The benchmark's mailbox ids."""
    return [f"mbx-{i:05d}" for i in range(count)]


def change(run: str, index: int, mailbox_id: str, observed_at: str) -> ItemChange:
    """A new tracked Outlook contact in ``mailbox_id``: the engine answers with a CRM create."""
    item_id = f"{run}-{index:08d}"
    return ItemChange(
        change_id=f"outlook:{item_id}:1",
        side="outlook",
        org_id=ORG,
        kind="contact",
        op="upsert",
        item_id=item_id,
        version="1",
        observed_at=observed_at,
        mailbox_id=mailbox_id,
        projection={
            "firstname": f"First{index}",
            "lastname": f"Last{index}",
            "emailaddress1": f"p{index}@example.com",
            "telephone1": "+44 20 7946 0000",
            "jobtitle": "Engineer",
            "companyname": "Contoso",
        },
        attributes={"tracked": True},
    )


def encoded(run: str, index: int, mailboxes: list[str], observed_at: str) -> tuple[bytes, bytes]:
    """(key, value) of change ``index``, spread round-robin over ``mailboxes``."""
    mailbox_id = mailboxes[index % len(mailboxes)]
    return mailbox_id.encode(), dumps(change(run, index, mailbox_id, observed_at))
