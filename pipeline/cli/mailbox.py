"""``dynasync org`` and ``dynasync mailbox``: register and inspect configuration records on the
compacted config topic."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import re
import sys
from collections.abc import Awaitable, Callable
from typing import Any, get_args
from urllib.parse import urlsplit

import orjson
from aiokafka.errors import KafkaError

from pipeline.config_store import ConfigError, ConfigSnapshot, ConfigStore
from pipeline.rules.tracking_settings import MAX_TRACKED_FOLDERS
from pipeline.settings import KafkaSettings
from schemas.codec import validate
from schemas.errors import SchemaError
from schemas.models import Mailbox, MailboxStatus, Organisation, TrackedFolder
from schemas.token import DEFAULT_TOKEN_PREFIX, TokenPrefixError, TrackingTokenFormat
from schemas.types import AutoTrack

_GUID = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
_IDENT = re.compile(r"^[A-Za-z0-9._@\-]{1,512}$")
_UPN = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_FOLDER = re.compile(r"^[A-Za-z0-9=_\-]{1,512}$")
_TABLE = re.compile(r"^[a-z_]{1,64}$")


def _guid(text: str) -> str:
    """A GUID, braces and case as Dynamics shows them accepted, stored in lower case."""
    bare = text.strip()
    if bare.startswith("{") and bare.endswith("}"):
        bare = bare[1:-1]
    if not _GUID.match(bare):
        raise argparse.ArgumentTypeError(
            f"expected a GUID like 0000…-…-…-…-000000000000, got {text!r}"
        )
    return bare.lower()


def _ident(text: str) -> str:
    if not _IDENT.match(text):
        raise argparse.ArgumentTypeError(
            f"expected 1-512 characters of letters, digits and . _ @ -, got {text!r}"
        )
    return text


def _upn(text: str) -> str:
    if len(text) > 320 or not _UPN.match(text):
        raise argparse.ArgumentTypeError(
            f"expected a user principal name like ann@contoso.com, got {text!r}"
        )
    return text


def _folder(text: str) -> str:
    if not _FOLDER.match(text):
        raise argparse.ArgumentTypeError(
            f"expected a Graph mail folder id (letters, digits and = _ -), got {text!r}"
        )
    return text


def _regarding(text: str) -> tuple[str, str]:
    table, sep, row_id = text.partition(":")
    if not sep or not _TABLE.match(table):
        raise argparse.ArgumentTypeError(
            f"expected TABLE:GUID of the record, like account:0000…-000000000000, got {text!r}"
        )
    return table, _guid(row_id)


def _prefix(text: str) -> str:
    try:
        return TrackingTokenFormat(text).prefix
    except TokenPrefixError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _url(text: str) -> str:
    try:
        parts = urlsplit(text)
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise argparse.ArgumentTypeError(
            f"expected an http(s) URL of the organisation, got {text!r}"
        )
    if len(text) > 2048 or any(c.isspace() for c in text):
        raise argparse.ArgumentTypeError(f"expected an http(s) URL without spaces, got {text!r}")
    return text.rstrip("/")


def _name(text: str) -> str:
    if not text.strip() or len(text) > 256:
        raise argparse.ArgumentTypeError("a display name needs 1-256 characters")
    return text


def _checked(record: Any) -> None:
    """The record as it would travel, against its JSON Schema."""
    try:
        validate(type(record), orjson.loads(orjson.dumps(record)))
    except SchemaError as exc:
        from pipeline.cli.main import UsageError

        raise UsageError(str(exc)) from None


def _kafka(args: argparse.Namespace) -> KafkaSettings:
    from pipeline.cli.main import _kafka_overrides, load_settings

    overrides = _kafka_overrides(args)
    overrides["kafka"]["topic_prefix"] = args.topic_prefix
    return load_settings(overrides).kafka


def _with_store(args: argparse.Namespace, action: Callable[[ConfigStore], Awaitable[None]]) -> int:
    kafka = _kafka(args)

    async def run() -> None:
        async with ConfigStore(kafka, timeout_s=args.timeout) as store:
            for problem in store.snapshot.problems:
                print(f"dynasync: warning: config {problem}", file=sys.stderr)
            await action(store)

    try:
        asyncio.run(run())
    except ConfigError as exc:
        print(f"dynasync: {exc}", file=sys.stderr)
        return 1
    except (KafkaError, TimeoutError, OSError) as exc:
        reason = str(exc) or type(exc).__name__
        print(f"dynasync: cannot use Kafka at {kafka.bootstrap}: {reason}", file=sys.stderr)
        return 1
    return 0


def _find_mailbox(snapshot: ConfigSnapshot, ident: str) -> Mailbox:
    if ident in snapshot.mailboxes:
        return snapshot.mailboxes[ident]
    wanted = ident.casefold()
    for mailbox in snapshot.mailboxes.values():
        if wanted in (mailbox.upn.casefold(), mailbox.mailbox_id.casefold()):
            return mailbox
    raise ConfigError(f"mailbox {ident!r} does not exist")


def _emit(args: argparse.Namespace, data: Any, lines: list[str]) -> None:
    if args.json:
        sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        for line in lines:
            print(line)


def _status(m: Mailbox) -> str:
    """The status, with the failing state the runtime keeps on the record."""
    if m.failing_since is not None:
        return f"{m.status}, failing since {m.failing_since}"
    return m.status


def _mailbox_lines(m: Mailbox) -> list[str]:
    lines = [
        f"mailbox     {m.mailbox_id}",
        f"upn         {m.upn}",
        f"org         {m.org_id}",
        f"systemuser  {m.systemuser_id}",
        f"status      {_status(m)}",
        f"auto-track  {m.auto_track}" + (", auto-create contacts" if m.auto_create_contact else ""),
        f"folders     {len(m.tracked_folders)} tracked",
        *(f"  {f.folder_id} -> {f.regarding_table}:{f.regarding_id}" for f in m.tracked_folders),
    ]
    if m.smtp_address is not None:
        lines.insert(2, f"smtp        {m.smtp_address}")
    if m.last_error is not None:
        lines.append(f"last error  {m.last_error}")
    return lines


def _cmd_org_add(args: argparse.Namespace) -> int:
    org = Organisation(
        org_id=args.org,
        url=args.url,
        tenant_id=args.tenant,
        display_name=args.name,
        token_prefix=args.token_prefix,
    )
    _checked(org)

    async def act(store: ConfigStore) -> None:
        await store.put(org, create=True)
        _emit(args, org, [f"added organisation {org.org_id} ({org.url})"])

    return _with_store(args, act)


def _cmd_org_list(args: argparse.Namespace) -> int:
    async def act(store: ConfigStore) -> None:
        orgs = sorted(store.snapshot.organisations.values(), key=lambda o: o.org_id)
        lines = [f"{o.org_id:<24} {o.url:<48} {o.display_name or ''}" for o in orgs]
        _emit(args, orgs, lines or ["no organisations"])

    return _with_store(args, act)


def _mailbox_key(text: str) -> str:
    """A mailbox id as Graph resolves it: a UPN or an object id in lower case, else as given."""
    return text.lower() if "@" in text or _GUID.match(text) else text


def _cmd_mailbox_add(args: argparse.Namespace) -> int:
    mailbox_id = _mailbox_key(args.mailbox_id or args.upn)
    mailbox = Mailbox(
        mailbox_id=mailbox_id,
        upn=args.upn,
        org_id=args.org,
        systemuser_id=args.systemuser,
        aad_object_id=mailbox_id if _GUID.match(mailbox_id) else None,
        smtp_address=args.smtp,
        auto_track=args.auto_track,
        auto_create_contact=args.auto_create_contact,
    )
    _checked(mailbox)

    async def act(store: ConfigStore) -> None:
        await store.put(mailbox, create=True)
        _emit(args, mailbox, [f"registered mailbox {mailbox.mailbox_id}", *_mailbox_lines(mailbox)])

    return _with_store(args, act)


def _cmd_mailbox_list(args: argparse.Namespace) -> int:
    async def act(store: ConfigStore) -> None:
        boxes = sorted(store.snapshot.mailboxes.values(), key=lambda m: m.mailbox_id)
        if args.org:
            boxes = [m for m in boxes if m.org_id == args.org]
        head = f"{'MAILBOX':<32} {'UPN':<32} {'ORG':<16} {'SYSTEMUSER':<36} STATUS"
        rows = [
            f"{m.mailbox_id:<32} {m.upn:<32} {m.org_id:<16} {m.systemuser_id:<36} {_status(m)}"
            + (f" ({_short(m.last_error)})" if m.last_error else "")
            for m in boxes
        ]
        _emit(args, boxes, [head, *rows] if rows else ["no mailboxes"])

    return _with_store(args, act)


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _cmd_mailbox_show(args: argparse.Namespace) -> int:
    async def act(store: ConfigStore) -> None:
        mailbox = _find_mailbox(store.snapshot, args.mailbox)
        _emit(args, mailbox, _mailbox_lines(mailbox))

    return _with_store(args, act)


def _status_command(status: MailboxStatus) -> Callable[[argparse.Namespace], int]:
    def command(args: argparse.Namespace) -> int:
        async def act(store: ConfigStore) -> None:
            found = _find_mailbox(store.snapshot, args.mailbox)
            # an operator's enable or disable ends a failing state; enabling forgets its error
            error = None if status == "enabled" else found.last_error
            mailbox = dataclasses.replace(
                found, status=status, failing_since=None, last_error=error
            )
            await store.put(mailbox)
            _emit(args, mailbox, [f"mailbox {mailbox.mailbox_id} is now {status}"])

        return _with_store(args, act)

    return command


def _cmd_mailbox_track_folder(args: argparse.Namespace) -> int:
    """Track a mail folder regarding a record (replacing the folder's record if it had one)."""
    table, row_id = args.regarding

    async def act(store: ConfigStore) -> None:
        found = _find_mailbox(store.snapshot, args.mailbox)
        kept = [f for f in found.tracked_folders if f.folder_id != args.folder]
        if len(kept) >= MAX_TRACKED_FOLDERS:
            raise ConfigError(
                f"mailbox {found.mailbox_id} tracks {len(kept)} folders already; "
                f"at most {MAX_TRACKED_FOLDERS}"
            )
        folders = [*kept, TrackedFolder(args.folder, table, row_id)]
        mailbox = dataclasses.replace(found, tracked_folders=folders)
        _checked(mailbox)
        await store.put(mailbox)
        _emit(
            args,
            mailbox,
            [f"mailbox {mailbox.mailbox_id}: folder {args.folder} tracked, {table}:{row_id}"],
        )

    return _with_store(args, act)


def _cmd_mailbox_untrack_folder(args: argparse.Namespace) -> int:
    async def act(store: ConfigStore) -> None:
        found = _find_mailbox(store.snapshot, args.mailbox)
        kept = [f for f in found.tracked_folders if f.folder_id != args.folder]
        if len(kept) == len(found.tracked_folders):
            raise ConfigError(f"mailbox {found.mailbox_id} does not track folder {args.folder}")
        mailbox = dataclasses.replace(found, tracked_folders=kept)
        await store.put(mailbox)
        _emit(args, mailbox, [f"mailbox {mailbox.mailbox_id}: folder {args.folder} not tracked"])

    return _with_store(args, act)


def _cmd_mailbox_resume(args: argparse.Namespace) -> int:
    """Lift a mass-delete pause: replay what the mailbox parked, in the order it was parked."""
    from pipeline.stages.guard import resume_mailbox

    async def act(store: ConfigStore) -> None:
        mailbox = _find_mailbox(store.snapshot, args.mailbox)
        replayed = await resume_mailbox(store_kafka, mailbox.mailbox_id, timeout_s=args.timeout)
        _emit(
            args,
            {"mailbox_id": mailbox.mailbox_id, "replayed": replayed},
            [f"resumed mailbox {mailbox.mailbox_id}: {replayed} parked change(s) replayed"],
        )

    store_kafka = _kafka(args)
    return _with_store(args, act)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bootstrap", help="Kafka bootstrap servers host:port[,host:port]")
    parser.add_argument(
        "--topic-prefix",
        default=None,
        help="prefix of the topic names (DYNASYNC_KAFKA__TOPIC_PREFIX)",
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument(
        "--timeout", type=_seconds, default=30.0, help="seconds to wait for Kafka (default 30)"
    )


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not 0.5 <= value <= 600:
        raise argparse.ArgumentTypeError(f"expected 0.5-600 seconds, got {text!r}")
    return value


def add_config_commands(sub: Any) -> None:
    """Register ``org`` and ``mailbox`` on the ``dynasync`` subparsers."""
    org = sub.add_parser("org", help="Dataverse organisations").add_subparsers(
        dest="org_command", required=True
    )
    p = org.add_parser("add", help="register an organisation")
    p.add_argument("--org", required=True, type=_ident, help="organisation id")
    p.add_argument("--url", required=True, type=_url, help="https://<org>.crm.dynamics.com")
    p.add_argument("--tenant", type=_guid, help="Entra tenant id (GUID)")
    p.add_argument("--name", type=_name, help="display name")
    p.add_argument(
        "--token-prefix",
        type=_prefix,
        default=DEFAULT_TOKEN_PREFIX,
        help=f"tracking token prefix of the organisation (default {DEFAULT_TOKEN_PREFIX})",
    )
    _common(p)
    p.set_defaults(func=_cmd_org_add)
    p = org.add_parser("list", help="list the organisations")
    _common(p)
    p.set_defaults(func=_cmd_org_list)

    mailbox = sub.add_parser("mailbox", help="synchronizing mailboxes").add_subparsers(
        dest="mailbox_command", required=True
    )
    p = mailbox.add_parser("add", help="register a mailbox (one mailbox ↔ one CRM user ↔ one org)")
    p.add_argument("--upn", required=True, type=_upn, help="user principal name")
    p.add_argument("--systemuser", required=True, type=_guid, help="CRM systemuser id (GUID)")
    p.add_argument("--org", required=True, type=_ident, help="organisation id")
    p.add_argument(
        "--mailbox-id", type=_ident, help="Graph user object id or UPN (default: the UPN)"
    )
    p.add_argument("--smtp", type=_upn, help="primary SMTP address, when it is not the UPN")
    p.add_argument(
        "--auto-track", choices=get_args(AutoTrack), default="replies", help="email auto-tracking"
    )
    p.add_argument(
        "--auto-create-contact",
        action="store_true",
        help="create a CRM contact for the unknown sender of tracked mail",
    )
    _common(p)
    p.set_defaults(func=_cmd_mailbox_add)
    p = mailbox.add_parser("list", help="list the mailboxes")
    p.add_argument("--org", type=_ident, help="only this organisation")
    _common(p)
    p.set_defaults(func=_cmd_mailbox_list)
    for name, func, doc in (
        ("show", _cmd_mailbox_show, "show one mailbox"),
        ("enable", _status_command("enabled"), "enable synchronization of a mailbox"),
        ("disable", _status_command("disabled"), "disable synchronization of a mailbox"),
        ("resume", _cmd_mailbox_resume, "lift a mass-delete pause and replay what it parked"),
    ):
        p = mailbox.add_parser(name, help=doc)
        p.add_argument("mailbox", type=_ident, help="mailbox id or UPN")
        _common(p)
        p.set_defaults(func=func)
    p = mailbox.add_parser(
        "track-folder",
        help=f"track a mail folder regarding a record (at most {MAX_TRACKED_FOLDERS})",
    )
    p.add_argument("mailbox", type=_ident, help="mailbox id or UPN")
    p.add_argument("--folder", required=True, type=_folder, help="Graph mail folder id")
    p.add_argument(
        "--regarding", required=True, type=_regarding, help="TABLE:GUID, e.g. account:<guid>"
    )
    _common(p)
    p.set_defaults(func=_cmd_mailbox_track_folder)
    p = mailbox.add_parser("untrack-folder", help="stop tracking a mail folder")
    p.add_argument("mailbox", type=_ident, help="mailbox id or UPN")
    p.add_argument("--folder", required=True, type=_folder, help="Graph mail folder id")
    _common(p)
    p.set_defaults(func=_cmd_mailbox_untrack_folder)
