"""``dynasync replay``: bad arguments are one line and exit 2 before Kafka is touched."""

from __future__ import annotations

import pytest

from pipeline.cli.replay import parse_from
from tests.unit.cli.invoke import dynasync


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("--topic", "changes.crm"), "--from"),
        (("--topic", "commands.crm", "--from", "0"), "commands.crm"),
        (("--topic", "changes.crm", "--from", "yesterday"), "expected an offset or a time"),
        (("--topic", "changes.crm", "--from", "2030-01-01T00:00:00"), "needs a zone"),
        (("--topic", "changes.crm", "--from", "2999-01-01T00:00:00Z"), "future"),
        (("--topic", "changes.crm", "--from", "-1"), "expected an offset"),
        (("--topic", "crm.raw", "--from", "0", "--mailbox", "m"), "keyed by CRM record"),
    ],
)
def test_bad_arguments_are_one_line_and_exit_2(args: tuple[str, ...], says: str) -> None:
    ran = dynasync("replay", *args, "--bootstrap", "127.0.0.1:1", "--timeout", "0.5")
    assert ran.code == 2 and len(ran.err_lines) == 1 and says in ran.err, ran


def test_from_parses_offsets_and_zoned_times() -> None:
    assert parse_from("42") == (42, None)
    assert parse_from("2020-01-01T00:00:00Z") == (None, 1577836800000)
