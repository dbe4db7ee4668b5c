"""``dynasync filters import|list|show|set|remove``: synchronization filters (FetchXML over one
CRM table, OR-combined per table) as ``filter`` records on the config topic.

``import`` reads a FetchXML file (``--file``), or each mailbox's Outlook filters and the
organisation's templates from Dataverse (:mod:`pipeline.filter_import`). FetchXML is checked
against the subset the fan-out evaluates before anything connects or is written.
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, Any

import click

from pipeline.cli.common import (
    CommandError,
    UsageError,
    checked,
    emit,
    json_option,
    kafka_options,
    kafka_settings,
    load_settings,
    print_table,
    run_kafka,
    short,
    with_config,
)
from pipeline.cli.params import IDENT, NAME, Checked

if TYPE_CHECKING:
    from pipeline.config_store import ConfigStore
    from pipeline.filter_import import ImportReport
    from pipeline.settings import KafkaSettings
    from schemas.models import FilterRecord
    from schemas.types import CrmTable

#: Largest FetchXML file read (the schema's limit).
MAX_FILE_BYTES = 100_000
_FILTER_ID = re.compile(r"^[A-Za-z0-9._@:\-]{1,512}$")


def filter_id_text(text: str) -> str:
    """A filter id: 1-512 of letters, digits and ``. _ @ - :`` (imported ones are
    ``userquery:<guid>`` / ``savedquery:<guid>``)."""
    if not _FILTER_ID.match(text):
        raise ValueError(
            f"expected 1-512 characters of letters, digits and . _ @ - :, got {text!r}"
        )
    return text


FILTER_ID = Checked("id", filter_id_text)


@click.group(name="filters")
def filters() -> None:
    """Synchronization filters (FetchXML): import, list, show, set, remove."""


def read_fetchxml(path: str) -> tuple[str, CrmTable]:
    """The FetchXML text of ``path`` and its table; :class:`UsageError` saying what is wrong."""
    from connectors.dataverse.filters import fetchxml_table
    from pipeline.rules.fetchxml import parse_fetchxml

    if os.path.exists(path) and not os.path.isfile(path):
        raise UsageError(f"{path} is not a regular file")
    try:
        with open(path, "rb") as file:
            raw = file.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise UsageError(f"{path} is larger than {MAX_FILE_BYTES} bytes")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise UsageError(f"{path} is not UTF-8 text") from None
    try:
        table = fetchxml_table(text)
        parse_fetchxml(text, table=table)
    except ValueError as exc:
        raise UsageError(f"{path}: {exc}") from None
    return text, table


def _summary(f: FilterRecord) -> dict[str, Any]:
    return {
        "filter_id": f.filter_id,
        "org_id": f.org_id,
        "mailbox_id": f.mailbox_id,
        "table": f.table,
        "name": f.name,
        "source": f.source,
        "enabled": f.enabled,
    }


def _find(store: ConfigStore, filter_id: str) -> FilterRecord:
    found = store.snapshot.filters.get(filter_id)
    if found is None:
        raise CommandError(f"filter {filter_id!r} does not exist")
    return found


@filters.command("import")
@click.option("--org", "org_id", required=True, type=IDENT, help="organisation id")
@click.option(
    "--mailbox",
    "mailboxes",
    multiple=True,
    type=IDENT,
    help="only this mailbox (repeatable; default: every mailbox of the organisation)",
)
@click.option("--file", "path", help="a FetchXML file instead of Dataverse (needs --id)")
@click.option("--id", "filter_id", type=FILTER_ID, help="id of the filter read from --file")
@click.option("--name", type=NAME, help="name of the filter read from --file")
@click.option("--no-templates", is_flag=True, help="Dataverse: skip the organisation's templates")
@click.option(
    "--keep-removed",
    is_flag=True,
    help="Dataverse: keep records whose filter is gone from Dataverse (default: remove them)",
)
@click.option("--dry-run", is_flag=True, help="check and show, write nothing")
@kafka_options
@json_option
def import_(
    org_id: str,
    mailboxes: tuple[str, ...],
    path: str | None,
    filter_id: str | None,
    name: str | None,
    no_templates: bool,
    keep_removed: bool,
    dry_run: bool,
    bootstrap: str | None,
    topic_prefix: str | None,
    timeout: float,
    as_json: bool,
) -> int:
    """Import filters from a FetchXML file, or each mailbox's from Dataverse (its Outlook
    filters, userquery querytype 256, and the templates, savedquery querytype 131072).

    Run again, it updates what changed in Dataverse (records keep the row's id)."""
    if path is not None:
        return _import_file(
            org_id,
            mailboxes,
            path,
            filter_id,
            name,
            dry_run,
            bootstrap,
            topic_prefix,
            timeout,
            as_json,
        )
    if filter_id is not None or name is not None:
        raise UsageError("--id and --name go with --file")
    kafka = kafka_settings(bootstrap, topic_prefix)
    settings = load_settings()

    async def body() -> ImportReport:
        from pipeline.config_store import ConfigStore
        from pipeline.filter_import import reimport
        from pipeline.sinks import api_root, dataverse_token

        async with ConfigStore(kafka, timeout_s=timeout) as store:
            org = store.snapshot.organisations.get(org_id)
            if org is None:
                raise CommandError(f"organisation {org_id!r} does not exist")
            boxes = {
                m.mailbox_id: m for m in store.snapshot.mailboxes.values() if m.org_id == org_id
            }
            for wanted in mailboxes:
                if wanted not in boxes:
                    raise CommandError(f"mailbox {wanted!r} is not in organisation {org_id!r}")
            chosen = [boxes[m] for m in mailboxes] if mailboxes else list(boxes.values())
            users = {m.systemuser_id: m.mailbox_id for m in chosen}
            root = api_root(org.url)
            from connectors.dataverse.client import DataverseClient

            async with DataverseClient(root, dataverse_token(settings.dataverse, root)) as client:
                return await reimport(
                    store,
                    client,
                    org_id=org_id,
                    mailboxes=users,
                    templates=not no_templates,
                    prune=not keep_removed,
                    dry_run=dry_run,
                )

    report = _run_import(kafka, body)
    data = {
        "dry_run": dry_run,
        "added": [_summary(f) for f in report.added],
        "updated": [_summary(f) for f in report.updated],
        "unchanged": [_summary(f) for f in report.unchanged],
        "removed": [_summary(f) for f in report.removed],
        "errors": [
            {"source": e.source, "row_id": e.row_id, "name": e.name, "reason": e.reason}
            for e in report.errors
        ],
    }
    verb = "would " if dry_run else ""
    lines = [
        *(
            f"{verb}add {f.filter_id} ({f.table}, {f.mailbox_id or 'template'}): {f.name}"
            for f in report.added
        ),
        *(f"{verb}update {f.filter_id}: {f.name}" for f in report.updated),
        *(f"{verb}remove {f.filter_id}: {f.name}" for f in report.removed),
        *(f"refused {e.source} {e.row_id} ({e.name or '-'}): {e.reason}" for e in report.errors),
        f"{len(report.added)} added, {len(report.updated)} updated, "
        f"{len(report.unchanged)} unchanged, {len(report.removed)} removed, "
        f"{len(report.errors)} refused" + (" (dry run)" if dry_run else ""),
    ]
    emit(as_json, data, lines)
    return 0


def _run_import(kafka: KafkaSettings, body: Any) -> ImportReport:
    from connectors.errors import ConnectorError

    try:
        result: ImportReport = run_kafka(kafka, body)
    except ConnectorError as exc:
        raise CommandError(f"Dataverse: {exc}") from None
    return result


def _import_file(
    org_id: str,
    mailboxes: tuple[str, ...],
    path: str,
    filter_id: str | None,
    name: str | None,
    dry_run: bool,
    bootstrap: str | None,
    topic_prefix: str | None,
    timeout: float,
    as_json: bool,
) -> int:
    from schemas.models import FilterRecord

    if filter_id is None:
        raise UsageError("--file needs --id, the filter's id")
    if filter_id.startswith(("userquery:", "savedquery:")):
        raise UsageError("ids starting userquery: or savedquery: are kept for Dataverse imports")
    if len(mailboxes) > 1:
        raise UsageError("--file takes at most one --mailbox (none: a template of the org)")
    text, table = read_fetchxml(path)
    record = FilterRecord(
        filter_id=filter_id,
        org_id=org_id,
        table=table,
        name=name or os.path.basename(path),
        fetchxml=text,
        source="custom",
        mailbox_id=mailboxes[0] if mailboxes else None,
    )
    checked(record)

    async def act(store: ConfigStore) -> bool:
        existed = filter_id in store.snapshot.filters
        if dry_run:
            store.snapshot.check(record)
        else:
            await store.put(record)
        return existed

    existed = with_config(bootstrap, topic_prefix, timeout, act)
    verb = ("would " if dry_run else "") + ("replace" if existed else "add")
    emit(
        as_json,
        {**_summary(record), "replaced": existed, "dry_run": dry_run},
        [f"{verb} filter {record.filter_id} ({record.table}): {record.name}"],
    )
    return 0


@filters.command("list")
@click.option("--org", "org_id", type=IDENT, help="only this organisation")
@click.option("--mailbox", "mailbox_id", type=IDENT, help="only this mailbox's (and templates)")
@kafka_options
@json_option
def list_(
    org_id: str | None,
    mailbox_id: str | None,
    bootstrap: str | None,
    topic_prefix: str | None,
    timeout: float,
    as_json: bool,
) -> int:
    """List the filters."""

    async def act(store: ConfigStore) -> list[FilterRecord]:
        return [
            f
            for f in sorted(store.snapshot.filters.values(), key=lambda f: f.filter_id)
            if (org_id is None or f.org_id == org_id)
            and (mailbox_id is None or f.mailbox_id in (mailbox_id, None))
        ]

    found = with_config(bootstrap, topic_prefix, timeout, act)
    if as_json:
        emit(True, [_summary(f) for f in found], [])
    else:
        rows = [
            (
                f.filter_id,
                f.org_id,
                f.mailbox_id or "(template)",
                f.table,
                f.source,
                "yes" if f.enabled else "no",
                short(f.name, 60),
            )
            for f in found
        ]
        cols = ("FILTER", "ORG", "MAILBOX", "TABLE", "SOURCE", "ENABLED", "NAME")
        print_table(cols, rows, empty="no filters")
    return 0


@filters.command("show")
@click.argument("filter_id", metavar="ID", type=FILTER_ID)
@kafka_options
@json_option
def show(
    filter_id: str, bootstrap: str | None, topic_prefix: str | None, timeout: float, as_json: bool
) -> int:
    """Show one filter with its FetchXML."""

    async def act(store: ConfigStore) -> FilterRecord:
        return _find(store, filter_id)

    found = with_config(bootstrap, topic_prefix, timeout, act)
    data = {**_summary(found), "fetchxml": found.fetchxml}
    lines = [f"{k}: {v}" for k, v in _summary(found).items()] + ["fetchxml:", found.fetchxml]
    emit(as_json, data, lines)
    return 0


@filters.command("set")
@click.argument("filter_id", metavar="ID", type=FILTER_ID)
@click.option("--file", "path", help="new FetchXML from this file")
@click.option("--name", type=NAME, help="new name")
@click.option("--enable/--disable", "enabled", default=None, help="use the filter or not")
@kafka_options
@json_option
def set_(
    filter_id: str,
    path: str | None,
    name: str | None,
    enabled: bool | None,
    bootstrap: str | None,
    topic_prefix: str | None,
    timeout: float,
    as_json: bool,
) -> int:
    """Change one filter (a Dataverse-imported one is overwritten by its next import)."""
    import dataclasses

    if path is None and name is None and enabled is None:
        raise UsageError("nothing to set: give --file, --name, --enable or --disable")
    text_table = read_fetchxml(path) if path is not None else None

    async def act(store: ConfigStore) -> FilterRecord:
        current = _find(store, filter_id)
        values: dict[str, Any] = {}
        if text_table is not None:
            values["fetchxml"], values["table"] = text_table
        if name is not None:
            values["name"] = name
        if enabled is not None:
            values["enabled"] = enabled
        record = dataclasses.replace(current, **values)
        checked(record)
        await store.put(record)
        return record

    record = with_config(bootstrap, topic_prefix, timeout, act)
    emit(as_json, _summary(record), [f"set filter {record.filter_id}: {record.name}"])
    return 0


@filters.command("remove")
@click.argument("filter_id", metavar="ID", type=FILTER_ID)
@kafka_options
@json_option
def remove(
    filter_id: str, bootstrap: str | None, topic_prefix: str | None, timeout: float, as_json: bool
) -> int:
    """Remove one filter (a Dataverse-imported one comes back with its next import unless it
    is removed in Dataverse too)."""

    async def act(store: ConfigStore) -> FilterRecord:
        found = _find(store, filter_id)
        await store.delete(f"filter:{filter_id}")
        return found

    found = with_config(bootstrap, topic_prefix, timeout, act)
    emit(as_json, {**_summary(found), "removed": True}, [f"removed filter {filter_id}"])
    return 0
