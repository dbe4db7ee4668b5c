"""``dynasync demo``: show mailboxes syncing against the running emulators and pipeline.

Seeds the demo users in both emulators, registers the demo organisation and mailboxes on the
config topic (idempotent), then for every mailbox at once: a CRM contact appears in Outlook,
an Outlook edit of it reaches the CRM row, a CRM task appears in To Do and a CRM appointment
in the calendar. One line per step as it is seen, with its latency, then a summary table.
Exit 0 if every step was seen within ``--timeout``, 1 otherwise, 2 on bad arguments. A step
that starts in the CRM waits for the next read of its table: at once while the pipeline's CRM
readers find changes, up to a minute (their idle ceiling) on a second run after a quiet spell.

A running ``dynasync run`` picks up newly registered mailboxes at its next config reload
(``--config-refresh``, 5 s by default); the demo waits for that (the mailbox's first Outlook
cursor on the ``cursors`` topic) before it starts the clock, since a CRM change made earlier
is not fanned out to a mailbox the pipeline does not know yet.
"""

from __future__ import annotations

import asyncio
import math
import os
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TextIO
from urllib.parse import urlsplit

import click

from pipeline.cli.common import (
    CommandError,
    UsageError,
    bootstrap_option,
    check_kafka,
    json_option,
    load_settings,
    read_secret_file,
    refuse_argv_secret,
    write_json,
)
from pipeline.cli.params import Checked

if TYPE_CHECKING:
    from pipeline.cli.demo_world import DemoSides, DemoUser
    from pipeline.settings import KafkaSettings

#: How many demo users there are (``demo_world.MAX_USERS``; a unit test holds them equal).
MAX_USERS = 3
#: The environment variable with the emulators' bearer token (default ``demo``).
TOKEN_ENV = "DYNASYNC_DEMO_TOKEN"

STEPS = (
    "CRM contact -> Outlook contacts",
    "Outlook edit -> CRM contact",
    "CRM task -> To Do",
    "CRM appointment -> calendar",
)
#: Steps shown once, on the first mailbox (and a takeover mailbox of its own), after STEPS.
EXTRA_STEPS = (
    "tracked email -> CRM activity",
    "conflict -> organisation's policy",
    "resync --full -> nothing changed",
    "takeover -> no duplicates",
)
ALL_STEPS = STEPS + EXTRA_STEPS


@dataclass(frozen=True, slots=True)
class StepResult:
    """One step of one mailbox: seconds until seen, or None if not seen in time."""

    upn: str
    step: str
    seconds: float | None
    detail: str = ""


class NotSeen(Exception):
    """A step whose effect did not show within the timeout."""


def emulator_url(text: str) -> str:
    """An emulator's base URL (http(s)://host[:port], an API suffix like /v1.0 is dropped)."""
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise ValueError(f"expected an http(s) URL, got {text!r}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"expected an http(s) URL like http://127.0.0.1:8081, got {text!r}")
    if any(c.isspace() for c in text) or len(text) > 2048 or parts.query or parts.fragment:
        raise ValueError(f"expected a plain http(s) URL, got {text!r}")
    path = parts.path.rstrip("/")
    for suffix in ("/v1.0", "/api/data/v9.2"):
        path = path.removesuffix(suffix)
    netloc = parts.hostname if port is None else f"{parts.hostname}:{port}"
    if ":" in (parts.hostname or ""):
        netloc = f"[{parts.hostname}]" + ("" if port is None else f":{port}")
    return f"{parts.scheme}://{netloc}{path}"


def timeout_seconds(text: str) -> float:
    """Seconds within (0, 3600]."""
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"expected seconds, got {text!r}") from None
    if not math.isfinite(value) or not 0 < value <= 3600:
        raise ValueError(f"expected seconds within (0, 3600], got {text!r}")
    return value


def user_count(text: str) -> int:
    """1 to MAX_USERS."""
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"expected a whole number, got {text!r}") from None
    if not 1 <= value <= MAX_USERS:
        raise ValueError(f"expected 1 to {MAX_USERS} users, got {value}")
    return value


