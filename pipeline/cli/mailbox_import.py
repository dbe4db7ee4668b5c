"""``dynasync mailbox import``: register many mailboxes in one process, from a CSV file.

Every row is checked first (its values, then against the config topic and the other rows: one
mailbox ↔ one CRM user ↔ one organisation, through an index of their identities, so a file of
thousands is checked in one pass); only if all pass are the records written, together (the
producer batches them). A bad row is named with its line and nothing is written.

Columns (a header row; names in any case): ``upn`` and ``systemuser`` (required), ``org``
(unless ``--org``), ``mailbox_id``, ``smtp``, ``auto_track``, ``auto_create_contact``
(true/false).
"""

from __future__ import annotations

import asyncio
import csv
import io
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import click

from pipeline.cli.common import (
    UsageError,
    console,
    emit,
    json_option,
    kafka_options,
    kafka_settings,
    run_kafka,
)
from pipeline.cli.mailbox import AUTO_TRACK, mailbox, new_mailbox
from pipeline.cli.params import IDENT, guid, ident, upn

if TYPE_CHECKING:
    from pipeline.config_store import ConfigSnapshot, ConfigStore
    from schemas.models import Mailbox

#: Largest file read, and most rows.
MAX_BYTES = 32 * 1024 * 1024
MAX_ROWS = 100_000
#: Most row errors printed (all are counted).
SHOWN_ERRORS = 20

COLUMNS = ("upn", "systemuser", "org", "mailbox_id", "smtp", "auto_track", "auto_create_contact")
_TRUE = {"true", "yes", "y", "1"}
_FALSE = {"false", "no", "n", "0", ""}


@dataclass(frozen=True, slots=True)
class Row:
    """One CSV row as a mailbox record, with the line it came from."""

    line: int
    record: Mailbox


class ImportRefused(UsageError):
    """Rows that cannot be imported: each named with its line (exit 2, nothing written)."""

    def __init__(self, source: str, errors: list[str]) -> None:
        shown = errors[:SHOWN_ERRORS]
        more = len(errors) - len(shown)
        tail = f" ({more} more not shown)" if more else ""
        super().__init__(
            f"{len(errors)} bad row(s) in {source}{tail}; nothing was written",
            details=[f"dynasync mailbox import: {source} {line}" for line in shown],
        )


