"""The ``dynasync`` command."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from pipeline.settings import Settings


class UsageError(Exception):
    """Bad command-line input; printed as one clear line, exit status 2."""


def load_settings(overrides: dict[str, dict[str, Any]] | None = None) -> Settings:
    """Settings from the environment, with validated per-group overrides from the CLI."""
    try:
        base = Settings()
        if not overrides:
            return base
        merged: dict[str, Any] = base.model_dump()
        for group, values in overrides.items():
            merged[group] = {**merged[group], **{k: v for k, v in values.items() if v is not None}}
        return Settings.model_validate(merged)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise UsageError(f"invalid setting {where}: {first['msg']}") from None


def _kafka_overrides(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    return {
        "kafka": {
            "bootstrap": getattr(args, "bootstrap", None),
            "partitions": getattr(args, "partitions", None),
            "replication_factor": getattr(args, "replication_factor", None),
        }
    }


def _cmd_topics_create(args: argparse.Namespace) -> int:
    from pipeline.cli.topics import TopicMismatchError, ensure_topics

    settings = load_settings(_kafka_overrides(args))
    try:
        reports = asyncio.run(ensure_topics(settings.kafka))
    except TopicMismatchError as exc:
        print(f"dynasync: {exc}", file=sys.stderr)
        return 1
    for r in reports:
        state = "created" if r.created else "exists "
        print(f"{state} {r.name} ({r.partitions} partitions)")
    return 0


def _cmd_topics_list(args: argparse.Namespace) -> int:
    from pipeline.topics import ALL_TOPICS, topic_name

    settings = load_settings(_kafka_overrides(args))
    for spec in ALL_TOPICS:
        retention = "compacted" if spec.compacted else f"retention {spec.retention_ms} ms"
        name = topic_name(spec, settings.kafka)
        print(f"{name:<22} key={spec.key:<11} {retention:<26} {spec.description}")
    return 0


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``dynasync``."""
    parser = argparse.ArgumentParser(prog="dynasync", description="Outlook <-> Dynamics 365 sync")
    sub = parser.add_subparsers(dest="command", required=True)

    topics = sub.add_parser("topics", help="manage the Kafka topics of the catalogue")
    tsub = topics.add_subparsers(dest="topics_command", required=True)
    for name, func, doc in (
        ("create", _cmd_topics_create, "create missing topics (idempotent)"),
        ("list", _cmd_topics_list, "print the topic catalogue"),
    ):
        p = tsub.add_parser(name, help=doc)
        p.add_argument("--bootstrap", help="Kafka bootstrap servers host:port[,host:port]")
        p.add_argument("--partitions", type=_positive, help="partition count of every topic")
        p.add_argument("--replication-factor", type=_positive, help="replication factor")
        p.set_defaults(func=func)

    from pipeline.cli.run import add_run_commands

    add_run_commands(sub)
    from pipeline.cli.mailbox import add_config_commands

    add_config_commands(sub)
    from pipeline.cli.dlq import add_dlq_commands

    add_dlq_commands(sub)
    from pipeline.cli.pipeline_cmd import add_pipeline_commands

    add_pipeline_commands(sub)
    from pipeline.cli.receiver import add_receiver_commands

    add_receiver_commands(sub)
    from pipeline.cli.demo import add_demo_commands

    add_demo_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``dynasync`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result: int = args.func(args)
    except UsageError as exc:
        print(f"dynasync: {exc}", file=sys.stderr)
        return 2
    return result


if __name__ == "__main__":
    raise SystemExit(main())
