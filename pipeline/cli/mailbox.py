"""``dynasync mailbox``: register, approve, enable and inspect synchronizing mailboxes on the
compacted config topic (one mailbox ↔ one CRM user ↔ one organisation). ``mailbox import``
(many at once) lives in ``mailbox_import.py``."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, cast

import click

from pipeline.cli.common import (
    CommandError,
    Lazy,
    LazyGroup,
    UsageError,
    checked,
    emit,
    json_option,
    kafka_options,
    kafka_settings,
    print_table,
    short,
    with_config,
    write_json,
)
from pipeline.cli.params import FOLDER, GUID, GUID_RE, IDENT, REGARDING, UPN

if TYPE_CHECKING:
    from pipeline.config_store import ConfigSnapshot, ConfigStore
    from schemas.models import Mailbox, MailboxStatus
    from schemas.types import AutoTrack

#: schemas.types.AutoTrack's values (a unit test holds them equal; not imported for --help)
AUTO_TRACK = ("all", "replies", "from_crm_records", "from_email_enabled", "none")


@click.group(
    name="mailbox",
    cls=LazyGroup,
    lazy={
        "import": Lazy(
            "pipeline.cli.mailbox_import:import_",
            "register many mailboxes at once from a CSV file",
        ),
        "test": Lazy(
            "pipeline.cli.mailbox_test:test",
            "Test & Enable: Graph, Dataverse with impersonation, the webhook round trip",
        ),
        "plan": Lazy(
            "pipeline.cli.mailbox_plan:plan",
            "dry run of a first sync: what would be created, linked, updated or left alone",
        ),
        "status": Lazy(
            "pipeline.cli.mailbox_status:status",
            "a mailbox's state, last syncs, errors, conflicts, alerts and backlog",
        ),
    },
)
def mailbox() -> None:
    """Synchronizing mailboxes (one mailbox ↔ one CRM user ↔ one organisation)."""


def mailbox_key(text: str) -> str:
    """A mailbox id as Graph resolves it: a UPN or an object id in lower case, else as given."""
    return text.lower() if "@" in text or GUID_RE.match(text) else text


def find_mailbox(snapshot: ConfigSnapshot, ident: str) -> Mailbox:
    """The mailbox with id or UPN ``ident`` (any case); :class:`CommandError` if none."""
    if ident in snapshot.mailboxes:
        return snapshot.mailboxes[ident]
    wanted = ident.casefold()
    for found in snapshot.mailboxes.values():
        if wanted in (found.upn.casefold(), found.mailbox_id.casefold()):
            return found
    raise CommandError(f"mailbox {ident!r} does not exist")


def status_text(m: Mailbox) -> str:
    """The status, with the failing state the runtime keeps on the record."""
    if m.failing_since is not None:
        return f"{m.status}, failing since {m.failing_since}"
    return m.status


def mailbox_lines(m: Mailbox) -> list[str]:
    """``mailbox show``'s lines."""
    lines = [
        f"mailbox     {m.mailbox_id}",
        f"upn         {m.upn}",
        f"org         {m.org_id}",
        f"systemuser  {m.systemuser_id}",
        f"status      {status_text(m)}",
        f"auto-track  {m.auto_track}" + (", auto-create contacts" if m.auto_create_contact else ""),
        f"folders     {len(m.tracked_folders)} tracked",
        *(f"  {f.folder_id} -> {f.regarding_table}:{f.regarding_id}" for f in m.tracked_folders),
    ]
    if m.smtp_address is not None:
        lines.insert(2, f"smtp        {m.smtp_address}")
    if m.last_error is not None:
        lines.append(f"last error  {m.last_error}")
    return lines


