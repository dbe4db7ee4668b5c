"""Import (and re-import) of a mailbox's Outlook filters from Dataverse into FilterRecords on
the config topic.

Rows come from :func:`connectors.dataverse.filters.import_filters` (each user's
``userqueries`` of querytype 256, read as that user, and the organisation's ``savedqueries``
templates). Every row is held to the FetchXML subset the fan-out evaluates
(:func:`pipeline.rules.fetchxml.parse_fetchxml`) before anything is written; a row that fails
is reported and its existing record, if any, is kept. A record's id is its source
(``userquery:<id>`` / ``savedquery:<id>``), so an import run again updates what changed, and
with ``prune`` drops the records whose row is gone from Dataverse (a filter the user deleted).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from connectors.dataverse.client import DataverseClient
from connectors.dataverse.filters import FilterImportError, import_filters
from pipeline.config_store import ConfigSnapshot, ConfigStore, config_key
from pipeline.rules.fetchxml import parse_fetchxml
from schemas.models import FilterRecord

#: Prefixes of the ids of records that came from Dataverse rows.
IMPORTED_PREFIXES = ("userquery:", "savedquery:")


@dataclass(slots=True)
class ImportReport:
    """What an import found and did."""

    added: list[FilterRecord] = field(default_factory=list)
    updated: list[FilterRecord] = field(default_factory=list)
    unchanged: list[FilterRecord] = field(default_factory=list)
    removed: list[FilterRecord] = field(default_factory=list)
    errors: list[FilterImportError] = field(default_factory=list)


def check_fetchxml(record: FilterRecord) -> None:
    """ValueError unless ``record``'s FetchXML is in the subset the fan-out evaluates."""
    parse_fetchxml(record.fetchxml, table=record.table)


def imported(record: FilterRecord) -> bool:
    """Whether ``record`` came from a Dataverse row (so a re-import owns it)."""
    return record.filter_id.startswith(IMPORTED_PREFIXES)


def plan_import(
    snapshot: ConfigSnapshot,
    rows: Iterable[FilterRecord],
    errors: Iterable[FilterImportError],
    *,
    org_id: str,
    mailboxes: Iterable[str],
    templates: bool,
    prune: bool,
) -> ImportReport:
    """Compare the rows read with the records held (pure): what to add, update and remove."""
    report = ImportReport(errors=list(errors))
    read: dict[str, FilterRecord] = {}
    for record in rows:
        try:
            check_fetchxml(record)
        except ValueError as exc:
            row_id = record.filter_id.partition(":")[2]
            error = (
                FilterImportError("userquery", row_id, record.name, str(exc))
                if record.filter_id.startswith("userquery:")
                else FilterImportError("savedquery", row_id, record.name, str(exc))
            )
            report.errors.append(error)
            continue
        read[record.filter_id] = record
        held = snapshot.filters.get(record.filter_id)
        if held is None:
            report.added.append(record)
        elif held != record:
            report.updated.append(record)
        else:
            report.unchanged.append(record)
    if prune:
        failed = {f"{e.source}:{e.row_id.lower()}" for e in report.errors}
        scope = set(mailboxes)
        for held in snapshot.filters.values():
            if held.org_id != org_id or not imported(held) or held.filter_id in read:
                continue
            if held.filter_id in failed:
                continue  # its row is still there, only unusable now: keep what worked
            owned = held.mailbox_id in scope if held.mailbox_id else templates
            if owned:
                report.removed.append(held)
    return report


async def reimport(
    store: ConfigStore,
    client: DataverseClient,
    *,
    org_id: str,
    mailboxes: Mapping[str, str],
    templates: bool = True,
    prune: bool = True,
    dry_run: bool = False,
) -> ImportReport:
    """Read the filters of ``mailboxes`` (systemuserid → mailbox id) and, with ``templates``,
    the organisation's templates, and write the changes to the config topic."""
    found = await import_filters(client, org_id=org_id, mailboxes=mailboxes, templates=templates)
    report = plan_import(
        store.snapshot,
        found.filters,
        found.errors,
        org_id=org_id,
        mailboxes=mailboxes.values(),
        templates=templates,
        prune=prune,
    )
    if not dry_run:
        for record in (*report.added, *report.updated):
            await store.put(record)
        for record in report.removed:
            await store.delete(config_key(record))
    return report
