"""``dynasync dlq list`` and ``dynasync dlq replay``: what the pipeline parked, and sending it
back once the cause is fixed."""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from typing import Any

import orjson
from aiokafka.errors import KafkaError

from pipeline.dlq import REPLAYABLE_REASONS, DlqRecord, Selection, list_dlq, replay

_REASON = re.compile(r"^[a-z_]{1,32}$")
_IDENT = re.compile(r"^[A-Za-z0-9._@\-]{1,512}$")


def _reason(text: str) -> str:
    if not _REASON.match(text):
        raise argparse.ArgumentTypeError(
            f"expected a reason like poison, refused, paused or alert, got {text!r}"
        )
    return text


def _mailbox(text: str) -> str:
    if not _IDENT.match(text):
        raise argparse.ArgumentTypeError(f"expected a mailbox id, got {text!r}")
    return text


def _line(r: DlqRecord) -> str:
    error = r.error if len(r.error) <= 100 else r.error[:97] + "..."
    return (
        f"{r.partition}:{r.offset}  {r.reason:<8} {r.mailbox_id or '-':<38} "
        f"{r.origin_topic}:{r.origin_partition}:{r.origin_offset}  {error}"
    )


def _selection(args: argparse.Namespace) -> Selection:
    return Selection(frozenset(args.reason or ()), frozenset(args.mailbox or ()))


def _run(args: argparse.Namespace, body: Any) -> int:
    from pipeline.cli.mailbox import _kafka

    kafka = _kafka(args)
    try:
        return int(asyncio.run(body(kafka)))
    except LookupError as exc:
        print(f"dynasync: {exc}", file=sys.stderr)
        return 1
    except (KafkaError, TimeoutError, OSError) as exc:
        reason = str(exc) or type(exc).__name__
        print(f"dynasync: cannot use Kafka at {kafka.bootstrap}: {reason}", file=sys.stderr)
        return 1


def _cmd_list(args: argparse.Namespace) -> int:
    async def body(kafka: Any) -> int:
        records = await list_dlq(kafka, _selection(args), timeout_s=args.timeout)
        if args.json:
            out = [r.summary() for r in records]
            sys.stdout.write(orjson.dumps(out, option=orjson.OPT_INDENT_2).decode() + "\n")
        else:
            for r in records:
                print(_line(r))
            print(f"{len(records)} record(s)")
        return 0

    return _run(args, body)


def _cmd_replay(args: argparse.Namespace) -> int:
    from pipeline.cli.main import load_settings

    app_id = load_settings().app_id

    async def body(kafka: Any) -> int:
        report = await replay(
            kafka, app_id, _selection(args), dry_run=args.dry_run, timeout_s=args.timeout
        )
        verb = "would replay" if args.dry_run else "replayed"
        if args.json:
            data = {
                "dry_run": args.dry_run,
                "replayed": [r.summary() for r in report.replayed],
                "skipped": [{**r.summary(), "why": why} for r, why in report.skipped],
            }
            sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")
        else:
            for r in report.replayed:
                print(f"{verb} {_line(r)}")
            for r, why in report.skipped:
                print(f"skipped {r.partition}:{r.offset}: {why}")
            print(f"{verb} {len(report.replayed)}, skipped {len(report.skipped)}")
        return 0

    return _run(args, body)


def add_dlq_commands(sub: Any) -> None:
    """Register ``dlq list`` and ``dlq replay`` on the ``dynasync`` subparsers."""
    from pipeline.cli.mailbox import _common

    dlq = sub.add_parser("dlq", help="records the pipeline parked").add_subparsers(
        dest="dlq_command", required=True
    )
    for name, func, doc in (
        ("list", _cmd_list, "list parked records (every reason unless --reason)"),
        (
            "replay",
            _cmd_replay,
            "send parked records back to their topic, once "
            f"(reasons {', '.join(sorted(REPLAYABLE_REASONS))} unless --reason)",
        ),
    ):
        p = dlq.add_parser(name, help=doc)
        p.add_argument("--reason", action="append", type=_reason, help="only this reason")
        p.add_argument("--mailbox", action="append", type=_mailbox, help="only this mailbox")
        if name == "replay":
            p.add_argument("--dry-run", action="store_true", help="show, send nothing")
        _common(p)
        p.set_defaults(func=func)