@mailbox.command("add")
@click.option("--upn", required=True, type=UPN, help="user principal name")
@click.option("--systemuser", required=True, type=GUID, help="CRM systemuser id (GUID)")
@click.option("--org", "org_id", required=True, type=IDENT, help="organisation id")
@click.option("--mailbox-id", type=IDENT, help="Graph user object id or UPN (default: the UPN)")
@click.option("--smtp", type=UPN, help="primary SMTP address, when it is not the UPN")
@click.option(
    "--auto-track",
    type=click.Choice(AUTO_TRACK),
    default="replies",
    show_default=True,
    help="email auto-tracking",
)
@click.option(
    "--auto-create-contact",
    is_flag=True,
    help="create a CRM contact for the unknown sender of tracked mail",
)
@click.option("--enable", is_flag=True, help="enable it at once (one write, not two)")
@kafka_options
@json_option
def add(
    upn: str,
    systemuser: str,
    org_id: str,
    mailbox_id: str | None,
    smtp: str | None,
    auto_track: str,
    auto_create_contact: bool,
    enable: bool,
    bootstrap: str | None,
    topic_prefix: str | None,
    timeout: float,
    as_json: bool,
) -> int:
    """Register a mailbox."""
    record = new_mailbox(
        upn=upn,
        systemuser=systemuser,
        org_id=org_id,
        mailbox_id=mailbox_id,
        smtp=smtp,
        auto_track=auto_track,
        auto_create_contact=auto_create_contact,
        status="enabled" if enable else "registered",
    )
    checked(record)

    async def act(store: ConfigStore) -> None:
        await store.put(record, create=True)

    with_config(bootstrap, topic_prefix, timeout, act)
    emit(as_json, record, [f"registered mailbox {record.mailbox_id}", *mailbox_lines(record)])
    return 0


def new_mailbox(
    *,
    upn: str,
    systemuser: str,
    org_id: str,
    mailbox_id: str | None = None,
    smtp: str | None = None,
    auto_track: str = "replies",
    auto_create_contact: bool = False,
    status: MailboxStatus = "registered",
) -> Mailbox:
    """A mailbox record from validated arguments (the id defaults to the UPN)."""
    from schemas.models import Mailbox

    key = mailbox_key(mailbox_id or upn)
    if auto_track not in AUTO_TRACK:
        raise ValueError(f"auto-track must be one of {', '.join(AUTO_TRACK)}, not {auto_track!r}")
    return Mailbox(
        mailbox_id=key,
        upn=upn,
        org_id=org_id,
        systemuser_id=systemuser,
        aad_object_id=key if GUID_RE.match(key) else None,
        smtp_address=smtp,
        auto_track=cast("AutoTrack", auto_track),  # checked against AUTO_TRACK above
        auto_create_contact=auto_create_contact,
        status=status,
    )


@mailbox.command("list")
@click.option("--org", "org_id", type=IDENT, help="only this organisation")
@kafka_options
@json_option
def list_(
    org_id: str | None,
    bootstrap: str | None,
    topic_prefix: str | None,
    timeout: float,
    as_json: bool,
) -> int:
    """List the mailboxes."""

    async def act(store: ConfigStore) -> list[Mailbox]:
        boxes = sorted(store.snapshot.mailboxes.values(), key=lambda m: m.mailbox_id)
        return [m for m in boxes if org_id is None or m.org_id == org_id]

    boxes: list[Mailbox] = with_config(bootstrap, topic_prefix, timeout, act)
    if as_json:
        write_json(boxes)
        return 0
    rows = [
        (
            m.mailbox_id,
            m.upn,
            m.org_id,
            m.systemuser_id,
            status_text(m) + (f" ({short(m.last_error)})" if m.last_error else ""),
        )
        for m in boxes
    ]
    print_table(("MAILBOX", "UPN", "ORG", "SYSTEMUSER", "STATUS"), rows, empty="no mailboxes")
    return 0


@mailbox.command("show")
@click.argument("ident", metavar="MAILBOX", type=IDENT)
@kafka_options
@json_option
def show(
    ident: str, bootstrap: str | None, topic_prefix: str | None, timeout: float, as_json: bool
) -> int:
    """Show one mailbox's registration (id or UPN)."""

    async def act(store: ConfigStore) -> Mailbox:
        return find_mailbox(store.snapshot, ident)

    found: Mailbox = with_config(bootstrap, topic_prefix, timeout, act)
    emit(as_json, found, mailbox_lines(found))
    return 0