class RowErrors(ValueError):
    """What :func:`plan` found wrong, one line per row."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__(f"{len(errors)} bad row(s)")
        self.errors = errors


def read_csv(path: str, *, org: str | None, enable: bool) -> list[Row]:
    """The rows of the CSV file at ``path`` as mailbox records; :class:`UsageError` (the file)
    or :class:`ImportRefused` (its rows) if any is bad."""
    if os.path.exists(path) and not os.path.isfile(path):
        raise UsageError(f"{path} is not a regular file")
    try:
        with open(path, "rb") as file:
            raw = file.read(MAX_BYTES + 1)
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    if len(raw) > MAX_BYTES:
        raise UsageError(f"{path} is larger than {MAX_BYTES // (1024 * 1024)} MB")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path} is not UTF-8 text (byte {exc.start})") from None
    if "\x00" in text:
        raise UsageError(f"{path} is not a CSV file (it holds NUL bytes)")
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise UsageError(f"{path} line 1: {exc}") from None
    if not header or not any(h.strip() for h in header):
        raise UsageError(f"{path} has no header row (columns: {', '.join(COLUMNS)})")
    names = [h.strip().lower() for h in header]
    unknown = [n for n in names if n not in COLUMNS]
    if unknown:
        raise UsageError(
            f"{path}: unknown column(s) {', '.join(map(repr, unknown))} "
            f"(known: {', '.join(COLUMNS)})"
        )
    if len(set(names)) != len(names):
        raise UsageError(f"{path}: a column appears twice in the header")
    needed = ["upn", "systemuser"] + ([] if org else ["org"])
    missing = [n for n in needed if n not in names]
    if missing:
        hint = " (or give --org)" if "org" in missing else ""
        raise UsageError(f"{path}: missing column(s) {', '.join(missing)}{hint}")
    rows: list[Row] = []
    errors: list[str] = []
    try:
        for values in reader:
            line = reader.line_num
            if not any(v.strip() for v in values):
                continue  # blank line
            if len(rows) + len(errors) >= MAX_ROWS:
                raise UsageError(f"{path} has more than {MAX_ROWS} rows")
            if len(values) != len(names):
                errors.append(f"line {line}: {len(values)} fields, the header has {len(names)}")
                continue
            try:
                rows.append(Row(line, _record(dict(zip(names, values, strict=True)), org, enable)))
            except ValueError as exc:
                errors.append(f"line {line}: {exc}")
    except csv.Error as exc:
        errors.append(f"line {reader.line_num}: {exc}")
    if errors:
        raise ImportRefused(path, errors)
    if not rows:
        raise UsageError(f"{path} has no rows")
    return rows


def _record(cells: dict[str, str], default_org: str | None, enable: bool) -> Mailbox:
    def cell(name: str) -> str | None:
        value = cells.get(name, "").strip()
        return value or None

    def checked(name: str, check: Any, value: str | None) -> Any:
        if value is None:
            return None
        try:
            return check(value)
        except ValueError as exc:
            raise ValueError(f"{name}: {exc}") from None

    user = checked("upn", upn, cell("upn"))
    systemuser = checked("systemuser", guid, cell("systemuser"))
    org = checked("org", ident, cell("org") or default_org)
    if user is None or systemuser is None or org is None:
        empty = [n for n, v in (("upn", user), ("systemuser", systemuser), ("org", org)) if not v]
        raise ValueError(f"{', '.join(empty)}: empty")
    track = cell("auto_track") or "replies"
    if track not in AUTO_TRACK:
        raise ValueError(f"auto_track: expected one of {', '.join(AUTO_TRACK)}, got {track!r}")
    create = (cell("auto_create_contact") or "").lower()
    if create not in _TRUE | _FALSE:
        raise ValueError(f"auto_create_contact: expected true or false, got {create!r}")
    return new_mailbox(
        upn=user,
        systemuser=systemuser,
        org_id=org,
        mailbox_id=checked("mailbox_id", ident, cell("mailbox_id")),
        smtp=checked("smtp", upn, cell("smtp")),
        auto_track=track,
        auto_create_contact=create in _TRUE,
        status="enabled" if enable else "registered",
    )


@dataclass(slots=True)
class Plan:
    """What an import writes, and what it leaves as it is."""

    write: list[Row]
    unchanged: list[Row]


def plan(snapshot: ConfigSnapshot, rows: list[Row], *, skip_existing: bool) -> Plan:
    """Check ``rows`` against ``snapshot`` and each other in one pass (an index of every
    mailbox's identities); :class:`RowErrors` naming every row that may not be written."""
    from pipeline.config_store import mailbox_clash, mailbox_identities, org_identity

    org_key = org_identity(snapshot.organisations)

    def keys(m: Mailbox) -> list[str]:
        crm = guid(m.systemuser_id) if _is_guid(m.systemuser_id) else m.systemuser_id.lower()
        return [*mailbox_identities(m), f"crm:{org_key(m.org_id)}:{crm}"]

    claimed: dict[str, Mailbox] = {}
    for existing in snapshot.mailboxes.values():
        for key in keys(existing):
            claimed.setdefault(key, existing)
    errors: list[str] = []
    out = Plan([], [])
    seen: dict[str, int] = {}
    for row in rows:
        record = row.record
        where = f"line {row.line}: mailbox {record.mailbox_id}"
        if record.mailbox_id in seen:
            errors.append(f"{where}: also on line {seen[record.mailbox_id]}")
            continue
        seen[record.mailbox_id] = row.line
        if record.org_id not in snapshot.organisations:
            errors.append(f"{where}: organisation {record.org_id!r} does not exist")
            continue
        before = snapshot.mailboxes.get(record.mailbox_id)
        if before is not None:
            if skip_existing and _same_registration(before, record):
                out.unchanged.append(row)
            else:
                other = " with another UPN, organisation or CRM user" if skip_existing else ""
                errors.append(f"{where} is registered already{other}")
            continue
        mine = keys(record)
        holders = [claimed[k] for k in mine if k in claimed]
        clash = mailbox_clash(record, holders, org_key) if holders else None
        if clash:
            errors.append(f"{where}: {clash}")
            continue
        claimed.update(dict.fromkeys(mine, record))
        out.write.append(row)
    if errors:
        raise RowErrors(errors)
    return out


def _is_guid(text: str) -> bool:
    try:
        guid(text)
    except ValueError:
        return False
    return True


def _same_registration(a: Mailbox, b: Mailbox) -> bool:
    return (a.upn.casefold(), a.org_id, a.systemuser_id.lower()) == (
        b.upn.casefold(),
        b.org_id,
        b.systemuser_id.lower(),
    )


async def write_all(store: ConfigStore, records: list[Mailbox], on_done: Any = None) -> None:
    """Write ``records`` (already checked) at once: the producer batches them."""
    from pipeline.config_store import config_key
    from schemas.codec import dumps

    async def one(record: Mailbox) -> None:
        await store.put_raw(config_key(record), dumps(record))
        if on_done is not None:
            on_done()

    await asyncio.gather(*(one(r) for r in records))


@mailbox.command("import")
@click.option(
    "--csv",
    "csv_path",
    required=True,
    metavar="FILE",
    help=f"CSV with a header row: {', '.join(COLUMNS)} (upn, systemuser and org required)",
)
@click.option("--org", type=IDENT, help="organisation of the rows without an org column")
@click.option("--enable", is_flag=True, help="register them enabled (one write per mailbox)")
@click.option(
    "--skip-existing",
    is_flag=True,
    help="leave rows registered already (same UPN, org and CRM user) as they are",
)
@click.option("--dry-run", is_flag=True, help="check everything, write nothing")
@kafka_options
@json_option
def import_(
    csv_path: str,
    org: str | None,
    enable: bool,
    skip_existing: bool,
    dry_run: bool,
    bootstrap: str | None,
    topic_prefix: str | None,
    timeout: float,
    as_json: bool,
) -> int:
    """Register many mailboxes at once from a CSV file (all rows or none)."""
    from pipeline.config_store import ConfigStore

    kafka = kafka_settings(bootstrap, topic_prefix)
    rows = read_csv(csv_path, org=org, enable=enable)

    async def body() -> Plan:
        async with ConfigStore(kafka, timeout_s=timeout) as store:
            try:
                checked = plan(store.snapshot, rows, skip_existing=skip_existing)
            except RowErrors as exc:
                raise ImportRefused(csv_path, exc.errors) from None
            if not dry_run and checked.write:
                await _write(store, [r.record for r in checked.write], show=not as_json)
            return checked

    result = run_kafka(kafka, body, timeout_s=timeout)
    added = [r.record.mailbox_id for r in result.write]
    data = {
        "dry_run": dry_run,
        "enabled": enable,
        "added": added,
        "unchanged": [r.record.mailbox_id for r in result.unchanged],
    }
    verb = "would register" if dry_run else "registered"
    state = " enabled" if enable else ""
    lines = [f"{verb} {len(added)} mailbox(es){state}, {len(result.unchanged)} unchanged"]
    emit(as_json, data, lines)
    return 0


async def _write(store: ConfigStore, records: list[Mailbox], *, show: bool) -> None:
    if not show or not console(stderr=True).is_terminal:
        await write_all(store, records)
        return
    from rich.progress import Progress

    with Progress(console=console(stderr=True), transient=True) as progress:
        task = progress.add_task("registering", total=len(records))
        await write_all(store, records, lambda: progress.advance(task))
