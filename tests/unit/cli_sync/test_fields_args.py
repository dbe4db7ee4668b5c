"""``dynasync fields``: bad arguments are one line, exit 2, before Kafka is touched (the
bootstrap given is a closed port, so a command that got that far would fail with exit 1)."""

from __future__ import annotations

import pytest

from pipeline.cli.fields import as_kind, parse_assignment
from tests.unit.cli.invoke import dynasync

NOWHERE = ("--bootstrap", "127.0.0.1:1", "--timeout", "0.5")


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("set", "--org", "o", "--kind", "contact"), "nothing to set"),
        (("set", "--org", "o", "--kind", "contact", "jobtitle"), "FIELD=DIRECTION"),
        (("set", "--org", "o", "--kind", "contact", "jobtitle=sideways"), "unknown direction"),
        (("set", "--org", "o", "--kind", "contact", "nosuch=both"), "not a synced contact field"),
        (("set", "--org", "o", "--kind", "contact", "address2_city=none"), "group"),
        (("set", "--org", "o", "--kind", "appointment", "scheduledstart=none"), "fixed field"),
        (("set", "--org", "o", "--kind", "contact", "jobtitle=none", "jobtitle=both"), "twice"),
        (("set", "--org", "o", "--kind", "contact", "a=none", "--reset", "a"), "both set"),
        (("set", "--org", "o", "--kind", "robot", "jobtitle=none"), "robot"),
        (("set", "--org", "o", "--kind", "contact", "--policy", "loudest"), "loudest"),
        (("set", "--org", "bad org", "--kind", "contact", "--policy", "manual"), "bad org"),
        (("show", "--kind", "contact"), "--org"),
    ],
)
def test_bad_arguments_are_one_line_and_exit_2(args: tuple[str, ...], says: str) -> None:
    ran = dynasync("fields", *args, *NOWHERE)
    assert ran.code == 2, ran
    assert len(ran.err_lines) == 1 and says in ran.err, ran.err
    assert ran.out == ""


def test_assignment_parsing() -> None:
    assert parse_assignment(" jobtitle = to_crm ") == ("jobtitle", "to_crm")
    for garbage in ("", "=", "jobtitle=", "=both", "jobtitle", "x=\x00"):
        with pytest.raises(ValueError):
            parse_assignment(garbage)
    assert as_kind("task") == "task"
    with pytest.raises(ValueError, match="unknown kind"):
        as_kind("Task")


def test_a_good_command_gets_as_far_as_kafka() -> None:
    ran = dynasync("fields", "set", "--org", "o", "--kind", "contact", "jobtitle=none", *NOWHERE)
    assert ran.code == 1 and "Kafka" in ran.err, ran