def _set_status(status: MailboxStatus, name: str, doc: str) -> click.Command:
    @click.argument("ident", metavar="MAILBOX", type=IDENT)
    @kafka_options
    @json_option
    def command(
        ident: str, bootstrap: str | None, topic_prefix: str | None, timeout: float, as_json: bool
    ) -> int:
        async def act(store: ConfigStore) -> Mailbox:
            found = find_mailbox(store.snapshot, ident)
            # an operator's enable or disable ends a failing state; enabling forgets its error
            error = None if status == "enabled" else found.last_error
            record = dataclasses.replace(found, status=status, failing_since=None, last_error=error)
            if record != found:
                await store.put(record)
            return record

        record: Mailbox = with_config(bootstrap, topic_prefix, timeout, act)
        emit(as_json, record, [f"mailbox {record.mailbox_id} is now {status}"])
        return 0

    return click.command(name, help=doc)(command)


mailbox.add_command(
    _set_status("enabled", "enable", "Enable synchronization of a mailbox (ends a failing state).")
)
mailbox.add_command(_set_status("disabled", "disable", "Disable synchronization of a mailbox."))


@mailbox.command("approve")
@click.argument("ident", metavar="MAILBOX", type=IDENT)
@kafka_options
@json_option
def approve(
    ident: str, bootstrap: str | None, topic_prefix: str | None, timeout: float, as_json: bool
) -> int:
    """Approve a registered mailbox (an administrator's consent), ready to enable."""

    async def act(store: ConfigStore) -> tuple[Mailbox, bool]:
        found = find_mailbox(store.snapshot, ident)
        if found.status != "registered":
            return found, False
        record = dataclasses.replace(found, status="approved")
        await store.put(record)
        return record, True

    record, changed = with_config(bootstrap, topic_prefix, timeout, act)
    line = (
        f"mailbox {record.mailbox_id} is now approved"
        if changed
        else f"mailbox {record.mailbox_id} is {record.status}: nothing to approve"
    )
    emit(as_json, record, [line])
    return 0


@mailbox.command("edit")
@click.argument("ident", metavar="MAILBOX", type=IDENT)
@click.option("--upn", type=UPN, help="new user principal name")
@click.option("--smtp", type=UPN, help="new primary SMTP address")
@click.option("--systemuser", type=GUID, help="new CRM systemuser id (GUID)")
@click.option("--org", "org_id", type=IDENT, help="move to this organisation")
@click.option("--auto-track", type=click.Choice(AUTO_TRACK), help="email auto-tracking")
@click.option(
    "--auto-create-contact/--no-auto-create-contact",
    default=None,
    help="create a CRM contact for the unknown sender of tracked mail",
)
@kafka_options
@json_option
def edit(
    ident: str,
    upn: str | None,
    smtp: str | None,
    systemuser: str | None,
    org_id: str | None,
    auto_track: str | None,
    auto_create_contact: bool | None,
    bootstrap: str | None,
    topic_prefix: str | None,
    timeout: float,
    as_json: bool,
) -> int:
    """Change a mailbox's UPN, SMTP address, CRM user, organisation or tracking options
    (its id stays; the one-mailbox-one-user rule is checked)."""
    changes: dict[str, Any] = {
        k: v
        for k, v in (
            ("upn", upn),
            ("smtp_address", smtp),
            ("systemuser_id", systemuser),
            ("org_id", org_id),
            ("auto_track", auto_track),
            ("auto_create_contact", auto_create_contact),
        )
        if v is not None
    }
    if not changes:
        raise UsageError("mailbox edit: nothing to change (see dynasync mailbox edit --help)")

    async def act(store: ConfigStore) -> Mailbox:
        found = find_mailbox(store.snapshot, ident)
        record = dataclasses.replace(found, **changes)
        checked(record)
        if record != found:
            await store.put(record)  # refused if it now clashes with another mailbox
        return record

    record: Mailbox = with_config(bootstrap, topic_prefix, timeout, act)
    emit(as_json, record, [f"changed mailbox {record.mailbox_id}", *mailbox_lines(record)])
    return 0


@mailbox.command("remove")
@click.argument("ident", metavar="MAILBOX", type=IDENT)
@kafka_options
@json_option
def remove(
    ident: str, bootstrap: str | None, topic_prefix: str | None, timeout: float, as_json: bool
) -> int:
    """Remove a mailbox's registration (the workers stop it at their next config reload)."""

    async def act(store: ConfigStore) -> str:
        found = find_mailbox(store.snapshot, ident)
        filters = sorted(
            f.filter_id for f in store.snapshot.filters.values() if f.mailbox_id == found.mailbox_id
        )
        if filters:
            raise CommandError(
                f"mailbox {found.mailbox_id} still has filters: {', '.join(filters)}"
            )
        await store.delete(f"mailbox:{found.mailbox_id}")
        return found.mailbox_id

    removed: str = with_config(bootstrap, topic_prefix, timeout, act)
    emit(as_json, {"mailbox_id": removed, "removed": True}, [f"removed mailbox {removed}"])
    return 0