def token_text(text: str) -> str:
    """A bearer token: 1-4096 visible characters."""
    if not 1 <= len(text) <= 4096 or not text.isprintable() or " " in text:
        raise ValueError("a token needs 1-4096 visible characters, no spaces")
    return text


async def until(
    probe: Callable[[], Awaitable[Any]], timeout_s: float, what: str, every: float = 0.1
) -> tuple[Any, float]:
    start = time.monotonic()
    while True:
        found = await probe()
        if found:
            return found, time.monotonic() - start
        if time.monotonic() - start > timeout_s:
            raise NotSeen(f"{what}: not seen within {timeout_s:g} s")
        await asyncio.sleep(every)


class Narrator:
    """Prints one line per seen (or missed) step and keeps the results."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.results: list[StepResult] = []
        self.started = time.monotonic()

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def step(self, user: DemoUser, step: str, seconds: float | None, detail: str) -> None:
        self.results.append(StepResult(user.upn, step, seconds, detail))
        clock = f"{time.monotonic() - self.started:6.1f}s"
        if seconds is None:
            self.say(f"[{clock}] {user.upn:<24} {step:<34} NOT SEEN  {detail}")
        else:
            self.say(f"[{clock}] {user.upn:<24} {step:<34} {seconds:5.2f} s  {detail}")


async def _mailbox_story(
    sides: DemoSides, user: DemoUser, tag: str, timeout_s: float, narrator: Narrator
) -> tuple[str, str] | None:
    """The four STEPS in ``user``'s mailbox; the demo contact's (CRM id, Outlook id) once
    both sides hold it."""
    surname = f"Demo{tag}{user.first_name}"
    row = await sides.crm(
        user,
        "POST",
        "contacts",
        {"firstname": "Dana", "lastname": surname, "emailaddress1": f"dana.{tag}@fabrikam.test"},
    )
    row_id = row["contactid"]

    async def in_outlook() -> dict[str, Any] | None:
        found = await sides.outlook(user, "GET", "contacts?$top=1000")
        hits = [c for c in found.get("value", []) if c.get("surname") == surname]
        return dict(hits[0]) if hits else None

    contact: dict[str, Any] | None = None
    try:
        contact, took = await until(in_outlook, timeout_s, f"contact {surname} in Outlook")
        narrator.step(user, STEPS[0], took, f"Dana {surname}")
    except NotSeen as exc:
        narrator.step(user, STEPS[0], None, str(exc))

    if contact is None:
        narrator.step(user, STEPS[1], None, "skipped: the contact never reached Outlook")
    else:
        new_first = f"Danielle{tag[:3]}"
        await sides.outlook(user, "PATCH", f"contacts/{contact['id']}", {"givenName": new_first})

        async def in_crm() -> bool:
            got = await sides.crm(user, "GET", f"contacts({row_id})?$select=firstname")
            return got.get("firstname") == new_first

        try:
            _, took = await until(in_crm, timeout_s, f"firstname {new_first} in the CRM row")
            narrator.step(user, STEPS[1], took, f"firstname Dana -> {new_first}")
        except NotSeen as exc:
            narrator.step(user, STEPS[1], None, str(exc))

    subject = f"Call Dana back ({tag} {user.first_name})"
    await sides.crm(user, "POST", "tasks", {"subject": subject})

    async def in_todo() -> bool:
        lists = await sides.outlook(user, "GET", "todo/lists")
        for lst in lists.get("value", []):
            tasks = await sides.outlook(user, "GET", f"todo/lists/{lst['id']}/tasks")
            if any(t.get("title") == subject for t in tasks.get("value", [])):
                return True
        return False

    try:
        _, took = await until(in_todo, timeout_s, f"task {subject!r} in To Do")
        narrator.step(user, STEPS[2], took, subject)
    except NotSeen as exc:
        narrator.step(user, STEPS[2], None, str(exc))

    title = f"Review with Dana ({tag} {user.first_name})"
    day = (datetime.now(UTC) + timedelta(days=7)).strftime("%Y-%m-%d")
    await sides.crm(
        user,
        "POST",
        "appointments",
        {
            "subject": title,
            "scheduledstart": f"{day}T10:00:00Z",
            "scheduledend": f"{day}T11:00:00Z",
            "appointment_activity_parties": [
                {
                    "partyid_systemuser@odata.bind": f"/systemusers({user.systemuser_id})",
                    "participationtypemask": 7,
                }
            ],
        },
    )

    async def in_calendar() -> bool:
        events = await sides.outlook(user, "GET", "events?$top=1000")
        return any(e.get("subject") == title for e in events.get("value", []))

    try:
        _, took = await until(in_calendar, timeout_s, f"event {title!r} in the calendar")
        narrator.step(user, STEPS[3], took, f"{title} on {day}")
    except NotSeen as exc:
        narrator.step(user, STEPS[3], None, str(exc))
    return None if contact is None else (str(row_id), str(contact["id"]))


@dataclass(frozen=True, slots=True)
class DemoOptions:
    """What ``dynasync demo`` runs against."""

    kafka: KafkaSettings
    graph_url: str
    dataverse_url: str
    users: int = 2
    timeout_s: float = 120.0
    token: str = "demo"
    #: the worker's ``app_id`` (its engine's consumer group, which a resync waits for)
    app_id: str = "dynasync"
    #: where the worker serves its status page, if known
    status_page: str | None = None


async def run_demo(options: DemoOptions, out: TextIO) -> list[StepResult]:
    """Seed, register and narrate; every step's result (DemoError if set-up fails)."""
    import httpx
    from aiokafka.errors import KafkaError

    from pipeline.cli.demo_watch import wait_for_readers
    from pipeline.cli.demo_world import DemoError, DemoSides, demo_users, register
    from pipeline.config_store import ConfigError, ConfigStore

    narrator = Narrator(out)
    users = demo_users(options.users)
    async with httpx.AsyncClient(timeout=15) as http:
        sides = DemoSides(http, options.graph_url, options.dataverse_url, options.token)
        await sides.check_reachable()
        users = [await sides.seed(user) for user in users]
        narrator.say(
            f"seeded {len(users)} user(s) in Graph ({options.graph_url}) "
            f"and Dataverse ({options.dataverse_url})"
        )
        try:
            async with ConfigStore(options.kafka, timeout_s=20) as store:
                for line in await register(store, options.dataverse_url, users):
                    narrator.say(line)
        except (KafkaError, ConfigError, OSError) as exc:
            raise DemoError(
                f"cannot use the config topic on Kafka {options.kafka.bootstrap}: {exc}"
            ) from None
        narrator.say("waiting for the pipeline to pick the mailboxes up (its config reload)")
        try:
            picked = await wait_for_readers(
                options.kafka, [u.mailbox_id for u in users], options.timeout_s
            )
        except (KafkaError, OSError) as exc:
            raise DemoError(f"cannot read the cursors topic: {exc}") from None
        for user in users:
            if user.mailbox_id not in picked:
                raise DemoError(
                    f"the pipeline did not start syncing {user.upn} within "
                    f"{options.timeout_s:g} s (is `dynasync run` running on this Kafka "
                    "with the same topic prefix? see its log)"
                )
            narrator.say(
                f"{user.upn}: the pipeline reads its mailbox "
                f"(Graph user {user.mailbox_id}, seen after {picked[user.mailbox_id]:.1f} s)"
            )
        tag = uuid.uuid4().hex[:4]
        narrator.say(
            f"watching {len(users)} mailbox(es), {len(STEPS)} steps each "
            f"(timeout {options.timeout_s:g} s per step)"
        )
        pairs = await asyncio.gather(
            *(_mailbox_story(sides, u, tag, options.timeout_s, narrator) for u in users)
        )
        from pipeline.cli.demo_more import more_steps

        await more_steps(options, sides, users[0], pairs[0], tag, narrator)
        if options.status_page:
            await _show_status_page(http, options.status_page, users, narrator)
    return narrator.results


