"""``dynasync mailbox status`` / ``mailbox test``: garbage arguments exit 2 with one clear line
before anything connects; the status record's reader refuses what is not one."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.mailbox_status import parse_health
from schemas.errors import SchemaError
from tests.unit.cli.invoke import dynasync

NOWHERE = ["--bootstrap", "127.0.0.1:1"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["mailbox", "test"], "Missing argument 'MAILBOX'"),
        (["mailbox", "test", "a b"], "letters"),
        (["mailbox", "test", "x", "--enable=yes"], "does not take a value"),
        (["mailbox", "test", "x", "--timeout", "0"], "expected seconds within"),
        (["mailbox", "status", "a/b"], "letters"),
        (["mailbox", "status", "x", "y"], "unexpected extra argument"),
    ],
)
def test_garbage_arguments_exit_2_in_one_line(argv: list[str], message: str) -> None:
    ran = dynasync(*argv, *NOWHERE)
    assert ran.code == 2, ran
    assert len(ran.err_lines) == 1, ran.err
    assert message in ran.err
    assert ran.out == ""


def test_help_names_both_commands() -> None:
    ran = dynasync("mailbox", "--help")
    assert ran.code == 0
    assert "Test & Enable" in ran.out and "backlog" in ran.out


@given(st.binary(max_size=300))
def test_garbage_status_records_are_refused(raw: bytes) -> None:
    with pytest.raises(SchemaError):
        parse_health(b"ada@contoso.com", raw)


def test_a_record_under_another_mailbox_key_is_refused() -> None:
    raw = b'{"mailbox_id": "ada@contoso.com", "worker": "w", "updated_at": "2026-12-02T14:30:00Z"}'
    record = parse_health(b"ada@contoso.com", raw)
    assert record is not None and record.incoming == "idle"
    with pytest.raises(SchemaError):
        parse_health(b"bob@contoso.com", raw)
    assert parse_health(b"ada@contoso.com", None) is None
