"""``dynasync org add|list|edit|remove``: Dataverse organisations on the config topic."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import click

from pipeline.cli.common import (
    CommandError,
    UsageError,
    checked,
    emit,
    json_option,
    kafka_options,
    print_table,
    with_config,
    write_json,
)
from pipeline.cli.params import GUID, IDENT, NAME, ORG_URL, TOKEN_PREFIX

if TYPE_CHECKING:
    from pipeline.config_store import ConfigStore
    from schemas.models import Organisation

DEFAULT_TOKEN_PREFIX = "CRM:"  # schemas.token's default, without importing it for --help


@click.group(name="org")
def org() -> None:
    """Dataverse organisations (one per CRM environment)."""


def _find(store: ConfigStore, org_id: str) -> Organisation:
    found = store.snapshot.organisations.get(org_id)
    if found is None:
        raise CommandError(f"organisation {org_id!r} does not exist")
    return found


def _line(o: Organisation) -> str:
    return f"organisation {o.org_id} ({o.url})"


@org.command("add")
@click.option("--org", "org_id", required=True, type=IDENT, help="organisation id")
@click.option("--url", required=True, type=ORG_URL, help="https://<org>.crm.dynamics.com")
@click.option("--tenant", type=GUID, help="Entra tenant id (GUID)")
@click.option("--name", type=NAME, help="display name")
@click.option(
    "--token-prefix",
    type=TOKEN_PREFIX,
    default=DEFAULT_TOKEN_PREFIX,
    show_default=True,
    help="tracking token prefix of the organisation",
)
@kafka_options
@json_option
def add(
    org_id: str,
    url: str,
    tenant: str | None,
    name: str | None,
    token_prefix: str,
    bootstrap: str | None,
    topic_prefix: str | None,
    timeout: float,
    as_json: bool,
) -> int:
    """Register an organisation."""
    from schemas.models import Organisation

    record = Organisation(
        org_id=org_id, url=url, tenant_id=tenant, display_name=name, token_prefix=token_prefix
    )
    checked(record)

    async def act(store: ConfigStore) -> None:
        await store.put(record, create=True)

    with_config(bootstrap, topic_prefix, timeout, act)
    emit(as_json, record, [f"added {_line(record)}"])
    return 0


@org.command("list")
@kafka_options
@json_option
def list_(bootstrap: str | None, topic_prefix: str | None, timeout: float, as_json: bool) -> int:
    """List the organisations."""

    async def act(store: ConfigStore) -> list[Organisation]:
        return sorted(store.snapshot.organisations.values(), key=lambda o: o.org_id)

    orgs = with_config(bootstrap, topic_prefix, timeout, act)
    if as_json:
        write_json(orgs)
    else:
        rows = [(o.org_id, o.url, o.display_name or "", o.token_prefix) for o in orgs]
        print_table(("ORG", "URL", "NAME", "TOKEN PREFIX"), rows, empty="no organisations")
    return 0


@org.command("edit")
@click.argument("org_id", metavar="ORG", type=IDENT)
@click.option("--url", type=ORG_URL, help="new URL of the organisation")
@click.option("--tenant", type=GUID, help="new Entra tenant id (GUID)")
@click.option("--name", type=NAME, help="new display name")
@click.option("--token-prefix", type=TOKEN_PREFIX, help="new tracking token prefix")
@kafka_options
@json_option
def edit(
    org_id: str,
    url: str | None,
    tenant: str | None,
    name: str | None,
    token_prefix: str | None,
    bootstrap: str | None,
    topic_prefix: str | None,
    timeout: float,
    as_json: bool,
) -> int:
    """Change an organisation's URL, tenant, name or token prefix."""
    given = (url, tenant, name, token_prefix)
    if all(v is None for v in given):
        raise UsageError(
            "org edit: nothing to change (give --url, --tenant, --name or --token-prefix)"
        )

    async def act(store: ConfigStore) -> Organisation:
        found = _find(store, org_id)
        record = dataclasses.replace(
            found,
            url=url or found.url,
            tenant_id=tenant or found.tenant_id,
            display_name=name or found.display_name,
            token_prefix=token_prefix or found.token_prefix,
        )
        checked(record)
        if record == found:
            return record
        before = {str(p) for p in store.snapshot.clashes()}
        after = dataclasses.replace(
            store.snapshot,
            organisations={**store.snapshot.organisations, org_id: record},
            problems=[],
        )
        new = [str(p) for p in after.clashes() if str(p) not in before]
        if new:  # another organisation with this URL is the same CRM: its users would clash
            raise CommandError(f"organisation {org_id}: {new[0]}")
        await store.put(record)
        return record

    record = with_config(bootstrap, topic_prefix, timeout, act)
    emit(as_json, record, [f"changed {_line(record)}"])
    return 0


@org.command("remove")
@click.argument("org_id", metavar="ORG", type=IDENT)
@kafka_options
@json_option
def remove(
    org_id: str, bootstrap: str | None, topic_prefix: str | None, timeout: float, as_json: bool
) -> int:
    """Remove an organisation that has no mailboxes or filters left."""

    async def act(store: ConfigStore) -> None:
        _find(store, org_id)
        filters = sorted(f.filter_id for f in store.snapshot.filters.values() if f.org_id == org_id)
        if filters:
            raise CommandError(f"organisation {org_id!r} still has filters: {', '.join(filters)}")
        await store.delete(f"organisation:{org_id}")  # refused while it has mailboxes

    with_config(bootstrap, topic_prefix, timeout, act)
    emit(as_json, {"org_id": org_id, "removed": True}, [f"removed organisation {org_id}"])
    return 0