async def _show_status_page(http: Any, url: str, users: list[DemoUser], narrator: Narrator) -> None:
    import httpx

    try:
        page = await http.get(url, timeout=10)
    except httpx.HTTPError as exc:
        narrator.say(f"status page: {url} did not answer ({exc!r})")
        return
    shown = [u.upn for u in users if u.mailbox_id in page.text]
    narrator.say(
        f"status page: {url} (HTTP {page.status_code}; lists {len(shown)} of the "
        f"{len(users)} demo mailbox(es)); it stays up with the stack until `make down`"
    )


def summary(results: list[StepResult]) -> list[str]:
    """The summary table: mailbox, step, seconds."""
    lines = [f"{'mailbox':<24}  {'step':<34}  seconds", "-" * 70]
    for r in sorted(
        results,
        key=lambda r: (ALL_STEPS.index(r.step) >= len(STEPS), r.upn, ALL_STEPS.index(r.step)),
    ):
        took = "NOT SEEN" if r.seconds is None else f"{r.seconds:.2f}"
        lines.append(f"{r.upn:<24}  {r.step:<34}  {took}")
    return lines


@click.command(name="demo")
@bootstrap_option
@click.option(
    "--graph-url",
    type=Checked("url", emulator_url),
    default="http://127.0.0.1:8081",
    show_default=True,
    help="Graph emulator base URL",
)
@click.option(
    "--dataverse-url",
    type=Checked("url", emulator_url),
    default="http://127.0.0.1:8082",
    show_default=True,
    help="Dataverse emulator base URL, also the demo organisation's URL",
)
@click.option(
    "--users", type=Checked("n", user_count), default=2, help=f"demo mailboxes, 1-{MAX_USERS} (2)"
)
@click.option(
    "--timeout",
    type=Checked("seconds", timeout_seconds),
    default=120.0,
    help="seconds to wait per step (120: a CRM table idle for a while is read once a minute)",
)
@click.option(
    "--token-file",
    metavar="PATH",
    help=f"file (mode 0600) with the emulators' bearer token; or set {TOKEN_ENV} (default demo)",
)
@click.option(
    "--status-page",
    type=Checked("url", emulator_url),
    default=None,
    help="the worker's status page URL: checked and printed at the end (make demo passes it)",
)
@click.option("--token", hidden=True)  # refused: a token in argv shows in ps
@json_option
def demo(
    bootstrap: str | None,
    graph_url: str,
    dataverse_url: str,
    users: int,
    timeout: float,
    token_file: str | None,
    token: str | None,
    status_page: str | None,
    as_json: bool,
) -> int:
    """Show mailboxes syncing against the running emulators and pipeline (exit 1 if a step
    is not seen; --json: the narration on stderr, the results as JSON)."""
    from pipeline.cli.demo_world import DemoError

    refuse_argv_secret("--token", token, TOKEN_ENV)
    bearer = (
        read_secret_file(token_file, "token")
        if token_file
        else _token_from_env(os.environ.get(TOKEN_ENV, "demo"))
    )
    settings = load_settings({"kafka": {"bootstrap": bootstrap}})
    options = DemoOptions(
        kafka=settings.kafka,
        graph_url=graph_url,
        dataverse_url=dataverse_url,
        users=users,
        timeout_s=timeout,
        token=bearer,
        app_id=settings.app_id,
        status_page=None if status_page is None else f"{status_page}/",
    )
    narration = sys.stderr if as_json else sys.stdout

    async def checked() -> list[StepResult]:
        await check_kafka(options.kafka)
        return await run_demo(options, narration)

    try:
        results = asyncio.run(checked())
    except DemoError as exc:
        raise CommandError(f"demo: {exc}") from None
    missed = [r for r in results if r.seconds is None]
    expected = options.users * len(STEPS) + len(EXTRA_STEPS)
    ok = not missed and len(results) == expected
    if as_json:
        write_json({"ok": ok, "expected": expected, "steps": [asdict(r) for r in results]})
    else:
        click.echo()
        for line in summary(results):
            click.echo(line)
    if not ok:
        click.echo(f"\n{len(missed)} of {expected} step(s) not seen:", err=True)
        for r in missed:
            click.echo(f"  {r.upn}: {r.step}: {r.detail}", err=True)
        return 1
    if not as_json:
        click.echo(f"\nall {expected} steps seen: the mailboxes are syncing.")
    return 0


def _token_from_env(text: str) -> str:
    try:
        return token_text(text)
    except ValueError as exc:
        raise UsageError(f"{TOKEN_ENV}: {exc}") from None
