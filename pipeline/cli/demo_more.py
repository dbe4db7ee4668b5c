"""The demo's steps after the sync steps (:data:`pipeline.cli.demo.EXTRA_STEPS`), on the first
demo mailbox: an Outlook email put in the tracking category becomes a CRM email activity; the
demo contact's job title edited on both sides at once is resolved by the organisation's
conflict policy; ``resync --full`` of the mailbox changes nothing; and a takeover: a new
mailbox whose contacts exist on both sides already is resynced before ``mailbox enable`` and
ends with one copy of each contact a side. Each step's seconds run from the action (a request
to an emulator, or the resync) to its effect seen through the other service's API.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from pipeline.cli.demo import EXTRA_STEPS, Narrator, NotSeen, until
from pipeline.cli.demo_world import DEMO_ORG, DemoError, DemoSides, DemoUser
from pipeline.rules.tracking_settings import TRACKED_CATEGORY

if TYPE_CHECKING:
    from pipeline.cli.demo import DemoOptions
    from pipeline.config_store import ConfigStore
    from pipeline.settings import Settings

#: The customer who mails the first demo mailbox (a Graph user of its own).
CUSTOMER = "dana@fabrikam.test"
#: Contacts a takeover mailbox starts with on both sides.
TAKEOVER_CONTACTS = 3
#: Seconds the counts must stay put before "nothing changed" / "no duplicates" is said.
SETTLE_S = 3.0


async def more_steps(
    options: DemoOptions,
    sides: DemoSides,
    user: DemoUser,
    pair: tuple[str, str] | None,
    tag: str,
    narrator: Narrator,
) -> None:
    """Narrate the EXTRA_STEPS (each seen or NOT SEEN with the reason)."""
    from aiokafka.errors import KafkaError

    from pipeline.config_store import ConfigError, ConfigStore
    from pipeline.resync import ResyncError

    narrator.say(f"then on {user.upn}: a tracked email, a conflict, a resync; then a takeover")
    await _step(narrator, user, EXTRA_STEPS[0], _tracked_email(sides, user, tag, options))
    if pair is None:
        narrator.step(user, EXTRA_STEPS[1], None, "skipped: the demo contact never synced")
    else:
        await _step(narrator, user, EXTRA_STEPS[1], _conflict(sides, user, pair, tag, options))
    settings = _settings(options)
    try:
        async with ConfigStore(options.kafka, timeout_s=20) as store:
            await _step(narrator, user, EXTRA_STEPS[2], _resync(sides, user, settings, store))
            taker = DemoUser(f"Take{tag}", systemuser_id=str(uuid.uuid4()))
            await _step(
                narrator,
                taker,
                EXTRA_STEPS[3],
                _takeover(sides, taker, tag, settings, store, options, narrator),
            )
    except (KafkaError, ConfigError, OSError, ResyncError) as exc:
        done = {r.step for r in narrator.results}
        for step in EXTRA_STEPS[2:]:
            if step not in done:
                narrator.step(user, step, None, f"{type(exc).__name__}: {exc}")


async def _step(narrator: Narrator, user: DemoUser, step: str, action: Any) -> None:
    """Run one step's coroutine (seconds, detail) and narrate it."""
    try:
        took, detail = await action
    except (NotSeen, DemoError) as exc:
        narrator.step(user, step, None, str(exc))
    else:
        narrator.step(user, step, took, detail)


def _settings(options: DemoOptions) -> Settings:
    from pydantic import SecretStr

    from pipeline.settings import DataverseSettings, GraphSettings, Settings

    token = SecretStr(options.token)
    return Settings(
        app_id=options.app_id,
        kafka=options.kafka,
        graph=GraphSettings(base_url=f"{options.graph_url}/v1.0", static_token=token),
        dataverse=DataverseSettings(
            base_url=f"{options.dataverse_url}/api/data/v9.2", static_token=token
        ),
    )