@mailbox.command("track-folder")
@click.argument("ident", metavar="MAILBOX", type=IDENT)
@click.option("--folder", "folder_id", required=True, type=FOLDER, help="Graph mail folder id")
@click.option("--regarding", required=True, type=REGARDING, help="TABLE:GUID, e.g. account:<guid>")
@kafka_options
@json_option
def track_folder(
    ident: str,
    folder_id: str,
    regarding: tuple[str, str],
    bootstrap: str | None,
    topic_prefix: str | None,
    timeout: float,
    as_json: bool,
) -> int:
    """Track a mail folder regarding a record (at most 25; replaces the folder's record)."""
    from pipeline.rules.tracking_settings import MAX_TRACKED_FOLDERS
    from schemas.models import TrackedFolder

    table, row_id = regarding

    async def act(store: ConfigStore) -> Mailbox:
        found = find_mailbox(store.snapshot, ident)
        kept = [f for f in found.tracked_folders if f.folder_id != folder_id]
        if len(kept) >= MAX_TRACKED_FOLDERS:
            raise CommandError(
                f"mailbox {found.mailbox_id} tracks {len(kept)} folders already; "
                f"at most {MAX_TRACKED_FOLDERS}"
            )
        record = dataclasses.replace(
            found, tracked_folders=[*kept, TrackedFolder(folder_id, table, row_id)]
        )
        checked(record)
        await store.put(record)
        return record

    record: Mailbox = with_config(bootstrap, topic_prefix, timeout, act)
    emit(
        as_json,
        record,
        [f"mailbox {record.mailbox_id}: folder {folder_id} tracked, {table}:{row_id}"],
    )
    return 0


@mailbox.command("untrack-folder")
@click.argument("ident", metavar="MAILBOX", type=IDENT)
@click.option("--folder", "folder_id", required=True, type=FOLDER, help="Graph mail folder id")
@kafka_options
@json_option
def untrack_folder(
    ident: str,
    folder_id: str,
    bootstrap: str | None,
    topic_prefix: str | None,
    timeout: float,
    as_json: bool,
) -> int:
    """Stop tracking a mail folder."""

    async def act(store: ConfigStore) -> Mailbox:
        found = find_mailbox(store.snapshot, ident)
        kept = [f for f in found.tracked_folders if f.folder_id != folder_id]
        if len(kept) == len(found.tracked_folders):
            raise CommandError(f"mailbox {found.mailbox_id} does not track folder {folder_id}")
        record = dataclasses.replace(found, tracked_folders=kept)
        await store.put(record)
        return record

    record: Mailbox = with_config(bootstrap, topic_prefix, timeout, act)
    emit(as_json, record, [f"mailbox {record.mailbox_id}: folder {folder_id} not tracked"])
    return 0


@mailbox.command("resume")
@click.argument("ident", metavar="MAILBOX", type=IDENT)
@kafka_options
@json_option
def resume(
    ident: str, bootstrap: str | None, topic_prefix: str | None, timeout: float, as_json: bool
) -> int:
    """Lift a mass-delete pause: replay what the mailbox parked, in the order it was parked."""
    from pipeline.stages.guard import resume_mailbox

    kafka = kafka_settings(bootstrap, topic_prefix)

    async def act(store: ConfigStore) -> tuple[str, int]:
        found = find_mailbox(store.snapshot, ident)
        return found.mailbox_id, await resume_mailbox(kafka, found.mailbox_id, timeout_s=timeout)

    mailbox_id, replayed = with_config(bootstrap, topic_prefix, timeout, act)
    emit(
        as_json,
        {"mailbox_id": mailbox_id, "replayed": replayed},
        [f"resumed mailbox {mailbox_id}: {replayed} parked change(s) replayed"],
    )
    return 0
