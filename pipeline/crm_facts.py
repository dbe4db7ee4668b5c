"""Gathering the CRM facts an Outlook email's planning needs, before the (pure) planner runs.

Only a message seen for the first time asks: is it a reply to a CRM email, does it carry a
tracking token, who owns its addresses. The answers come from the organisation's
:class:`CrmDirectory`; while the CRM is unreachable the engine waits (the mailbox's partition
holds, so its order holds) rather than deciding without them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace

from pipeline.crm_directory import CrmDirectory
from pipeline.plan import MailboxRules, email_facts
from pipeline.stages.retry import Sleep, transient
from pipeline.state import LinkState
from schemas.models import ItemChange

log = logging.getLogger(__name__)

#: The directory of an organisation (None: none, plan without CRM facts).
Directories = Callable[[str], Awaitable[CrmDirectory | None]]


def needs_crm_facts(change: ItemChange, link: LinkState | None) -> bool:
    """Whether planning ``change`` may ask the CRM about the message."""
    return (
        link is None
        and change.side == "outlook"
        and change.kind == "email"
        and change.op == "upsert"
    )


async def with_crm_facts(
    change: ItemChange,
    link: LinkState | None,
    rules: MailboxRules,
    directories: Directories,
    *,
    cap_s: float = 30.0,
    sleep: Sleep = asyncio.sleep,
) -> MailboxRules:
    """``rules`` whose tracking lookup answers from the CRM for ``change`` (when needed)."""
    if not needs_crm_facts(change, link):
        return rules
    facts = email_facts(change)
    if facts is None:
        return rules
    delay = 0.2
    while True:
        try:
            directory = await directories(rules.org_id)
            if directory is None:
                return rules
            return replace(rules, lookup=await directory.lookup_for(facts))
        except Exception as exc:
            if not transient(exc):
                raise
            log.warning("CRM of %s unreachable for email facts (%s); waiting", rules.org_id, exc)
            await sleep(delay)
            delay = min(delay * 2, cap_s)