async def _tracked_email(
    sides: DemoSides, user: DemoUser, tag: str, options: DemoOptions
) -> tuple[float, str]:
    """Dana mails the user (not tracked: Dana is no CRM record and the user's auto-track
    option is ``replies``); the user puts it in the tracking category."""
    customer = await sides.graph_user(CUSTOMER, "Dana Customer")
    subject = f"Order {tag} for {user.first_name}"
    message = {
        "subject": subject,
        "body": {"contentType": "text", "content": "Please confirm the order."},
        "toRecipients": [{"emailAddress": {"address": user.upn}}],
    }
    await sides.graph_as(customer, "POST", "sendMail", {"message": message})

    async def in_inbox() -> dict[str, Any] | None:
        got = await sides.outlook(
            user, "GET", "mailFolders/inbox/messages?$top=1000&$select=subject,internetMessageId"
        )
        hits = [m for m in got.get("value", []) if m.get("subject") == subject]
        return dict(hits[0]) if hits else None

    mail, _ = await until(in_inbox, 30, f"the mail {subject!r} in {user.upn}'s Inbox")
    message_id = str(mail["internetMessageId"])
    started = time.monotonic()
    await sides.outlook(user, "PATCH", f"messages/{mail['id']}", {"categories": [TRACKED_CATEGORY]})

    async def in_crm() -> list[dict[str, Any]] | None:
        rows = await sides.crm(user, "GET", "emails?$select=activityid,messageid,subject")
        hits = [r for r in rows.get("value", []) if r.get("messageid") == message_id]
        return hits or None

    await until(in_crm, options.timeout_s, f"an email activity for {subject!r}")
    took = time.monotonic() - started
    await asyncio.sleep(SETTLE_S)  # one activity per message, not one per pass
    rows = await in_crm() or []
    if len(rows) != 1:
        raise DemoError(f"{len(rows)} CRM email activities for {subject!r}, expected 1")
    return took, f"{subject!r} in category {TRACKED_CATEGORY!r}: 1 email activity"


async def _conflict(
    sides: DemoSides,
    user: DemoUser,
    pair: tuple[str, str],
    tag: str,
    options: DemoOptions,
) -> tuple[float, str]:
    """The demo contact's job title edited in the CRM and in Outlook at the same moment."""
    from pipeline.cli.demo_watch import find_conflict

    row_id, item_id = pair
    crm_value, outlook_value = f"Head of Sales {tag}", f"Sales Lead {tag}"
    since_ms = int(time.time() * 1000) - 1000
    started = time.monotonic()
    await asyncio.gather(
        sides.crm(user, "PATCH", f"contacts({row_id})", {"jobtitle": crm_value}),
        sides.outlook(user, "PATCH", f"contacts/{item_id}", {"jobTitle": outlook_value}),
    )

    async def agreed() -> str | None:
        row = await sides.crm(user, "GET", f"contacts({row_id})?$select=jobtitle")
        item = await sides.outlook(user, "GET", f"contacts/{item_id}")
        both = (row.get("jobtitle"), item.get("jobTitle"))
        if both[0] == both[1] and both[0] in (crm_value, outlook_value):
            return str(both[0])
        return None

    value, _ = await until(agreed, options.timeout_s, "one job title on both sides")
    took = time.monotonic() - started
    found = await find_conflict(options.kafka, user.mailbox_id, "jobtitle", since_ms, 30)
    if found is None:
        raise DemoError(f"both sides hold {value!r} but no jobtitle conflict was recorded")
    return took, (
        f"jobtitle CRM {crm_value!r} vs Outlook {outlook_value!r}: policy {found.policy}, "
        f"{found.winner} wins; both sides {value!r}"
    )


async def _counts(sides: DemoSides, user: DemoUser) -> dict[str, int]:
    """How many items each side holds: the mailbox's contacts, events and messages; the
    organisation's contacts, tasks, appointments and email activities."""
    counts: dict[str, int] = {}
    for path in ("contacts", "events", "messages"):
        got = await sides.outlook(user, "GET", f"{path}?$top=1000&$select=id")
        counts[f"outlook {path}"] = len(got.get("value", []))
    for table, key in (
        ("contacts", "contactid"),
        ("tasks", "activityid"),
        ("appointments", "activityid"),
        ("emails", "activityid"),
    ):
        got = await sides.crm(user, "GET", f"{table}?$select={key}")
        counts[f"crm {table}"] = len(got.get("value", []))
    return counts


async def _settled(probe: Any, timeout_s: float, what: str) -> Any:
    """``probe()``'s value once two reads SETTLE_S apart agree."""
    start = time.monotonic()
    last = await probe()
    while True:
        await asyncio.sleep(SETTLE_S)
        now = await probe()
        if now == last:
            return now
        if time.monotonic() - start > timeout_s:
            raise NotSeen(f"{what}: still moving after {timeout_s:g} s")
        last = now


async def _resync(
    sides: DemoSides, user: DemoUser, settings: Settings, store: ConfigStore
) -> tuple[float, str]:
    """``dynasync resync --full`` of the (in sync) demo mailbox, in-process."""
    from pipeline.resync import full_resync

    before = await _settled(lambda: _counts(sides, user), 60, "the item counts")
    mailbox = store.snapshot.mailboxes[user.mailbox_id]
    report = await full_resync(settings, store.snapshot, mailbox, wait_s=120)
    after = await _settled(lambda: _counts(sides, user), 60, "the item counts")
    changed = {k: (before[k], after[k]) for k in before if before[k] != after[k]}
    if changed:
        diff = ", ".join(f"{k} {a} -> {b}" for k, (a, b) in changed.items())
        raise DemoError(f"the resync changed counts: {diff}")
    return report.seconds, (
        f"{report.outlook_items} Outlook / {report.crm_items} CRM items listed, "
        f"{report.links} linked, {report.sent} sent and handled; counts unchanged "
        f"({sum(after.values())} items)"
    )


async def _takeover(
    sides: DemoSides,
    taker: DemoUser,
    tag: str,
    settings: Settings,
    store: ConfigStore,
    options: DemoOptions,
    narrator: Narrator,
) -> tuple[float, str]:
    """A new mailbox whose contacts are on both sides already: resync, then enable."""
    from pipeline.cli.demo_watch import wait_for_readers
    from schemas.models import Mailbox

    for old in list(store.snapshot.mailboxes.values()):
        if old.org_id == DEMO_ORG and old.upn.startswith("take") and old.upn != taker.upn:
            await store.delete(f"mailbox:{old.mailbox_id}")
            narrator.say(f"takeover: the last run's takeover mailbox {old.upn} removed")
    taker = await sides.seed(taker)
    names = [f"Taken{tag}{n}" for n in range(TAKEOVER_CONTACTS)]
    for name in names:
        address = f"pat.{name.lower()}@takeover.test"
        await sides.crm(
            taker,
            "POST",
            "contacts",
            {"firstname": "Pat", "lastname": name, "emailaddress1": address},
        )
        await sides.outlook(
            taker,
            "POST",
            "contacts",
            {
                "givenName": "Pat",
                "surname": name,
                "emailAddresses": [{"address": address, "name": f"Pat {name}"}],
            },
        )
    mailbox = Mailbox(
        mailbox_id=taker.mailbox_id,
        upn=taker.upn,
        org_id=DEMO_ORG,
        systemuser_id=taker.systemuser_id,
        status="approved",
    )
    await store.put(mailbox)
    await store.load()
    narrator.say(
        f"takeover: {taker.upn} added (not enabled) with {TAKEOVER_CONTACTS} contacts "
        "on both sides; resync --full, then mailbox enable"
    )
    from pipeline.resync import full_resync

    started = time.monotonic()
    report = await full_resync(settings, store.snapshot, mailbox, wait_s=120)
    await store.put(replace(mailbox, status="enabled"))
    picked = await wait_for_readers(options.kafka, [taker.mailbox_id], options.timeout_s)
    if taker.mailbox_id not in picked:
        raise NotSeen(f"the pipeline did not start syncing {taker.upn}")
    rows = (await sides.crm(taker, "GET", "contacts?$select=contactid,lastname"))["value"]
    edited = next(r for r in rows if r.get("lastname") == names[0])
    title = f"Buyer {tag}"
    await sides.crm(taker, "PATCH", f"contacts({edited['contactid']})", {"jobtitle": title})

    async def crossed() -> bool:
        items = (await sides.outlook(taker, "GET", "contacts?$top=1000"))["value"]
        return any(i.get("surname") == names[0] and i.get("jobTitle") == title for i in items)

    await until(crossed, options.timeout_s, "a CRM edit on the taken-over Outlook contact")
    took = time.monotonic() - started

    async def copies() -> tuple[Counter[str], Counter[str]]:
        items = (await sides.outlook(taker, "GET", "contacts?$top=1000&$select=surname"))["value"]
        rows = (await sides.crm(taker, "GET", "contacts?$select=lastname"))["value"]
        return (
            Counter(str(i.get("surname")) for i in items if i.get("surname") in names),
            Counter(str(r.get("lastname")) for r in rows if r.get("lastname") in names),
        )

    outlook, crm = await _settled(copies, 60, "the takeover's contacts")
    if any(outlook[n] != 1 or crm[n] != 1 for n in names):
        raise DemoError(f"copies per contact: Outlook {dict(outlook)}, CRM {dict(crm)}")
    return took, (
        f"resync linked {report.links} pairs, enabled, a CRM edit reached its linked copy; "
        f"{sum(outlook.values())} contacts in Outlook, {sum(crm.values())} in the CRM, "
        "one copy each"
    )
